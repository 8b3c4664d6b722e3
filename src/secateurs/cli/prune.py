"""``secateurs prune``: one-shot structured (channel) pruning of a checkpoint to a MACs target with a baseline
criterion, verified surgery and a checkpoint that replays the plan on load.

Writes DIR/model.json (architecture + the plan), model.safetensors, summary.json (``accuracy`` before fine-tuning
on the test split, ``macs``, ``macs_dense``, ``flops_reduction``, ``params``, ``params_dense``, ``widths`` per group,
...) and plan.txt (kept / full width per group). Fine-tune it with ``secateurs finetune``.
"""
from __future__ import annotations

import argparse

from . import _common as c
from ._graph_args import add_graph_limit_args, graph_limits

CRITERIA = ("l1", "l2", "bn", "taylor", "random")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prune", help="structured pruning to a FLOPs target: l1, l2, bn, taylor or random channel scores",
        description="Score every channel of every coupled channel group with a criterion (l1/l2 filter norm, "
                    "BatchNorm |gamma|, first-order Taylor on a few training batches, random), remove the "
                    "lowest-ranked channels until the MACs reduction lies in [R, R + 1 point], verify the surgery, "
                    "and save the pruned checkpoint. Fails (exit 2) with the reason when the target cannot be met.",
        epilog="Prints the MACs removed (achieved vs target), MACs and params before -> after, and the test "
               "accuracy before fine-tuning. summary.json's verify_max_abs_diff is the largest output difference "
               "between the masked and the physically pruned network on the check batch (~1e-6 means the surgery "
               "is exact). Every field: docs/summary.md.")
    p.add_argument("--checkpoint", required=True, type=c.existing_dir("--checkpoint"), metavar="DIR",
                   help="trained checkpoint to prune (dense, sparse or already pruned)")
    g = p.add_argument_group("pruning")
    g.add_argument("--criterion", required=True, choices=CRITERIA,
                   help="channel score: l1/l2 norm of the filter, bn |gamma|, first-order taylor, random")
    g.add_argument("--flops-reduction", required=True, type=c.fraction("--flops-reduction"), metavar="R",
                   help="fraction of the checkpoint's MACs to remove, in [0, 1) (FLOPs = 2*MACs: same ratio)")
    g.add_argument("--scope", choices=("global", "local"), default="global",
                   help="global: one ranking of all channels by score / group mean score (default); "
                        "local: the same pruned fraction in every group")
    g.add_argument("--round-to", type=c.positive_int("--round-to", c.MAX_CHANNEL_ARG), default=1, metavar="K",
                   help="pruned groups keep a multiple of K channels (default 1)")
    g.add_argument("--min-channels", type=c.positive_int("--min-channels", c.MAX_CHANNEL_ARG), default=1, metavar="N",
                   help="every group keeps at least N channels (default 1)")
    g.add_argument("--calib-batches", type=c.positive_int("--calib-batches", c.MAX_BATCHES), default=8, metavar="B",
                   help="taylor: training batches of --batch-size to accumulate gradients over (default 8)")
    g.add_argument("--batch-size", type=c.positive_int("--batch-size", c.MAX_BATCH_SIZE), default=64,
                   help="taylor: calibration batch size (default 64)")
    c.add_bn_batches_arg(g)
    c.add_data_args(p)
    c.add_run_args(p)
    c.add_trust_arg(p)
    add_graph_limit_args(p)
    p.set_defaults(run=run)


def calibration_batches(data, n: int, batch_size: int, seed: int):
    from ..data import seeded_batches

    return list(seeded_batches(data.train_x, data.train_y, batch_size=batch_size, seed=seed, batches=n))


