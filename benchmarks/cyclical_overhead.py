"""Per-step training time of the sparsifier vs dense training vs torch.nn.utils.prune masks (issue 3, 6c).

One process, one thread, one model at a time; the methods are interleaved within each repeat (dense, secateurs
project / shadow / ste, torch.nn.utils.prune) so that machine load hits them alike, and each ratio to dense is
taken within the same repeat. A step is forward + cross-entropy + backward + SGD-momentum step on a fixed random
batch (timing does not depend on the data). The sparsifier runs a GMP ramp to 90 % with mask updates every 50
steps, so the measured time includes amortised mask recomputation; torch.nn.utils.prune (global L1, 90 %) keeps
a fixed mask and recomputes ``weight = weight_orig * mask`` in a forward pre-hook.

    python benchmarks/cyclical_overhead.py [--models mlp lenet5 resnet20] [--repeats 5] [--steps 60]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from _common import environment, write_results
from secateurs.models import create_model
from secateurs.schedules import GMP
from secateurs.unstructured import CyclicalSparsifier, select_prunable

SHAPES = {"mlp": (1, 28, 28), "lenet5": (1, 28, 28), "resnet20": (3, 32, 32)}
BATCH = {"mlp": 128, "lenet5": 128, "resnet20": 64}
METHODS = ["dense", "secateurs project", "secateurs shadow", "secateurs ste", "torch.nn.utils.prune"]


def build(name: str, method: str, base: nn.Module):
    model = copy.deepcopy(base)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if method.startswith("secateurs"):
        CyclicalSparsifier(model, GMP(0.9, 2000), update_every=50, scope="global", variant=method.split()[1],
                           optimizer=opt)
    elif method == "torch.nn.utils.prune":
        prune.global_unstructured([(t.module, t.attr) for t in select_prunable(model)],
                                  pruning_method=prune.L1Unstructured, amount=0.9)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # weight_orig replaces weight
    return model, opt


def time_steps(model, opt, x, y, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        shape = SHAPES[name]
        base = create_model(name, num_classes=10, in_channels=shape[0], input_size=shape[1])
        x, y = torch.randn(BATCH[name], *shape), torch.randint(0, 10, (BATCH[name],))
        runs = {m: build(name, m, base) for m in METHODS}
        for m, (model, opt) in runs.items():  # warm-up: allocator, first mask updates
            model.train()
            time_steps(model, opt, x, y, args.warmup)
        per_step = {m: [] for m in METHODS}
        ratios = {m: [] for m in METHODS}
        for _ in range(args.repeats):
            this = {m: time_steps(*runs[m], x, y, args.steps) for m in METHODS}
            for m in METHODS:
                per_step[m].append(this[m])
                ratios[m].append(this[m] / this["dense"])
        for m in METHODS:
            row = {"model": name, "method": m, "batch": BATCH[name],
                   "ms_per_step_median": statistics.median(per_step[m]) * 1e3,
                   "ms_per_step": [t * 1e3 for t in per_step[m]],
                   "ratio_to_dense_mean": statistics.fmean(ratios[m]),
                   "ratio_to_dense_std": statistics.stdev(ratios[m]) if len(ratios[m]) > 1 else 0.0}
            rows.append(row)
            print(f"{name:9s} {m:22s} {row['ms_per_step_median']:8.2f} ms/step  x{row['ratio_to_dense_mean']:.3f} "
                  f"± {row['ratio_to_dense_std']:.3f}", flush=True)
    env = environment(args.threads)
    md = ["# Per-step training time: sparsifier vs dense vs torch.nn.utils.prune (issue 3, 6c)", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores shared with other jobs, {args.threads} "
          f"thread). {args.repeats} repeats × {args.steps} steps after {args.warmup} warm-up steps; methods "
          "interleaved within each repeat; ratio = method / dense within the same repeat (mean ± std over repeats). "
          "Step = forward + CE + backward + SGD momentum; 90 % global sparsity; the sparsifier's time includes a "
          "mask recomputation every 50 steps (GMP ramp).", "",
          "| model (batch) | method | ms / step (median) | × dense |", "|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} ({r['batch']}) | {r['method']} | {r['ms_per_step_median']:.2f} | "
                  f"{r['ratio_to_dense_mean']:.3f} ± {r['ratio_to_dense_std']:.3f} |")
    write_results("cyclical_overhead", {"environment": env, "settings": vars(args), "rows": rows}, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
