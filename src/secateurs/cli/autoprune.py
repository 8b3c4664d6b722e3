"""``secateurs autoprune``: AutoBot filter pruning of a trained checkpoint to a MACs reduction
(``secateurs.structured.prune(..., method="autobot")``), then optional fine-tuning.

Writes the pruned checkpoint (its ``model.json`` carries the plan), ``summary.json`` (docs/summary.md),
``plan.json`` and ``autobot.png`` (score histogram and kept width per group).
"""
from __future__ import annotations

import argparse

from . import _common as c
from . import _structured as s


def add_parser(sub) -> None:
    p = sub.add_parser(
        "autoprune", help="AutoBot: learned filter pruning to a MACs reduction",
        description="Train per-channel bottleneck scores on a frozen checkpoint (AutoBot, Castells & Yeom 2023), "
                    "pick one global threshold that removes --flops-reduction of the MACs (exactly: the achieved "
                    "reduction lies in [R, R + --tolerance]), physically remove the channels, verify the result "
                    "and optionally fine-tune.",
        epilog="Prints MACs and params of the source -> pruned, test accuracy of the source, pruned and fine-tuned "
               "network, and the bottleneck time. Every summary.json field: docs/summary.md.")
    g = s.add_common_args(p, "trained checkpoint to prune (dense, or already pruned: the plans compose)",
                          zero_reduction=False)
    g.add_argument("--beta", type=c.positive_float("--beta", allow_zero=True, high=c.MAX_LOSS_WEIGHT), default=6.0,
                   help="weight of the FLOPs loss (default 6)")
    g.add_argument("--gamma", type=c.positive_float("--gamma", allow_zero=True, high=c.MAX_LOSS_WEIGHT), default=0.2,
                   help="weight of the binarisation loss (default 0.2)")
    g.add_argument("--lr", type=c.positive_float("--lr", high=c.MAX_LR), default=0.5,
                   help="Adam lr of the scores (default 0.5)")
    g.add_argument("--batches", type=c.positive_int("--batches", c.MAX_BATCHES), default=200,
                   help="bottleneck training mini-batches (default 200)")
    g.add_argument("--batch-size", type=c.positive_int("--batch-size", c.MAX_BATCH_SIZE), default=64,
                   help="bottleneck mini-batch size (default 64)")
    g.add_argument("--tolerance", type=c.fraction("--tolerance", low_inclusive=False), default=0.01,
                   help="the achieved reduction (of a latency target: predicted) lies in [R, R + this] (default "
                        "0.01)")
    g.add_argument("--min-fraction", type=c.fraction("--min-fraction"), default=0.0, metavar="F",
                   help="every group keeps at least this fraction of its channels, its best (default 0: one)")
    g.add_argument("--cost-power", type=c.fraction("--cost-power", high_inclusive=True), default=1.0, metavar="P",
                   help="the cost loss pulls each channel's gate in proportion to (its cost)^P, at the same total "
                        "pull: 1 = the paper's, 0 = every channel alike (default 1)")
    s.add_round_to_arg(g)
    s.add_finetune_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import copy
    import dataclasses
    import json

    import torch

    from ..io import save
    from ..report import interleaved_latency_ms, latency_setting
    from ..structured import AutoBotConfig, prune
    from ..structured.autobot import plot_scores
    from ..train import evaluate

    ckpt, data, limits = s.start(args)
    model, progress = ckpt.model, False if args.quiet else None
    teacher = copy.deepcopy(model) if args.distill else None  # the source, before the surgery
    source_model = copy.deepcopy(model)  # timed against the pruned one at the end (interleaved)
    torch.manual_seed(args.seed)
    config = AutoBotConfig(beta=args.beta, gamma=args.gamma, lr=args.lr, batches=args.batches,
                           batch_size=args.batch_size, tolerance=args.tolerance, seed=args.seed,
                           min_fraction=args.min_fraction, cost_power=args.cost_power)
    with s.flags_named():
        result = prune(model, data, **s.target_kwargs(args), method="autobot", config=config, round_to=args.round_to,
                       bn_batches=args.bn_batches, seed=args.seed, graph_limits=limits, progress=progress)
    finetune = s.finetune(args, model, data, teacher)  # None without --finetune-epochs
    after = evaluate(model, data.test_x, data.test_y) if finetune is None else finetune[0]
    latency = latency_setting(batch_size=1, threads=1, repeats=20)  # the `report` command's setting, interleaved
    latency_pruned, latency_source = interleaved_latency_ms([model, source_model], tuple(data.input_shape), 1,
                                                            threads=1, repeats=20, progress=progress)
    plan = result.plan  # this run's selection, relative to --checkpoint's widths (plan.json, the plot)
    plan.model_spec = {k: v for k, v in dataclasses.asdict(ckpt.spec).items() if k != "plan"}
    spec = dataclasses.replace(ckpt.spec, plan=result.replay_plan(ckpt.spec.plan).to_dict())
    summary = {"command": "autoprune", "checkpoint": str(args.checkpoint), "model": ckpt.spec.name,
               "dataset": data.name, "source_pruned": ckpt.spec.plan is not None, **result.summary(),
               "accuracy_before_finetune": result.accuracy, "accuracy": after["accuracy"], "test_loss": after["loss"],
               "latency_ms_b1": latency_pruned, "latency_ms_b1_dense": latency_source, "latency": latency,
               "finetune": finetune[1] if finetune else None, "versions": c.versions()}

    def extra(tmp):
        (tmp / "plan.json").write_text(json.dumps(plan.to_dict(), indent=1) + "\n")
        plot_scores(tmp / "autobot.png", result.autobot.scores, plan.groups, plan.widths, result.selection.threshold,
                    title=f"AutoBot {ckpt.spec.name}: {result.report.macs_reduction:.1%} fewer MACs",
                    method=result.selection.method)

    save(args.out, model, spec, summary, overwrite=args.overwrite, extra=extra)
    x, source = summary, "source (already pruned: this plan composes with its plan)" if ckpt.spec.plan else "dense"
    print(f"{x['model']} on {data.name}: MACs {x['macs_dense'] / 1e6:.2f}M -> {x['macs'] / 1e6:.2f}M "
          f"({x['flops_reduction']:.2%} fewer; {s.target_text(args, x)}), params {x['params_dense']:,} -> "
          f"{x['params']:,}; accuracy {x['accuracy_dense']:.4f} {source}, {result.accuracy:.4f} pruned, "
          f"{x['accuracy']:.4f} {'fine-tuned' if finetune else '(no fine-tuning)'}; bottlenecks "
          f"{x['bottleneck_seconds']:.1f}s on {x['bottleneck_images']:,} images -> {args.out}")
    return 0
