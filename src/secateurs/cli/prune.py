"""``secateurs prune``: one-shot structured (channel) pruning of a checkpoint to a MACs target with a baseline
criterion (``secateurs.structured.prune``), saved as a checkpoint whose ``model.json`` replays the plan.

Writes DIR/model.json, model.safetensors, summary.json (docs/summary.md) and plan.txt (kept / full width per
group). Fine-tune it with ``secateurs finetune``.
"""
from __future__ import annotations

import argparse

from . import _common as c
from . import _structured as s

CRITERIA = ("l1", "l2", "bn", "taylor", "random")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prune", help="structured pruning to a FLOPs target: l1, l2, bn, taylor or random channel scores",
        description="Score every channel of every coupled channel group with a criterion (l1/l2 filter norm, "
                    "BatchNorm |gamma|, first-order Taylor on a few training batches, random), remove the "
                    "lowest-ranked channels until the MACs reduction lies in [R, R + 1 point], verify the surgery, "
                    "and save the pruned checkpoint. Fails (exit 2) with the reason when the target cannot be met.",
        epilog="Prints the MACs removed, MACs and params before -> after and the test accuracy before "
               "fine-tuning. Every summary.json field: docs/summary.md.")
    g = s.add_common_args(p, "trained checkpoint to prune (dense, sparse or already pruned)", zero_reduction=True)
    g.add_argument("--criterion", required=True, choices=CRITERIA,
                   help="channel score: l1/l2 norm of the filter, bn |gamma|, first-order taylor, random")
    g.add_argument("--scope", choices=("global", "local"), default="global",
                   help="global: one ranking of all channels by score / group mean score (default); "
                        "local: the same pruned fraction in every group")
    s.add_round_to_arg(g)
    g.add_argument("--min-channels", type=c.positive_int("--min-channels", c.MAX_CHANNEL_ARG), default=1, metavar="N",
                   help="every group keeps at least N channels (default 1)")
    g.add_argument("--calib-batches", type=c.positive_int("--calib-batches", c.MAX_BATCHES), default=8, metavar="B",
                   help="taylor: training batches of --batch-size to accumulate gradients over (default 8)")
    g.add_argument("--batch-size", type=c.positive_int("--batch-size", c.MAX_BATCH_SIZE), default=64,
                   help="taylor: calibration batch size (default 64)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from ..io import save
    from ..structured import prune

    start = time.perf_counter()
    ckpt, data, limits = s.start(args)
    with s.flags_named():
        result = prune(ckpt.model.eval(), data, **s.target_kwargs(args), method=args.criterion,
                       scope=args.scope, min_channels=args.min_channels, round_to=args.round_to,
                       calib_batches=args.calib_batches, batch_size=args.batch_size, bn_batches=args.bn_batches,
                       seed=args.seed, graph_limits=limits, progress=False if args.quiet else None)
    spec = dataclasses.replace(ckpt.spec, plan=result.replay_plan(ckpt.spec.plan).to_dict())
    summary = {"command": "prune", "model": spec.name, "dataset": data.name, "checkpoint": str(args.checkpoint),
               **result.summary(), "elapsed_s": time.perf_counter() - start, "versions": c.versions()}
    save(args.out, ckpt.model, spec, summary, overwrite=args.overwrite,
         extra=lambda tmp: (tmp / "plan.txt").write_text(result.plan.summary() + "\n"))
    r = result.report  # the MACs removed (achieved vs target), MACs and params, accuracy before fine-tuning
    print(f"{spec.name} on {data.name}: {args.criterion} ({args.scope}) removed {r.macs_reduction:.2%} of MACs "
          f"({s.target_text(args, summary)}; {r.macs_before / 1e6:.2f} M -> {r.macs_after / 1e6:.2f} M), params "
          f"{r.params_before:,} -> {r.params_after:,}, accuracy before fine-tuning {result.accuracy:.4f} -> {args.out}")
    return 0
