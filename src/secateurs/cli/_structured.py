"""What ``prune`` and ``autoprune`` share: their common flags, the checkpoint and data they start from, the
mapping of the library's argument errors to flags, and the pruned checkpoint they write."""
from __future__ import annotations

import argparse
import contextlib

from . import _common as c
from ..cost._names import DTYPE_NAMES, RUNTIMES
from ._graph_args import add_graph_limit_args, graph_limits

FLAGS = {"flops_reduction": "--flops-reduction", "method": "--criterion",  # library argument -> flag
         "latency_tolerance": "--latency-tolerance", "latency_rounds": "--latency-rounds",
         "budget_s": "--latency-time-budget"}


def add_common_args(p: argparse.ArgumentParser, help_checkpoint: str, zero_reduction: bool) -> argparse._ArgumentGroup:
    """--checkpoint, --flops-reduction, --bn-batches, data, run and graph flags; returns the pruning group."""
    p.add_argument("--checkpoint", required=True, type=c.existing_dir("--checkpoint"), metavar="DIR",
                   help=help_checkpoint)
    g = p.add_argument_group("pruning")
    t = g.add_mutually_exclusive_group(required=True)
    t.add_argument("--flops-reduction", type=c.fraction("--flops-reduction", zero_reduction),
                   metavar="R", help=f"fraction of the checkpoint's MACs to remove, in {'[' if zero_reduction else '('}"
                                     "0, 1) (FLOPs = 2*MACs: same ratio)")
    t.add_argument("--latency-reduction", type=c.fraction("--latency-reduction", low_inclusive=False), metavar="R",
                   help="fraction of the dense latency to remove, measured on this machine in the setting of the "
                        "latency flags (docs/latency.md)")
    t.add_argument("--target-latency-ms", type=c.positive_float("--target-latency-ms", high=1e7), metavar="T",
                   help="run in T milliseconds (converted with the profiled dense latency)")
    add_latency_args(p)
    c.add_bn_batches_arg(g)
    c.add_data_args(p)
    c.add_run_args(p)
    c.add_trust_arg(p)
    add_graph_limit_args(p)
    return g


def add_round_to_arg(g) -> None:
    g.add_argument("--round-to", type=c.positive_int("--round-to", c.MAX_CHANNEL_ARG), default=1, metavar="K",
                   help="pruned groups keep a multiple of K channels (default 1)")


def add_latency_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("latency target (with --latency-reduction or --target-latency-ms; --threads sets the "
                             "threads, default 1)")
    g.add_argument("--latency-batch-size", type=c.positive_int("--latency-batch-size", c.MAX_BATCH_SIZE),
                   default=None, metavar="B", help="batch size the latency is for (default 1)")
    g.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="what runs the model: torch eager, or onnxruntime (when installed; BatchNorm folded)")
    g.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                   help="dtype the latency is of (weights and inputs while timing; default float32; the saved model "
                        "keeps its own dtype)")
    g.add_argument("--latency-tolerance", type=c.fraction("--latency-tolerance", low_inclusive=False), default=None,
                   metavar="T", help="the measured reduction must land within +-T of the target (default 0.05)")
    g.add_argument("--latency-rounds", type=c.positive_int("--latency-rounds", 20), default=None, metavar="N",
                   help="measure-and-correct rounds at most (default 5)")
    g.add_argument("--latency-time-budget", type=c.positive_float("--latency-time-budget", allow_zero=True,
                                                                   high=3600.0),
                   default=None, metavar="SECONDS", help="timing of dense vs pruned per round (default 3; at least "
                                                         "5 interleaved rounds)")
    g.add_argument("--latency-profile", type=_existing_file("--latency-profile"), default=None, metavar="FILE",
                   help="a profile from `secateurs profile --out` (default: this machine's cached profile, "
                        "measured when missing)")
    g.add_argument("--compare-macs", choices=("on", "off"), default=None,
                   help="also build the MACs-priced plan at the latency the latency-priced one measured and keep "
                        "the one with the lower validation loss (default on; docs/latency.md)")
    g.add_argument("--recovery-steps", type=c.nonneg_int("--recovery-steps", 100_000), default=None, metavar="N",
                   help="where both plans score near chance after BatchNorm re-estimation, compare them after N "
                        "steps of fine-tuning (default 50; 0: never)")


def _existing_file(flag: str):
    def parse(text: str):
        from pathlib import Path

        if not text.strip() or not Path(text).is_file():
            raise argparse.ArgumentTypeError(f"{flag}: {text!r} is not a file")
        return Path(text)

    return parse


# the latency flags (argparse default None, so that a flag given without a latency target is refused, not ignored)
LATENCY_FLAGS = {"latency_batch_size": ("--latency-batch-size", 1), "runtime": ("--runtime", "torch"),
                 "dtype": ("--dtype", "float32"), "latency_tolerance": ("--latency-tolerance", 0.05),
                 "latency_rounds": ("--latency-rounds", 5), "latency_time_budget": ("--latency-time-budget", 3.0),
                 "latency_profile": ("--latency-profile", None), "compare_macs": ("--compare-macs", "on"),
                 "recovery_steps": ("--recovery-steps", None)}  # None: LatencyConfig's


