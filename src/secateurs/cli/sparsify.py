"""``secateurs sparsify``: magnitude pruning to an exact sparsity along a one-shot, GMP or cyclical schedule.

Writes a sparse checkpoint (pruned weights are exact zeros in ``model.safetensors``), ``summary.json``
(accuracy, exact sparsity over the prunable tensors and per layer, recovered fraction, resolved schedule,
elapsed time), ``history.json`` (one record per mask update), ``schedule.txt`` (the planned schedule as a
table) and ``sparsity.png`` (planned vs realised sparsity over the optimizer steps).
"""
from __future__ import annotations

import argparse

from ..schedules import DEFAULT_CYCLES
from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sparsify", help="unstructured magnitude pruning: one-shot, GMP or cyclical",
        description="Train (or fine-tune a checkpoint) while magnitude masks follow a sparsity schedule, then save "
                    "the sparse model. Cyclical pruning (Srinivas et al. 2022) raises sparsity to --sparsity in "
                    "--cycles cubic ramps, restarting each later cycle at --restart-sparsity so that weights pruned "
                    "by mistake can return; --cycles 1 is gradual magnitude pruning (GMP).",
        epilog="Prints: the achieved sparsity (exact zeros over the prunable tensors), the test accuracy, "
               "'recovered' = of the weights the final mask keeps, the fraction that was pruned at some earlier "
               "mask update (weights that came back; 0 for one-shot or cumulative masks), and the wall time. "
               "summary.json also has mean_churn (mean fraction of prunable weights whose mask bit flips at an "
               "update). Every field: docs/summary.md.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=c.existing_dir("--checkpoint"), metavar="DIR",
                     help="start from a trained checkpoint (fine-tune while pruning)")
    src.add_argument("--model", metavar="M",
                     help="train from scratch: zoo name (list: `secateurs info --models`) or package.module:factory")
    g = p.add_argument_group("sparsity")
    g.add_argument("--sparsity", required=True, type=c.fraction("--sparsity"), metavar="S",
                   help="final fraction of zeros over the prunable tensors, in [0, 1)")
    g.add_argument("--schedule", choices=("oneshot", "gmp", "cyclical"), default="cyclical",
                   help="oneshot: prune once at --prune-at; gmp: one cubic ramp; cyclical: --cycles ramps "
                        "(default: cyclical)")
    g.add_argument("--cycles", type=c.positive_int("--cycles", 10_000), default=None, metavar="C",
                   help=f"cyclical: number of cycles (default {DEFAULT_CYCLES}; 1 = GMP)")
    g.add_argument("--restart-sparsity", type=c.fraction("--restart-sparsity"), default=0.0, metavar="R",
                   help="cyclical: sparsity at the start of cycles 2..C (default 0 = dense again)")
    g.add_argument("--last-cycle", type=c.fraction("--last-cycle", low_inclusive=False), default=None, metavar="F",
                   help="cyclical: fraction of the steps the last cycle (the one whose mask is kept) gets; the "
                        "earlier cycles share the rest (default: equal cycles)")
    g.add_argument("--initial-sparsity", type=c.fraction("--initial-sparsity"), default=0.0, metavar="S_I",
                   help="gmp/cyclical: sparsity at the start of the first ramp (default 0)")
    g.add_argument("--ramp", type=c.fraction("--ramp", low_inclusive=False, high_inclusive=True), default=0.75,
                   metavar="RHO", help="gmp/cyclical: fraction of each cycle spent ramping up (default 0.75)")
    g.add_argument("--begin-epochs", default=0.0,
                   type=c.positive_float("--begin-epochs", allow_zero=True, high=c.MAX_EPOCHS),
                   metavar="E", help="gmp/cyclical: dense warm-up epochs before the first ramp (default 0)")
    g.add_argument("--prune-at", type=c.fraction("--prune-at", high_inclusive=True), default=0.0, metavar="F",
                   help="oneshot: prune after this fraction of the steps (default 0: prune the starting weights)")
    g.add_argument("--update-every", type=c.positive_int("--update-every", c.MAX_STEPS), default=50, metavar="K",
                   help="steps between mask recomputations (default 50)")
    g.add_argument("--scope", choices=("layer", "global"), default="layer",
                   help="magnitude ranking per layer (uniform sparsity) or over all prunable tensors "
                        "(default: layer)")
    g.add_argument("--min-density", type=c.fraction("--min-density", high_inclusive=False), default=0.0,
                   metavar="D", help="every pruned tensor keeps at least this fraction of its weights (default 0; "
                                     "guards --scope global against pruning a layer away)")
    g.add_argument("--live-outputs", choices=("on", "off"), default="on",
                   help="the last layer keeps its largest weight in every row while its kept count allows, so "
                        "no output (class) is left without a weight; the count stays exact (default: on)")
    g.add_argument("--variant", choices=("project", "shadow", "ste"), default="project",
                   help="weight handling: project (zero pruned weights and their momentum after every step), "
                        "shadow (forward mask, stale pruned weights), ste (forward mask, straight-through) "
                        "(default: project)")
    g.add_argument("--pattern", default=None, metavar="N:M",
                   help="semi-structured N:M sparsity (e.g. 2:4): at most N non-zeros in every M consecutive "
                        "weights of each row; --sparsity must be the pattern's 1 - N/M (0.5 for 2:4); the "
                        "schedule sets the fraction of rows under the pattern")
    g.add_argument("--cumulative", action="store_true",
                   help="masks only shrink (classic monotone GMP; no recovery)")
    g.add_argument("--include", nargs="+", metavar="PATTERN", default=None,
                   help="prune only weights whose name matches one of these fnmatch patterns")
    g.add_argument("--exclude", nargs="+", metavar="PATTERN", default=(), help="never prune these weights")
    g.add_argument("--keep-first-dense", action="store_true", help="do not prune the first conv/linear layer")
    g.add_argument("--keep-last-dense", action="store_true", help="do not prune the last conv/linear layer")
    g.add_argument("--bn-batches", type=c.nonneg_int("--bn-batches", c.MAX_BATCHES), default=50, metavar="N",
                   help="re-estimate BatchNorm statistics on N training batches of --batch-size at the end (0: "
                        "off; default 50)")
    g.add_argument("--lr-restart", action="store_true",
                   help="cyclical: restart the cosine learning rate at every cycle (default: one cosine)")
    g.add_argument("--save-format", choices=("dense", "sparse"), default="dense",
                   help="checkpoint storage: dense model.safetensors (default) or the compressed sparse form "
                        "(non-zero values + smallest index per tensor; what `secateurs export --format sparse` "
                        "writes)")
    g.add_argument("--plan-only", action="store_true",
                   help="print the resolved schedule as a table and exit without training or writing")
    c.add_data_args(p)
    c.add_train_args(p, epochs=10, lr=0.05, warmup=0.0)
    c.add_distill_args(p.add_argument_group("distillation"), "--distill-from")
    c.add_run_args(p, out_required=False)
    c.add_trust_arg(p)
    p.set_defaults(run=run)


