"""Dense vs structurally pruned CPU inference latency at 30 / 50 / 70 % MACs reduction.

For each model the dense network and its l1-global pruned versions (``secateurs.structured``: exact MACs target,
verified surgery) are timed in eval mode under ``torch.inference_mode`` at batch 1 and batch 64, with
``torch.set_num_threads`` pinned, warm-up passes first, and the repeats *interleaved* (one pass of every variant
per round) so that background load drifts hit every variant alike. Reported: the median latency per variant, the
latency ratio pruned/dense next to the MACs ratio pruned/dense. Weights are random (latency does not depend on
their values, only on the widths the plan leaves). The load average before and after is recorded: on a shared
machine, compare ratios, not absolute times.

    python benchmarks/structured_latency.py [--models resnet56 vgg16 mobilenetv2] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from _common import environment, write_results


def build(name: str, reductions, round_tos=(1,), shape=(3, 32, 32)):
    from secateurs.flops import count_model
    from secateurs.graph import build_channel_graph
    from secateurs.models import create_model
    from secateurs.structured import apply_plan, channel_scores, select_channels

    torch.manual_seed(0)
    dense = create_model(name, num_classes=10, in_channels=shape[0]).eval()
    x = torch.randn(1, *shape)
    graph = build_channel_graph(dense, x)
    scores = channel_scores(dense, graph, "l1")
    variants = [("dense", 0.0, 1, dense, count_model(dense, shape))]
    for k in round_tos:
        for r in reductions:
            sel = select_channels(graph, scores, r, scope="global", round_to=k)
            model = copy.deepcopy(dense)
            apply_plan(model, sel.plan, x, graph=graph)
            label = f"-{r:.0%}" + (f" round_to {k}" if k > 1 else "")
            variants.append((label, r, k, model.eval(), count_model(model, shape)))
    return variants


def time_variants(variants, batch: int, warmup: int, repeats: int, shape=(3, 32, 32)) -> list[list[float]]:
    x = torch.randn(batch, *shape)
    times = [[] for _ in variants]
    with torch.inference_mode():
        for _ in range(warmup):
            for *_, model, _ in variants:
                model(x)
        for _ in range(repeats):
            for i, (*_, model, _) in enumerate(variants):
                t0 = time.perf_counter()
                model(x)
                times[i].append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet56", "vgg16", "mobilenetv2"])
    p.add_argument("--reductions", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--round-to", nargs="+", type=int, default=[1, 8],
                   help="one pruned variant per reduction and round_to (widths multiples of K)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, nargs=2, default=[30, 7], metavar=("SMALL", "LARGE"),
                   help="timed passes per variant at batch 1 / at larger batches")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = []
    for name in args.models:
        variants = build(name, args.reductions, args.round_to)
        dense_macs = variants[0][-1].macs
        dense_params = variants[0][-1].params
        for batch in args.batches:
            reps = args.repeats[0] if batch == 1 else args.repeats[1]
            times = time_variants(variants, batch, args.warmup, reps)
            dense_med = statistics.median(times[0])
            for (label, r, k, _, cost), t in zip(variants, times):
                med = statistics.median(t)
                rows.append({
                    "model": name, "variant": label, "target": r, "round_to": k, "batch": batch,
                    "macs": cost.macs, "params": cost.params, "macs_ratio": cost.macs / dense_macs,
                    "params_ratio": cost.params / dense_params, "latency_ms_median": med * 1e3,
                    "latency_ms_min": min(t) * 1e3, "latency_ms_max": max(t) * 1e3,
                    "latency_ms_iqr": (statistics.quantiles(t, n=4)[2] - statistics.quantiles(t, n=4)[0]) * 1e3
                    if len(t) >= 4 else None,
                    "repeats": len(t), "latency_ratio": med / dense_med, "speedup": dense_med / med,
                })
                print(f"{name:12s} {label:16s} batch {batch:3d}: {med * 1e3:9.2f} ms  "
                      f"MACs x{cost.macs / dense_macs:.3f}  latency x{med / dense_med:.3f}", flush=True)
    load_after = os.getloadavg()
    env = environment(args.threads) | {"loadavg_before": load_before, "loadavg_after": load_after,
                                       "elapsed_s": time.perf_counter() - start}
    shared = max(load_before[0], load_after[0]) > args.threads
    md = ["# Structured pruning: dense vs pruned CPU inference latency", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores), torch threads pinned to {args.threads}; "
          f"input 3x32x32, eval mode, `torch.inference_mode`, {args.warmup} warm-up passes, median of "
          f"{args.repeats[0]} (batch 1) / {args.repeats[1]} (batch >1) interleaved passes. Pruned: l1 filter norm, "
          "global ranking, exact MACs target (secateurs.structured.select_channels), without and with `round_to 8` "
          "(every pruned width a multiple of 8), random weights.",
          f"Load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f}"
          + (" — **the machine was shared with other jobs during the run; absolute times are noisy, the ratios "
             "(interleaved passes) less so.**" if shared else "."), "",
          "| model | variant | MACs (M) | MACs ratio | params ratio | batch | median ms | latency ratio | speed-up |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['variant']} | {r['macs'] / 1e6:.1f} | {r['macs_ratio']:.3f} | "
                  f"{r['params_ratio']:.3f} | {r['batch']} | {r['latency_ms_median']:.2f} | "
                  f"{r['latency_ratio']:.3f} | {r['speedup']:.2f}x |")
    md += ["", "Latency ratio = median pruned / median dense at the same batch; MACs ratio = pruned / dense MACs "
           "(MACs = multiply-accumulates of conv/linear; FLOPs = 2 x MACs)."]
    write_results("structured_latency", {"environment": env, "args": vars(args), "rows": rows}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
