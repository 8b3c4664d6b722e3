"""How much the criteria's ranking should weigh a channel's latency: ``select_channels(cost_weight=w)``.

A channel's normalised l1 score is divided by ``rel ** w``, ``rel`` its group's latency per channel relative to the
mean over groups (w = 0: the plain ranking; w = 1: HALP's importance / latency ratio). Per committed Fashion-MNIST
checkpoint, latency target R (batch 1, 1 thread, this machine's latency profile) and w: the selection at the
predicted target, the pruned network's measured latency reduction (interleaved with the dense one), its MACs and
parameters, the smallest kept fraction of any group, and test accuracy after BatchNorm re-estimation (20 batches)
and after the same short fine-tune (``--finetune-epochs`` over ``--finetune-subset`` training images, the AutoBot
recipe). No correction rounds: every w is compared at the same *predicted* latency, and the measured one is
reported beside it.

    python benchmarks/cost_weight.py [--models resnet20 resnet56] [--targets 0.3 0.5] [--weights 0 0.25 0.5 1]
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch

from _common import environment, mean_std, write_results


def run(args, log) -> list[dict]:
    from autobot_common import bn_recalibrated_accuracy, finetune, setup
    from secateurs.cost.measured import measure_latency
    from secateurs.graph import build_channel_graph
    from secateurs.structured import Target, apply_plan, channel_scores, select_channels
    from secateurs.structured.latency import LatencyConfig, latency_model

    rows = []
    for name in args.models:
        ckpt, full, ft_data, test = setup(name, "fashion-mnist", args.finetune_subset, args.test_subset,
                                          dense_dir=os.path.join(os.path.dirname(__file__), "checkpoints"))
        dense = ckpt.model.eval()
        x = full.train_x[:1]
        shape = tuple(x.shape[1:])
        graph = build_channel_graph(dense, x)
        cost = latency_model(dense, graph, shape, LatencyConfig(batch_size=1, threads=args.threads))
        scores = channel_scores(dense, graph, "l1")
        widths = {g.id: g.width for g in graph.prunable_groups()}
        for r in args.targets:
            for w in args.weights:
                sel = select_channels(graph, scores, Target(r, 0.02, cost="latency"), cost=cost, cost_weight=w)
                model = copy.deepcopy(dense)
                report = apply_plan(model, sel.plan, x, graph=graph)
                m = measure_latency(dense, model, shape, batch_size=1, threads=args.threads)
                bn = bn_recalibrated_accuracy(model, full, test, seed=0)
                acc_ft, ft_s = finetune(copy.deepcopy(model), ft_data, args.finetune_epochs, 0, 128, test,
                                        threads=args.finetune_threads)
                kept = {g: sel.widths[g] / widths[g] for g in widths}
                row = {"model": name, "target": r, "weight": w, "predicted": sel.reduction,
                       "measured": m.reduction, "macs_reduction": report.macs_reduction,
                       "params": report.params_after, "min_kept_fraction": min(kept.values()),
                       "thinnest": min(kept, key=kept.get), "accuracy_bn": bn, "accuracy_ft": acc_ft,
                       "ft_seconds": ft_s, "widths": sel.widths, "loadavg": os.getloadavg()}
                rows.append(row)
                log(f"{name} R {r:.2f} w {w:g}: predicted {row['predicted']:.3f}, measured {row['measured']:.3f}, "
                    f"MACs {row['macs_reduction']:.3f}, min kept {row['min_kept_fraction']:.2f} "
                    f"({row['thinnest']}), BN {bn:.4f}, FT {acc_ft:.4f}")
                yield rows


def markdown(env, args, rows, partial) -> str:
    md = ["# Cost-weighted ranking: how much a channel's latency should count", "",
          *(["**Partial**: the run was still going when this file was written; rows so far.", ""] if partial else []),
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores), {args.threads} thread(s) for timing, "
          f"{args.finetune_threads} for fine-tuning; 1-minute load average "
          f"{min(r['loadavg'][0] for r in rows):.2f}-{max(r['loadavg'][0] for r in rows):.2f} during the rows. "
          "Committed Fashion-MNIST checkpoints, l1 scores, global scope, latency at batch 1 (this machine's "
          f"profile); selection at the predicted target (window [R, R + 0.02]), no correction rounds. *BN*: "
          f"accuracy on {args.test_subset} test images after re-estimating BatchNorm on 20 batches; *FT*: after "
          f"{args.finetune_epochs:g} epoch(s) of fine-tuning on {args.finetune_subset} training images (batch 128, "
          "the AutoBot recipe), seed 0.", "",
          "| model | target | w | predicted | measured | MACs removed | params | thinnest group (kept) | BN | FT |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['target']:.2f} | {r['weight']:g} | {r['predicted']:.3f} | {r['measured']:.3f} "
                  f"| {r['macs_reduction']:.3f} | {r['params'] / 1e3:.0f}k | {r['thinnest']} "
                  f"({r['min_kept_fraction']:.2f}) | {100 * r['accuracy_bn']:.2f} | {100 * r['accuracy_ft']:.2f} |")
    md += ["", "Mean over (model, target) of the fine-tuned accuracy and the measured reduction, per w:", "",
           "| w | FT accuracy | measured reduction | rows |", "|---|---|---|---|"]
    for w in args.weights:
        sub = [r for r in rows if r["weight"] == w]
        if sub:
            md.append(f"| {w:g} | {100 * mean_std([r['accuracy_ft'] for r in sub])[0]:.2f} | "
                      f"{mean_std([r['measured'] for r in sub])[0]:.3f} | {len(sub)} |")
    return "\n".join(md) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    p.add_argument("--targets", nargs="+", type=float, default=[0.3, 0.5])
    p.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.25, 0.5, 1.0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--finetune-threads", type=int, default=2)
    p.add_argument("--finetune-epochs", type=float, default=1.0)
    p.add_argument("--finetune-subset", type=int, default=12000)
    p.add_argument("--test-subset", type=int, default=2000)
    p.add_argument("--stem", default="cost_weight")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    t0 = time.perf_counter()
    rows: list[dict] = []
    for rows in run(args, lambda s: print(s, flush=True)):
        write_results(args.stem, {"environment": env | {"elapsed_s": time.perf_counter() - t0}, "args": vars(args),
                                  "rows": rows, "partial": True}, markdown(env, args, rows, True))
    write_results(args.stem, {"environment": env | {"elapsed_s": time.perf_counter() - t0,
                                                    "loadavg_end": os.getloadavg()},
                              "args": vars(args), "rows": rows, "partial": False}, markdown(env, args, rows, False))


if __name__ == "__main__":
    main()
