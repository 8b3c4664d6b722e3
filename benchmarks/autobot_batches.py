"""AutoBot: accuracy before fine-tuning vs the number of bottleneck batches (the paper: 10, 50, 100, 200 batches;
the paper's curve saturates after 100–200). Also records the bottleneck wall time of each setting.

    python benchmarks/autobot_batches.py --model resnet20 --target 0.5 --batches 10 50 100 200 --seeds 0 1 2 \\
        --test-subset 2000 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from _common import environment, fmt, write_results
from autobot_common import accuracy, bn_recalibrated_accuracy, setup


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20"])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--target", type=float, default=0.5)
    p.add_argument("--batches", type=int, nargs="+", default=[10, 50, 100, 200])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dense-dir", default=None, help="load dense checkpoints from here, not the shared cache")
    p.add_argument("--stem", default="autobot_batches")
    p.add_argument("--reduced", default="none: the full configuration", help="what was reduced, for the report")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from secateurs.graph import build_channel_graph
    from secateurs.structured.autobot import AutoBotConfig, autoprune

    t0 = time.perf_counter()
    env = environment(args.threads)
    rows, dense = [], {}
    for model_name in args.models:
        ckpt, full, _, test = setup(model_name, args.data, None, args.test_subset, dense_dir=args.dense_dir)
        example = full.train_x[:1]
        graph = build_channel_graph(ckpt.model, example)
        dense[model_name] = accuracy(ckpt.model, test)
        for n in args.batches:
            for seed in args.seeds:
                m = copy.deepcopy(ckpt.model)
                res = autoprune(m, full, args.target, config=AutoBotConfig(batches=n, seed=seed),
                                example_inputs=example, graph=graph, progress=False)
                row = {"model": model_name, "target": args.target, "batches": n, "seed": seed,
                       "acc_before_ft": accuracy(m, test),
                       "acc_before_ft_bn": bn_recalibrated_accuracy(m, full, test, seed),
                       "reduction": res.report.macs_reduction,
                       "params": res.report.params_after, "bottleneck_s": res.bottleneck_seconds,
                       "best_step": res.best_step, "selection": res.selection.method}
                rows.append(row)
                print(f"[{time.perf_counter() - t0:6.0f}s] {row}", flush=True)
                md = ["# AutoBot: accuracy before fine-tuning vs bottleneck batches (fashion-mnist)", "",
                      f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores, {args.threads} thread(s)); "
                      f"target {args.target:.0%} fewer MACs; batch 64, β 6, γ 0.2, lr 0.5; mean ± std over seeds.",
                      "", "**Reduced configuration** (CPU budget): " + args.reduced, "",
                      "Paper (CIFAR-10, 3 seeds): VGG-16 at 65% / ResNet-56 at 56%: 10 batches 53.8 / 66.0; "
                      "50 → 77.8 / 79.1; 100 → 80.7 / 82.0; 200 → 82.1 / 84.5.", "",
                      "`before FT + BN`: the same pruned network after re-estimating BatchNorm statistics on 20 "
                      "training batches of 64 (forward passes only).", ""]
                for mn in dense:
                    md += [f"## {mn} (dense {dense[mn] * 100:.2f}% on the test subset)", "",
                           "| batches | acc before FT (%) | before FT + BN (%) | MACs reduction (%) | bottleneck s "
                           "| seeds |",
                           "|---|---|---|---|---|---|"]
                    for b in args.batches:
                        rs = [r for r in rows if r["model"] == mn and r["batches"] == b]
                        if rs:
                            md.append(f"| {b} | {fmt([r['acc_before_ft'] for r in rs])} | "
                                      f"{fmt([r['acc_before_ft_bn'] for r in rs])} | "
                                      f"{fmt([r['reduction'] for r in rs])} | "
                                      f"{fmt([r['bottleneck_s'] for r in rs], 1, 1)} | {len(rs)} |")
                    md.append("")
                write_results(args.stem, {"environment": env, "settings": vars(args), "dense": dense, "rows": rows,
                                          "elapsed_s": time.perf_counter() - t0}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
