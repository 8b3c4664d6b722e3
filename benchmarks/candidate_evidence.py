"""Does the accuracy after BatchNorm re-estimation predict which of two plans at equal measured latency is ahead
after fine-tuning? The evidence behind ``LatencyConfig.compare_macs`` (``secateurs.structured.candidates``), read
from the committed part-B results of ``latency_target.py`` (no new training or timing): per pair (latency-
targeted run, its MACs-targeted twin), the difference in test accuracy after BN re-estimation and after the same
fine-tune, and, for pairs whose BN difference exceeds ``--threshold``, how often the fine-tuned difference has its
sign. Also: what keeping the pair's better-after-BN plan would have given against always keeping the
latency-targeted one (the mean fine-tuned difference to the twin).

    python benchmarks/candidate_evidence.py [--threshold 0.05] [--stem candidate_evidence]

Caveat, printed with the results: the front door scores candidates by validation *loss* after re-estimating on 8
training batches; these files hold *test accuracy* after 20 batches. Runs with ``compare_macs`` on (their
``plan_cost`` is set) are left out: their latency-targeted plan was already chosen this way.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics

from _common import write_results
from latency_target import TWIN_TOLERANCE

HERE = os.path.dirname(os.path.abspath(__file__))


def pairs(paths):
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        for r in d.get("part_b") or []:
            for m in ("l1", "autobot"):
                a, b = r.get(f"{m}-latency"), r.get(f"{m}-macs")
                if not a or not b or "accuracy_ft" not in a or "accuracy_ft" not in b or a.get("plan_cost"):
                    continue
                yield {"file": os.path.basename(path), "model": r["model"], "batch": r.get("batch", 1),
                       "target": r["target"], "method": m, "bn": a["accuracy_bn"] - b["accuracy_bn"],
                       "ft": a["accuracy_ft"] - b["accuracy_ft"], "before": a["accuracy"] - b["accuracy"],
                       "latency_gap": b["measured"] - a["measured"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threshold", type=float, default=0.05, help="|BN difference| above which a pair counts")
    p.add_argument("--stem", default="candidate_evidence")
    args = p.parse_args()
    files = sorted(glob.glob(os.path.join(HERE, "results", "latency_target*.json")))
    every = list(pairs(files))
    # at equal measured latency only: the twin's search ended within TWIN_TOLERANCE of the run's
    rows = [r for r in every if abs(r["latency_gap"]) <= TWIN_TOLERANCE + 1e-9]
    big = [r for r in rows if abs(r["bn"]) > args.threshold]
    agree = [r for r in big if r["ft"] * r["bn"] > 0]
    disagree = [r for r in big if r["ft"] * r["bn"] < 0]
    tied = [r for r in big if r["ft"] == 0]
    always = statistics.fmean(r["ft"] for r in rows)
    # keeping the twin where BN says it is better: the difference becomes 0 (the twin itself), else the pair's own
    by_bn = statistics.fmean(0.0 if r["bn"] < 0 else r["ft"] for r in rows)
    losses = [r for r in rows if r["ft"] < -0.01]
    caught = [r for r in losses if r["bn"] < 0]
    out = {"threshold": args.threshold, "pairs": len(rows),
           "pairs_off_equal_latency": len(every) - len(rows), "above_threshold": len(big), "agree": len(agree),
           "disagree": len(disagree), "ft_zero": len(tied),
           "disagree_max_abs_ft": max((abs(r["ft"]) for r in disagree), default=0.0),
           "mean_ft_gap_always_latency": always, "mean_ft_gap_keep_better_after_bn": by_bn,
           "losses_over_1_point": len(losses), "losses_with_negative_bn": len(caught), "rows": rows,
           "files": [os.path.basename(f) for f in files]}
    md = ["# Does accuracy after BN re-estimation predict the fine-tuned gap?", "",
          f"From the committed part-B results of `latency_target.py` ({len(files)} files; runs with `compare_macs` "
          f"left out): {len(rows)} pairs of a latency-targeted plan and its MACs twin at equal measured latency "
          f"(within ±{TWIN_TOLERANCE:g}; {len(every) - len(rows)} more pairs whose twin ended further off are left out), test "
          "accuracy after BN re-estimation (20 batches) and after the same fine-tune (mean over the run's seeds).",
          "",
          f"- Pairs whose BN difference exceeds {args.threshold:g}: {len(big)}. The fine-tuned difference has the "
          f"same sign in {len(agree)}, the opposite in {len(disagree)} (largest of those "
          f"{100 * out['disagree_max_abs_ft']:.2f} points), zero in {len(tied)}.",
          f"- Pairs where the latency-targeted plan lost by more than 1 point after fine-tuning: {len(losses)}; "
          f"{len(caught)} of them were behind after BN re-estimation too.",
          f"- Mean fine-tuned difference to the twin: always the latency-targeted plan "
          f"{100 * always:+.2f} points; keeping the twin where it was ahead after BN re-estimation "
          f"{100 * by_bn:+.2f} points (the twin's own plan: difference 0).", "",
          "Caveat: the library scores by validation loss after re-estimating BatchNorm on 8 training batches; "
          "these files hold test accuracy after 20 batches (a proxy of the proxy). BN and FT accuracy are on the same "
          "test subset, and pairs from repeated runs of one model and target are not independent.", "",
          "| file | model | batch | target | method | before | BN | FT |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['file']} | {r['model']} | {r['batch']} | {r['target']:.2f} | {r['method']} | "
                  f"{100 * r['before']:+.1f} | {100 * r['bn']:+.1f} | {100 * r['ft']:+.2f} |")
    write_results(args.stem, out, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