def run(args: argparse.Namespace) -> int:
    import time

    from ..flops import count_model
    from ..graph import build_channel_graph
    from ..io import save
    from ..structured import PruningPlan, apply_plan, channel_scores, compose_plans, select_channels
    from ..structured.select import SelectionError
    from ..train import evaluate

    c.check_out(args)
    c.setup_threads(args)
    start = time.perf_counter()
    data = c.load_data(args)
    ckpt = c.load_checkpoint_arg(args.checkpoint, trust=args.trust_model_code)
    c.check_compatible(ckpt, data)
    model, spec = ckpt.model.eval(), ckpt.spec
    dense = count_model(model, data.input_shape)
    example = data.train_x[:2]
    graph = build_channel_graph(model, example, limits=graph_limits(args))

    batches = (calibration_batches(data, args.calib_batches, args.batch_size, args.seed)
               if args.criterion == "taylor" else None)
    try:
        scores = channel_scores(model, graph, args.criterion, data=batches, seed=args.seed)
    except ValueError as e:
        raise c.UsageError(f"--criterion {args.criterion}: {e}") from None
    try:
        selection = select_channels(
            graph, scores, args.flops_reduction, scope=args.scope, min_channels=args.min_channels,
            round_to=args.round_to, meta={"criterion": args.criterion, "seed": args.seed})
    except SelectionError as e:
        raise c.UsageError(f"--flops-reduction {args.flops_reduction:g}: {e}") from None
    report = apply_plan(model, selection.plan, example, graph=graph)  # verified: MACs, params, outputs
    after = count_model(model, data.input_shape)
    accuracy_before_bn = evaluate(model, data.test_x, data.test_y)["accuracy"] if args.bn_batches else None
    bn_used = c.recalibrate_bn(model, data, args.bn_batches, args.seed, quiet=args.quiet)
    accuracy = evaluate(model, data.test_x, data.test_y)

    plan = selection.plan
    if spec.plan is not None:  # a pruned checkpoint pruned again: model.json replays one plan on a dense model
        plan = compose_plans(PruningPlan.from_dict(spec.plan), plan)
    spec.plan = plan.to_dict()
    widths_dense = {g.id: g.width for g in graph.groups}
    summary = {
        "command": "prune", "model": spec.name, "dataset": data.name, "source": str(args.checkpoint),
        "criterion": args.criterion, "scope": args.scope, "round_to": args.round_to,
        "min_channels": args.min_channels, "seed": args.seed,
        "calib_batches": args.calib_batches if args.criterion == "taylor" else None,
        "accuracy": accuracy["accuracy"], "test_loss": accuracy["loss"],
        "bn_batches": args.bn_batches, "bn_batches_used": bn_used, "accuracy_before_bn": accuracy_before_bn,
        "accuracy_dense": ckpt.summary.get("accuracy"),
        "target_flops_reduction": args.flops_reduction,
        "flops_reduction": 1 - after.macs / max(dense.macs, 1),
        "macs": after.macs, "macs_dense": dense.macs, "flops": 2 * after.macs, "flops_dense": 2 * dense.macs,
        "params": after.params, "params_dense": dense.params,
        "params_reduction": 1 - after.params / max(dense.params, 1),
        "widths": selection.widths, "widths_dense": widths_dense,
        "prunable_groups": len(graph.prunable_groups()), "groups": len(graph.groups),
        "verify_max_abs_diff": report.max_abs_diff,
        "elapsed_s": time.perf_counter() - start, "versions": c.versions(),
    }
    if after.macs != selection.macs:
        raise RuntimeError(f"counted {after.macs} MACs after pruning; the selection promised {selection.macs}")

    def extra(tmp):
        (tmp / "plan.txt").write_text(selection.plan.summary() + "\n")

    save(args.out, model, spec, summary, overwrite=args.overwrite, extra=extra)
    print(f"{spec.name} on {data.name}: {args.criterion} ({args.scope}) removed "
          f"{summary['flops_reduction']:.2%} of MACs (target {args.flops_reduction:.2%}; "
          f"{dense.macs / 1e6:.2f} M -> {after.macs / 1e6:.2f} M), params {dense.params:,} -> {after.params:,}, "
          f"accuracy before fine-tuning {accuracy['accuracy']:.4f} -> {args.out}")
    return 0
