"""Which channels AutoBot's bottlenecks keep, measured against the criteria's per-channel scores (issue 14 B: why
AutoBot's plans fine-tune worse than taylor's on ResNet-20).

For one dense checkpoint, target and seed, AutoBot runs with each setting in ``--variants`` (``FIELD=VALUE`` of
``AutoBotConfig``, and ``task=soft``: the bottlenecks' cross-entropy is taken against the frozen dense network's own
softmax on the same batch instead of the labels — a distillation objective, which has no first-order term at λ = 1).
Every plan is compared with the channel scores of the dense model, computed once per seed: taylor (mean |dL/dgate|
over ``--taylor-batches`` batches, the criterion ``prune --criterion taylor`` ranks by), bn (|γ|) and l1. Reported per
plan, over the groups it prunes: the mean percentile, within its group, of the kept channels under each score (0.5
= what a random choice keeps on average; the "top-k ceiling" = the top channels, 1 − (k − 1)/(2(n − 1)) for k of n),
the mean Spearman correlation (tied values share their rank) between the bottleneck scores λ and each criterion's
scores (over all groups), the share of kept channels that taylor local's plan at the same target keeps too, and,
for a variant, that AutoBot's default plan of the same scope keeps too (which channels the variant changed), and
the accuracy after BatchNorm re-estimation (20 batches of 64; no fine-tuning here: ``autobot_compare.py``
fine-tunes).

    python benchmarks/autobot_channels.py --targets 0.65 0.5 --seeds 0 1 \\
        --variants scope=local scope=local,lr=0.1 scope=local,lr=0.02 scope=local,task=soft
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch
import torch.nn.functional as F

from _common import environment, mean_std, write_results
from autobot_common import accuracy, bn_recalibrated_accuracy, setup
from autobot_compare import _fail, parse_variant


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """0-based ranks of ``x`` with tied values sharing their mean rank (as Spearman's ρ needs)."""
    values = x.double().tolist()
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return torch.tensor(ranks, dtype=torch.float64)


def percentile_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Each channel's rank within its group as a fraction in [0, 1] (tied scores share their mean rank)."""
    return average_ranks(scores) / max(scores.numel() - 1, 1)


def top_ceiling(k: int, n: int) -> float:
    """The highest mean percentile ``k`` kept channels of ``n`` can have: the top ``k``."""
    return 1.0 - (k - 1) / (2 * max(n - 1, 1))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def soft_target_batches(teacher, data, batch_size: int, seed: int, augment: bool):
    """AutoBot's training batches (``training_batches``: shuffled; augmented when ``augment``), the labels replaced by
    the frozen dense network's softmax on the same images: cross-entropy to these is the KL divergence to the dense
    network plus a constant."""
    from secateurs.structured.autobot.training import training_batches

    class Soft:
        def __iter__(self):
            for x, _ in training_batches(data, batch_size, seed, augment):
                with torch.no_grad():  # not around the yield: the consumer's forward needs autograd
                    soft = F.softmax(teacher(x), dim=1)
                yield x, soft

    return Soft()


def plan_row(plan, graph, scores, taylor_local, lam=None, default=None) -> dict:
    """Over the groups ``plan`` prunes (a group kept whole says nothing about the choice): the kept channels' mean
    percentile under each criterion and the top-k ceiling, ρ(λ, criterion) when ``lam`` is given, and the share of
    kept channels that ``taylor_local`` (and ``default``, AutoBot's default plan of the same scope) keep too."""
    unknown = set(plan.groups) - {g.id for g in graph.prunable_groups()}
    if unknown:
        raise ValueError(f"plan groups not in the graph: {sorted(unknown)}")
    kept_pct = {c: [] for c in scores}
    rho = {c: [] for c in scores}
    ceiling, overlap, same = [], [], []
    for g in graph.prunable_groups():
        if lam is not None:
            for c, s in scores.items():
                rho[c].append(spearman(lam[g.id], s[g.id]))
        kept = sorted(plan.groups.get(g.id, range(g.width)))
        if len(kept) == g.width:
            continue
        for c, s in scores.items():
            kept_pct[c].append(float(percentile_ranks(s[g.id])[kept].mean()))
        ceiling.append(top_ceiling(len(kept), g.width))
        overlap.append(len(set(kept) & set(taylor_local.groups.get(g.id, range(g.width)))) / len(kept))
        if default is not None:
            same.append(len(set(kept) & set(default.groups.get(g.id, range(g.width)))) / len(kept))
    row = {f"kept_pct_{c}": sum(v) / len(v) for c, v in kept_pct.items()}
    row["kept_pct_ceiling"] = sum(ceiling) / len(ceiling)
    if lam is not None:
        row.update({f"spearman_{c}": sum(v) / len(v) for c, v in rho.items()})
    row["overlap_taylor_local"] = sum(overlap) / len(overlap)
    if default is not None:
        row["overlap_default"] = sum(same) / len(same)
    return row


def run(args, model_name, R, seed, ckpt, full, test, rows, log):
    from secateurs.data import BatchLoader
    from secateurs.graph import build_channel_graph
    from secateurs.structured import channel_scores, prune
    from secateurs.structured.autobot import AutoBotConfig

    model = ckpt.model
    graph = build_channel_graph(model, full.train_x[:1])
    loader = BatchLoader(full.train_x, full.train_y, 64, shuffle=True, seed=seed)
    calib = [b for _, b in zip(range(args.taylor_batches), loader)]
    scores = {"taylor": channel_scores(model, graph, "taylor", data=calib), "bn": channel_scores(model, graph, "bn"),
              "l1": channel_scores(model, graph, "l1")}
    base = {"model": model_name, "target": R, "seed": seed}
    tl = copy.deepcopy(model)
    ref = prune(tl, full, flops_reduction=R, method="taylor", scope="local", calib_batches=args.taylor_batches,
                batch_size=64, seed=seed, example_inputs=full.train_x[:2], evaluate_test=False, progress=False)
    rows.append({**base, "method": "taylor local", "params": ref.report.params_after,
                 "reduction": ref.report.macs_reduction, "acc_bn": bn_recalibrated_accuracy(tl, full, test, seed),
                 **plan_row(ref.plan, graph, scores, ref.plan)})
    log(rows[-1])
    defaults = {}  # scope -> AutoBot's plan with the default settings of that scope
    for spec in [""] + args.variants:
        variant = dict(item.split("=", 1) for item in spec.split(",") if item)
        task = variant.pop("task", "labels")
        if task not in ("labels", "soft"):
            _fail(f"--variants: task={task!r}: expected labels or soft")
        fields = parse_variant(",".join(f"{k}={v}" for k, v in variant.items())) if variant else {}
        cfg = AutoBotConfig(**{"seed": seed, **fields})
        m = copy.deepcopy(model)
        data = full if task == "labels" else soft_target_batches(ckpt.model, full, cfg.batch_size, cfg.seed,
                                                                 cfg.augment)
        t0 = time.perf_counter()
        res = prune(m, data, flops_reduction=R, method="autobot", config=cfg, seed=seed,
                    example_inputs=full.train_x[:1], graph=graph, evaluate_test=False, progress=False)
        name = "autobot" + (f" {spec}" if spec else "")
        rows.append({**base, "method": name, "params": res.report.params_after, "reduction": res.report.macs_reduction,
                     "acc_before_ft": accuracy(m, test), "acc_bn": bn_recalibrated_accuracy(m, full, test, seed),
                     "seconds": time.perf_counter() - t0,
                     "saturated": sum(int(((v < 0.01) | (v > 0.99)).sum()) for v in res.autobot.scores.values())
                     / sum(v.numel() for v in res.autobot.scores.values()),
                     **plan_row(res.plan, graph, scores, ref.plan, res.autobot.scores, defaults.get(cfg.scope))})
        if set(fields) <= {"scope"} and task == "labels":
            defaults[cfg.scope] = res.plan
        log(rows[-1])


def markdown(rows, args, env, dense, elapsed) -> str:
    lines = [f"# Which channels AutoBot keeps ({args.model}, fashion-mnist)", "",
             f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores, {args.threads} thread(s)); "
             f"{elapsed / 60:.0f} min; load average at the start {env['loadavg_start'][0]:.2f}, at the end "
             f"{os.getloadavg()[0]:.2f}. Seeds {args.seeds}; dense {100 * dense:.2f}% on the test subset "
             f"({args.test_subset or 'all'} images). Mean ± std over seeds.", "",
             "Per plan, over the groups it prunes: the mean within-group percentile of the kept channels under the "
             "dense model's taylor / bn / l1 scores (0.5: what a random choice keeps on average; the top-k ceiling: "
             "what the top channels would score); for AutoBot, the mean Spearman correlation of its bottleneck "
             "scores (λ) with each criterion; the share of kept channels that taylor local keeps too, and that "
             "AutoBot's default plan of the same scope keeps too; accuracy (%) after BatchNorm re-estimation, no "
             "fine-tuning.", ""]
    for R in args.targets:
        lines += [f"## {100 * R:g}% fewer MACs", "",
                  "| plan | params | kept %ile taylor | kept %ile bn | kept %ile l1 | top-k ceiling | ρ(λ, taylor) | "
                  "ρ(λ, bn) | ρ(λ, l1) | overlap with taylor local | overlap with the default | saturated scores | "
                  "+ BN acc |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in dict.fromkeys(r["method"] for r in rows if r["target"] == R):
            sub = [r for r in rows if r["target"] == R and r["method"] == name]

            def f(key, scale=1.0, digits=2):
                vals = [r[key] for r in sub if key in r]
                if not vals:
                    return "–"
                m, s = mean_std(vals)
                return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"

            lines.append(f"| {name} | {f('params', 1, 0)} | {f('kept_pct_taylor')} | {f('kept_pct_bn')} | "
                         f"{f('kept_pct_l1')} | {f('kept_pct_ceiling')} | {f('spearman_taylor')} | "
                         f"{f('spearman_bn')} | {f('spearman_l1')} | {f('overlap_taylor_local')} | "
                         f"{f('overlap_default')} | {f('saturated')} | {f('acc_bn', 100)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--targets", type=float, nargs="+", default=[0.65, 0.5])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--variants", nargs="*", default=[], metavar="FIELD=VALUE[,FIELD=VALUE]",
                   help="AutoBotConfig overrides, and task=soft (the dense network's softmax as the targets)")
    p.add_argument("--taylor-batches", type=int, default=10, help="batches of 64 for the taylor scores")
    p.add_argument("--test-subset", type=int, default=None, help="evaluate on N test images (default all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stem", default="autobot_channels")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    ckpt, full, _, test = setup(args.model, "fashion-mnist", None, args.test_subset)
    dense = accuracy(ckpt.model, test)
    rows: list[dict] = []
    t0 = time.perf_counter()

    def log(row):
        row["loadavg"] = os.getloadavg()
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        write_results(args.stem, {"environment": env, "args": vars(args), "dense_accuracy": dense, "rows": rows},
                      markdown(rows, args, env, dense, time.perf_counter() - t0))

    for R in args.targets:
        for seed in args.seeds:
            run(args, args.model, R, seed, ckpt, full, test, rows, log)
    print(markdown(rows, args, env, dense, time.perf_counter() - t0))


if __name__ == "__main__":
    main()
