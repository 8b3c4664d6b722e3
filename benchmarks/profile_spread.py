"""How much a latency-targeted plan depends on the profile sample: the same model, setting and target, the
profile measured K times afresh (``profile_latency``), and for each sample and each ``--free`` value the
l1-latency plan (``structured.prune(..., latency_reduction=R, method="l1")``: selection on that profile, the
pruned network timed against the dense one and corrected as usual). Reported per plan: the profile's held-out
error, its dense prediction, the MACs removed, the predicted and measured latency reduction, and the kept width
of each stage's residual trunk and the mean of its inner convs (ResNets). No training: the dense model is the
committed Fashion-MNIST checkpoint (1x28x28), as in ``latency_target.py``'s part B (3 measure-and-correct rounds, as
there), whose runs here each started from an empty profile cache: one profile sample per model and batch.

    python benchmarks/profile_spread.py [--model resnet56] [--batch 64] [--target 0.3] [--samples 5] [--free 0.1 0.25]
        [--layer-budget 1.5] [--tables together each]
"""
from __future__ import annotations

import argparse
import copy
import inspect
import os
import statistics
import time

import torch

from _common import dense_checkpoint, environment, write_results


def stage_widths(model) -> dict[str, dict]:
    """Per ResNet stage: the trunk width (the first block's conv2 output) and the inner convs' mean width."""
    out = {}
    for name, m in model.named_children():
        if name.startswith("layer"):
            blocks = list(m.children())
            out[name] = {"trunk": blocks[0].conv2.out_channels,
                         "inner_mean": statistics.fmean(b.conv1.out_channels for b in blocks)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56", choices=["resnet20", "resnet56"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--target", type=float, default=0.3)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--free", type=float, nargs="+", default=[None], metavar="F",
                   help="LatencyConfig.free values to search each sample with (default: the library's)")
    p.add_argument("--layer-budget", type=float, nargs="+", default=[None], metavar="S",
                   help="profile_latency's layer_budget_s values, seconds of timing per layer table, each measured "
                        "in every sample, in turn (default: the library's)")
    p.add_argument("--tables", nargs="+", default=[None], choices=[None, "together", "each"],
                   help="profile_latency's tables values (how the layer tables are timed: all in one interleaved "
                        "timing, or one after another), each measured in every sample, in turn (default: the "
                        "library's)")
    p.add_argument("--stem", default="profile_spread")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from secateurs.cost.profiling import profile_latency
    from secateurs.graph import build_channel_graph
    from secateurs.structured import prune
    from secateurs.structured.latency import LatencyConfig
    from secateurs.structured.select._free import FREE_FRACTION
    from secateurs.timing import allocator

    env = environment(args.threads) | {"allocator": allocator()}
    dense = dense_checkpoint(args.model, train_if_missing=False).model.eval()
    x = torch.zeros(1, 1, 28, 28)
    graph = build_channel_graph(dense, x)
    data = [(x, torch.zeros(1, dtype=torch.long))]
    dense_widths = stage_widths(dense)
    rows, t00 = [], time.perf_counter()
    defaults = inspect.signature(profile_latency).parameters
    for k, budget, tables in [(k, b, t) for k in range(args.samples) for b in args.layer_budget for t in args.tables]:
        budget = defaults["layer_budget_s"].default if budget is None else budget
        tables = defaults["tables"].default if tables is None else tables
        t0 = time.perf_counter()
        prof = profile_latency(dense, graph, tuple(x.shape[1:]), batch_size=args.batch, threads=args.threads,
                               layer_budget_s=budget, tables=tables)
        profile_s = time.perf_counter() - t0
        for free in args.free:
            model = copy.deepcopy(dense)
            res = prune(model, data, latency_reduction=args.target, method="l1", example_inputs=x, progress=False,
                        evaluate_test=False, latency=LatencyConfig(batch_size=args.batch, threads=args.threads,
                                                                   profile=prof, free=free, rounds=3,
                                                                   compare_macs=False))  # the latency-priced plan
            s = res.summary()
            row = {"sample": k, "layer_budget_s": budget, "tables": tables, "free": FREE_FRACTION if free is None else free,
                   "profile_s": profile_s,
                   "profile_error_pct": prof.validation["mean_abs_error_pct"], "dense_ms_profile": prof.dense_ms,
                   "macs_reduction": s["flops_reduction"], "predicted": s["latency_reduction_predicted"],
                   "measured": s["latency_reduction"], "latency_ms_dense": s["latency_ms_dense"],
                   "rounds": len(s["latency_rounds"]), "stages": stage_widths(model), "loadavg": os.getloadavg()}
            rows.append(row)
            print(f"sample {k}, layer budget {budget:g} s, tables {tables}, free {row['free']:g}: error {row['profile_error_pct']:.1f} %, MACs "
                  f"{row['macs_reduction']:.3f}, predicted {row['predicted']:.3f}, measured {row['measured']:.3f}, "
                  f"stages {row['stages']}", flush=True)
    env |= {"loadavg_end": os.getloadavg(), "elapsed_s": time.perf_counter() - t00}
    stages = list(dense_widths)
    md = [f"# One target, {args.samples} profile samples: {args.model}, batch {args.batch}, l1-latency at "
          f"{args.target:.0%}", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores), {args.threads} thread(s), allocator "
          f"{env['allocator']}, load average {env['loadavg_start'][0]:.2f} at the start, "
          f"{env['loadavg_end'][0]:.2f} at the end, {env['elapsed_s']:.0f} s. Each sample measures the profile "
          "afresh (once per layer-table budget and table timing, in turn) and searches the plan on it (measured and corrected as usual). Trunk / inner: kept channels of "
          "each stage's residual trunk / the mean of its inner convs (dense: "
          + ", ".join(f"{s} {dense_widths[s]['trunk']} / {dense_widths[s]['inner_mean']:g}" for s in stages) + ").",
          "", "| sample | layer budget s | tables | profile s | free | profile error % | profile dense ms | MACs removed | predicted | measured | rounds | "
          + " | ".join(f"{s} trunk / inner" for s in stages) + " |",
          "|" + "---|" * (11 + len(stages))]
    for r in rows:
        md.append(f"| {r['sample']} | {r.get('layer_budget_s', 0.3):g} | {r.get('tables', 'each')} | {r['profile_s']:.1f} | {r['free']:g} | "
                  f"{r['profile_error_pct']:.1f} | {r['dense_ms_profile']:.1f} | "
                  f"{r['macs_reduction']:.3f} | {r['predicted']:.3f} | {r['measured']:.3f} | {r['rounds']} | "
                  + " | ".join(f"{r['stages'][s]['trunk']} / {r['stages'][s]['inner_mean']:.1f}" for s in stages)
                  + " |")
    md.append("")
    def variant(r):  # rows from before the tables option timed the tables one by one
        return r.get("layer_budget_s", 0.3), r.get("tables", "each"), r["free"]

    for budget, tables, free in sorted({variant(r) for r in rows}):
        sel = [r for r in rows if variant(r) == (budget, tables, free)]
        macs, err = [r["macs_reduction"] for r in sel], [r["profile_error_pct"] for r in sel]
        md.append(f"layer budget {budget:g} s, tables {tables}, free {free:g}: MACs removed for the same target "
                  f"{min(macs):.3f}-{max(macs):.3f}, profile held-out error {min(err):.1f}-{max(err):.1f} % over "
                  f"{len(sel)} samples.\n")
    write_results(args.stem, {"environment": env, "args": vars(args), "rows": rows}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