def _schedule(args, total_steps: int, steps_per_epoch: int):
    from ..schedules import make_schedule

    kw: dict = {}
    if args.schedule == "oneshot":
        kw["prune_step"] = round(args.prune_at * total_steps)
    else:
        kw.update(ramp=args.ramp, initial_sparsity=args.initial_sparsity,
                  begin_step=round(args.begin_epochs * steps_per_epoch))
        if args.schedule == "cyclical":
            kw.update(cycles=args.cycles or DEFAULT_CYCLES, restart_sparsity=args.restart_sparsity)
            if args.last_cycle is not None:
                kw["last_cycle"] = args.last_cycle
    flags = {"final_sparsity": "--sparsity", "cycles": "--cycles", "ramp": "--ramp", "begin_step": "--begin-epochs",
             "initial_sparsity": "--initial-sparsity", "restart_sparsity": "--restart-sparsity",
             "prune_step": "--prune-at", "total_steps": "--epochs", "last_cycle": "--last-cycle"}
    try:
        return make_schedule(args.schedule, args.sparsity, total_steps, **kw)
    except ValueError as e:
        flag = next((f for k, f in flags.items() if str(e).startswith(k)), "--schedule")
        raise c.UsageError(f"{flag}: {e} ({total_steps} training steps)") from None