def _latency_flag(args: argparse.Namespace, name: str):
    value = getattr(args, name)
    return LATENCY_FLAGS[name][1] if value is None else value


def check_latency_flags(args: argparse.Namespace) -> None:
    """A latency flag with a MACs target would be ignored: refuse it, naming the flag."""
    if args.flops_reduction is None:
        return
    given = [flag for name, (flag, _) in LATENCY_FLAGS.items() if getattr(args, name) is not None]
    if given:
        raise c.UsageError(f"{given[0]}: applies to a latency target (--latency-reduction or --target-latency-ms), "
                           f"not to --flops-reduction {args.flops_reduction:g}")


def target_kwargs(args: argparse.Namespace) -> dict:
    """The front door's target keywords from the flags: ``flops_reduction`` or a latency target and its setting."""
    if args.flops_reduction is not None:
        return {"flops_reduction": args.flops_reduction}
    lf = lambda name: _latency_flag(args, name)  # noqa: E731
    from ..errors import CheckpointError
    from ..structured.latency import LatencyConfig

    with flags_named():
        profile = None
        if lf("latency_profile") is not None:
            from ..cost.latency_profile import LatencyProfile

            try:
                profile = LatencyProfile.load(lf("latency_profile"))
            except CheckpointError as e:
                raise c.UsageError(f"--latency-profile: {e}") from None
        config = LatencyConfig(batch_size=lf("latency_batch_size"), threads=args.threads or 1, runtime=lf("runtime"),
                               dtype=lf("dtype"), tolerance=lf("latency_tolerance"), rounds=lf("latency_rounds"),
                               budget_s=lf("latency_time_budget"), profile=profile,
                               compare_macs=lf("compare_macs") == "on",
                               **({} if args.recovery_steps is None else {"recovery_steps": args.recovery_steps}))
    return {"latency_reduction": args.latency_reduction, "target_latency_ms": args.target_latency_ms,
            "latency": config}


def target_text(args: argparse.Namespace, summary: dict) -> str:
    """What was asked and what came of it, for the command's last line."""
    if args.flops_reduction is not None:
        return f"target {args.flops_reduction:.2%} of MACs"
    s = summary
    return (f"latency {s['latency_ms_dense']:.3f} -> {s['latency_ms_measured']:.3f} ms measured "
            f"({s['latency_reduction']:.1%} less, predicted {s['latency_reduction_predicted']:.1%}; "
            f"{'met' if s['latency_target_met'] else 'MISSED'}: within +-{s['latency_tolerance']:g} of the target "
            + (f"{s['latency_target_reduction']:.1%})" if args.target_latency_ms is None else
               f"{args.target_latency_ms:g} ms = {s['latency_target_reduction']:.1%} less than the dense ms measured "
               "in round 1)"))


def start(args: argparse.Namespace):
    """(checkpoint, data, graph limits) after the output, flag and thread checks."""
    if getattr(args, "distill", False) and args.finetune_epochs == 0:
        raise c.UsageError("--distill: distillation applies to fine-tuning; give --finetune-epochs E > 0")
    check_latency_flags(args)
    c.check_out(args)
    c.setup_threads(args)
    data = c.load_data(args)
    ckpt = c.load_checkpoint_arg(args.checkpoint, trust=args.trust_model_code)
    c.check_compatible(ckpt, data)
    return ckpt, data, graph_limits(args)


@contextlib.contextmanager
def flags_named():
    """The library names its arguments (``flops_reduction``); say the flag instead (by type, not by text)."""
    from ..errors import ArgumentError

    try:
        yield
    except ArgumentError as e:
        raise c.UsageError(e.describe(FLAGS.get(e.argument, c.flag_for(e.argument)))) from None
    except ImportError as e:  # onnxruntime asked for and missing
        raise c.UsageError(f"--runtime: {e}") from None


def add_finetune_args(p: argparse.ArgumentParser) -> None:
    """``autoprune``'s fine-tuning flags (SGD, cosine: the paper's CIFAR recipe, ``autobot.finetune_config``)."""
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


def finetune(args: argparse.Namespace, model, data, teacher):
    """Fine-tune ``model`` per the --finetune-* flags (distilling from ``teacher`` with --distill): (the test
    result {accuracy, loss}, its summary record), or ``None`` without --finetune-epochs."""
    import dataclasses

    from ..structured.autobot import finetune_config

    if args.finetune_epochs <= 0:
        return None
    ft = finetune_config(args.finetune_epochs, lr=args.finetune_lr, weight_decay=args.finetune_weight_decay,
                         momentum=args.finetune_momentum, batch_size=args.finetune_batch_size, seed=args.seed)
    criterion = None if teacher is None else c.distill_criterion(args, teacher, next(model.parameters()).device)
    run = c.run_trainer(args, c.make_trainer(args, model, data, ft, flag="--finetune-batch-size",
                                             criterion=criterion), flag="--finetune-batch-size")
    record = {"config": dataclasses.asdict(ft), **run.to_dict(),
              "distill": None if criterion is None else {"teacher": "source", **criterion.to_dict()}}
    return {"accuracy": run.accuracy, "loss": run.loss}, record
