"""``secateurs autoprune``: AutoBot filter pruning of a trained checkpoint to a MACs reduction, then fine-tuning.

Writes the pruned checkpoint (its ``model.json`` carries the plan, so ``secateurs.load`` rebuilds the smaller
architecture), ``summary.json`` (accuracy before and after fine-tuning, MACs, params, widths, bottleneck time and
images, the loss history), ``plan.json`` and ``autobot.png`` (score histogram and kept width per group).
"""
from __future__ import annotations

import argparse

from . import _common as c
from ._graph_args import add_graph_limit_args, graph_limits


def add_parser(sub) -> None:
    p = sub.add_parser(
        "autoprune", help="AutoBot: learned filter pruning to a MACs reduction",
        description="Train per-channel bottleneck scores on a frozen checkpoint (AutoBot, Castells & Yeom 2023), "
                    "pick one global threshold that removes --flops-reduction of the MACs (exactly, within "
                    "--tolerance), physically remove the channels, verify the result and optionally fine-tune.",
        epilog="Prints: MACs and params of the source checkpoint -> pruned; test accuracy of the source, of the "
               "pruned network before fine-tuning and after; the bottleneck training time. summary.json also "
               "has best_step (the bottleneck step whose scores were kept: the lowest loss in the last 40% of "
               "the steps), threshold (the global score threshold θ, null when selection_method is 'ranked' or "
               "'greedy': no single θ hit the MACs window, so channels were taken in score order), "
               "max_abs_diff (largest output difference masked vs physically pruned: ~1e-6 means exact "
               "surgery) and latency_ms_b1 / latency_ms_b1_dense (median ms, batch 1, 1 thread, timed "
               "interleaved; the setting is in 'latency'). Every field: docs/summary.md.")
    p.add_argument("--checkpoint", required=True, type=c.existing_dir("--checkpoint"), metavar="DIR",
                   help="trained checkpoint to prune (dense, or already pruned: the plans compose)")
    g = p.add_argument_group("autobot")
    g.add_argument("--flops-reduction", required=True, metavar="R",
                   type=c.fraction("--flops-reduction", low_inclusive=False),
                   help="fraction of MACs (= FLOPs) to remove, in (0, 1)")
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
    g.add_argument("--tolerance", type=c.fraction("--tolerance", low_inclusive=False), default=0.005,
                   help="achieved reduction within ± this of R (default 0.005)")
    c.add_bn_batches_arg(g)
    f = p.add_argument_group("fine-tuning (SGD, cosine; the paper's CIFAR recipe)")
    f.add_argument("--finetune-epochs", default=0.0,
                   type=c.positive_float("--finetune-epochs", allow_zero=True, high=c.MAX_EPOCHS),
                   metavar="E", help="fine-tune the pruned network for E epochs (default 0: no fine-tuning)")
    f.add_argument("--finetune-lr", type=c.positive_float("--finetune-lr", high=c.MAX_LR), default=0.02, metavar="LR",
                   help="peak SGD learning rate, cosine to 0 (default 0.02)")
    f.add_argument("--finetune-weight-decay", type=c.positive_float("--finetune-weight-decay", allow_zero=True,
                                                                 high=c.MAX_WEIGHT_DECAY),
                   default=2e-3, metavar="WD", help="weight decay (default 2e-3)")
    f.add_argument("--finetune-momentum", type=c.fraction("--finetune-momentum"), default=0.9, metavar="M",
                   help="SGD momentum (default 0.9)")
    f.add_argument("--finetune-batch-size", type=c.positive_int("--finetune-batch-size", c.MAX_BATCH_SIZE),
                   default=256, metavar="B", help="fine-tuning batch size (default 256)")
    c.add_distill_args(f, None)
    c.add_data_args(p)
    c.add_run_args(p)
    c.add_trust_arg(p)
    add_graph_limit_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import copy
    import dataclasses
    import json

    import torch

    from ..graph import build_channel_graph
    from ..errors import UnreachableTargetError
    from ..io import save
    from ..report import interleaved_latency_ms, latency_setting
    from ..structured import PruningPlan, compose_plans
    from ..structured.autobot import AutoBotConfig, autoprune, finetune_config, plot_scores
    from ..train import evaluate

    c.check_out(args)
    c.setup_threads(args)
    progress = False if args.quiet else None
    ckpt = c.load_checkpoint_arg(args.checkpoint, trust=args.trust_model_code)
    data = c.load_data(args)
    if ckpt.spec.input_shape and tuple(ckpt.spec.input_shape) != tuple(data.input_shape):
        raise c.UsageError(f"--data {args.data}: inputs of shape {tuple(data.input_shape)}, but the checkpoint "
                           f"was trained on {tuple(ckpt.spec.input_shape)}")
    model = ckpt.model
    if args.distill and args.finetune_epochs == 0:
        raise c.UsageError("--distill: distillation applies to fine-tuning; give --finetune-epochs E > 0")
    teacher = copy.deepcopy(model) if args.distill else None  # the source, before the surgery
    torch.manual_seed(args.seed)
    shape = tuple(data.input_shape)
    source_model = copy.deepcopy(model)  # timed against the pruned one at the end (interleaved)
    config = AutoBotConfig(beta=args.beta, gamma=args.gamma, lr=args.lr, batches=args.batches,
                           batch_size=args.batch_size, tolerance=args.tolerance, seed=args.seed)
    try:
        graph = build_channel_graph(model, data.train_x[:1], limits=graph_limits(args))
        result = autoprune(model, data, args.flops_reduction, config=config, graph=graph, progress=progress)
    except UnreachableTargetError as e:  # by type: the target, not the code, is at fault
        raise c.UsageError(f"--flops-reduction {args.flops_reduction}: {e}") from None
    before_bn = result.accuracy if args.bn_batches else None
    bn_used = c.recalibrate_bn(model, data, args.bn_batches, args.seed, quiet=args.quiet)
    before = evaluate(model, data.test_x, data.test_y) if bn_used else {"accuracy": result.accuracy}
    finetune = None
    if args.finetune_epochs > 0:
        ft = finetune_config(args.finetune_epochs, lr=args.finetune_lr, weight_decay=args.finetune_weight_decay,
                             momentum=args.finetune_momentum, batch_size=args.finetune_batch_size, seed=args.seed)
        criterion = None if teacher is None else c.distill_criterion(args, teacher, next(model.parameters()).device)
        finetune = c.run_trainer(args, c.make_trainer(args, model, data, ft, flag="--finetune-batch-size",
                                                      criterion=criterion))
        finetune_summary = {"config": dataclasses.asdict(ft), **finetune.to_dict(),
                            "distill": None if criterion is None else {"teacher": "source", **criterion.to_dict()}}
    after = evaluate(model, data.test_x, data.test_y) if finetune is None else \
        {"accuracy": finetune.accuracy, "loss": finetune.loss}
    # the `report` command's setting (batch 1, 1 thread, 20 rounds), source and pruned model interleaved
    latency = latency_setting(batch_size=1, threads=1, repeats=20)
    latency_pruned, latency_source = interleaved_latency_ms([model, source_model], shape, 1, threads=1,
                                                            repeats=20, progress=progress)

    plan = result.plan  # this run's selection, relative to --checkpoint's widths (plan.json, the plot)
    plan.model_spec = {k: v for k, v in dataclasses.asdict(ckpt.spec).items() if k != "plan"}
    # model.json replays one plan on a fresh dense model: an already pruned checkpoint gets the composition
    replay = plan if ckpt.spec.plan is None else compose_plans(PruningPlan.from_dict(ckpt.spec.plan), plan)
    spec = dataclasses.replace(ckpt.spec, plan=replay.to_dict())
    summary = {
        "command": "autoprune", "checkpoint": str(args.checkpoint), "model": ckpt.spec.name, "dataset": data.name,
        "requested_flops_reduction": args.flops_reduction,
        "source_pruned": ckpt.spec.plan is not None,
        "accuracy_dense": result.accuracy_source, "accuracy_before_finetune": before["accuracy"],
        "bn_batches": args.bn_batches, "bn_batches_used": bn_used, "accuracy_before_bn": before_bn,
        "accuracy": after["accuracy"], "test_loss": after["loss"],
        **result.summary(),
        "latency_ms_b1": latency_pruned, "latency_ms_b1_dense": latency_source, "latency": latency,
        "finetune": finetune_summary if finetune is not None else None,
        "bottleneck_history": result.history, "seed": args.seed, "versions": c.versions(),
    }

    def extra(tmp):
        (tmp / "plan.json").write_text(json.dumps(plan.to_dict(), indent=1) + "\n")
        plot_scores(tmp / "autobot.png", result.scores, plan.groups, plan.widths, result.selection.threshold,
                    title=f"AutoBot {ckpt.spec.name}: {result.report.macs_reduction:.1%} fewer MACs",
                    method=result.selection.method)

    save(args.out, model, spec, summary, overwrite=args.overwrite, extra=extra)
    s = summary
    source = "source (already pruned: this plan composes with its plan)" if s["source_pruned"] else "dense"
    print(f"{ckpt.spec.name} on {data.name}: MACs {s['macs_dense'] / 1e6:.2f}M -> {s['macs'] / 1e6:.2f}M "
          f"({s['flops_reduction']:.2%} fewer), params {s['params_dense']:,} -> {s['params']:,}; accuracy "
          f"{s['accuracy_dense']:.4f} {source}, {s['accuracy_before_finetune']:.4f} pruned, {s['accuracy']:.4f} "
          f"{'fine-tuned' if finetune is not None else '(no fine-tuning)'}; bottlenecks "
          f"{s['bottleneck_seconds']:.1f}s on {s['bottleneck_images']:,} images -> {args.out}")
    return 0