def _check_reachable(args, targets) -> None:
    """Refuse a --sparsity that would prune every weight of a tensor (layer scope: the smallest tensor; global
    scope: all of them). A tensor of n weights loses round(s*n) of them, so s must stay below 1 - 1/(2n); the
    largest target that keeps one weight is (n - 1)/n."""
    if not targets:
        return
    if args.scope == "layer":
        smallest = min(targets, key=lambda t: t.numel)
        n, what = smallest.numel, f"tensor {smallest.name!r} ({smallest.numel} weights)"
    else:
        n = sum(t.numel for t in targets)
        what = f"all {n} prunable weights"
    if args.sparsity >= 1 - 0.5 / n:
        raise c.UsageError(f"--sparsity {args.sparsity:g}: would prune every weight of {what}; the largest "
                           f"reachable value is {(n - 1) / n:.6g}")


def _pattern(args):
    """Validate --pattern against --sparsity / --scope / --min-density before any data is loaded."""
    if args.pattern is None:
        return None
    from ..unstructured import Pattern

    try:
        pattern = Pattern.parse(args.pattern)
    except ValueError as e:
        raise c.UsageError(f"--pattern: {e}") from None
    if abs(args.sparsity - pattern.sparsity) > 1e-9:
        raise c.UsageError(f"--sparsity: {args.sparsity:g} is not what --pattern {pattern} gives: keeping {pattern.n} "
                           f"of every {pattern.m} weights is sparsity {pattern.sparsity:g}")
    if args.scope != "layer":
        raise c.UsageError(f"--scope: {args.scope} does not apply to --pattern {pattern}, which is chosen row by row "
                           "(use --scope layer)")
    if args.min_density:
        raise c.UsageError(f"--min-density: {args.min_density:g} does not apply to --pattern {pattern}, which fixes "
                           f"every row's density at {pattern.n}/{pattern.m}")
    return pattern


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from .. import distributed
    from ..flops import count_model
    from ..io import save, write_json_atomic
    from ..unstructured import CyclicalSparsifier, select_prunable
    from ..unstructured.callback import SparsifierCallback

    if args.out is None and not args.plan_only:
        raise c.UsageError("--out: required (or pass --plan-only)")
    if args.out is not None and not args.plan_only:
        c.check_out(args)
    else:  # --plan-only writes nothing; its state flags are still checked as a run's would be
        c.check_state_paths(args, args.save_state, args.resume)
    if args.schedule != "cyclical":
        given = [text for text, on in ((f"--cycles {args.cycles}", args.cycles is not None),
                                       (f"--restart-sparsity {args.restart_sparsity}", bool(args.restart_sparsity)),
                                       (f"--last-cycle {args.last_cycle}", args.last_cycle is not None),
                                       ("--lr-restart", args.lr_restart)) if on]
        if given:
            raise c.UsageError(f"{given[0]}: --cycles/--restart-sparsity/--last-cycle/--lr-restart apply to "
                               f"--schedule cyclical, not {args.schedule}")
    pattern = _pattern(args)
    c.setup_threads(args)
    distributed.init_from_env()
    start = time.perf_counter()
    data = c.load_data(args)
    torch.manual_seed(args.seed)
    dense_summary: dict = {}
    if args.checkpoint is not None:
        ckpt = c.load_checkpoint_arg(args.checkpoint, trust=args.trust_model_code)
        c.check_compatible(ckpt, data)
        model, spec, dense_summary = ckpt.model, ckpt.spec, ckpt.summary
        model.train()
    else:
        model, spec = c.make_model(args.model, data)
    # e.g. the dense checkpoint being sparsified as the teacher
    criterion, distill = c.distill_from_arg(args, data, next(model.parameters()).device)
    config = c.train_config(args)
    trainer = c.make_trainer(args, model, data, config, criterion=criterion)
    schedule = _schedule(args, trainer.total_steps, trainer.steps_per_epoch)
    if args.plan_only:
        print(schedule.table(21))
        return 0
    _check_reachable(args, select_prunable(model, include=args.include, exclude=args.exclude,
                                           keep_first_dense=args.keep_first_dense,
                                           keep_last_dense=args.keep_last_dense))
    try:
        sparsifier = CyclicalSparsifier(
            model, schedule, update_every=args.update_every, scope=args.scope, variant=args.variant,
            cumulative=args.cumulative, include=args.include, exclude=args.exclude,
            keep_first_dense=args.keep_first_dense, keep_last_dense=args.keep_last_dense,
            min_density=args.min_density, pattern=pattern, live_outputs=args.live_outputs == "on")
    except ValueError as e:
        flag = ("--min-density" if str(e).startswith("min_density") else
                "--pattern" if str(e).startswith("pattern") else "--include/--exclude")
        raise c.UsageError(f"{flag}: {e}") from None
    callback = SparsifierCallback(sparsifier, bn_batches=args.bn_batches, lr_restart=args.lr_restart)
    trainer.add_callback(callback)
    result = c.run_trainer(args, trainer)
    sp = callback.summary
    cost = count_model(model, data.input_shape)
    prunable = sum(t.numel for t in sparsifier.targets)
    nonzero_prunable = round(prunable * (1 - sp["sparsity"]))
    resolved = {**schedule.to_dict(), **sparsifier.config(), "steps_per_epoch": trainer.steps_per_epoch,
                "bn_batches": args.bn_batches, "lr_restart": args.lr_restart}
    summary = {
        "command": "sparsify", "model": spec.name, "dataset": data.name,
        "checkpoint": str(args.checkpoint) if args.checkpoint is not None else None,
        "accuracy_dense": dense_summary.get("accuracy"),
        "accuracy": result.accuracy, "test_loss": result.loss,
        "distill": distill,
        "sparsity": sp["sparsity"], "requested_sparsity": args.sparsity,
        "sparsity_per_layer": sp["sparsity_per_layer"], "recovered_fraction": sp["recovered_fraction"],
        "mean_churn": sp["mean_churn"], "mask_updates": sp["mask_updates"],
        "prunable_params": prunable, "nonzero_prunable_params": nonzero_prunable,
        "params": cost.params, "nonzero_params": cost.params - (prunable - nonzero_prunable),
        "macs": cost.macs, "macs_dense": cost.macs,
        "schedule": resolved, "epochs": result.epochs, "steps": result.steps, "elapsed_s": time.perf_counter() - start,
        "train_elapsed_s": result.elapsed_s, "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "history": result.history, "versions": c.versions(), "world_size": distributed.world_size(),
    }
    spec.sparsity = {"method": args.schedule, "sparsity": sp["sparsity"], "target": args.sparsity,
                     "scope": args.scope, "min_density": args.min_density, "pattern": args.pattern,
                     "live_outputs": sparsifier.live_outputs,
                     "tensors": [t.name for t in sparsifier.targets]}

    def extra(tmp):
        write_json_atomic(tmp / "history.json", sparsifier.history)
        (tmp / "schedule.txt").write_text(schedule.table(21) + "\n")
        schedule.plot(tmp / "sparsity.png", realised=sparsifier.realised() + [(result.steps, sp["sparsity"])],
                      update_every=args.update_every,
                      title=f"{spec.name} on {data.name}: {args.schedule} to {args.sparsity:g}")

    if distributed.is_main():
        if args.save_format == "sparse":
            from ..sparse import save_sparse

            save_sparse(args.out, model, spec, summary, overwrite=args.overwrite, extra=extra)
        else:
            save(args.out, model, spec, summary, overwrite=args.overwrite, extra=extra)
        print(f"{spec.name} on {data.name}: {args.schedule} sparsity {sp['sparsity']:.4f} "
              f"(target {args.sparsity:g}), accuracy {result.accuracy:.4f}, recovered "
              f"{sp['recovered_fraction']:.3f}, {summary['elapsed_s']:.1f}s -> {args.out}")
    distributed.shutdown()
    return 0
