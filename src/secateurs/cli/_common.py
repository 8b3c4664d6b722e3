"""Flags shared by several commands, their validation, and the one place user errors become exit code 2."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path


class UsageError(Exception):
    """A bad flag value. The message names the flag and the value; the CLI prints it and exits with 2."""


@dataclass
class _Status:
    code: int = 0


@contextlib.contextmanager
def handle_errors(parser: argparse.ArgumentParser, command: str, interrupted_hint=None):
    """Turn expected user errors into one line on stderr and exit status 2 (no traceback).

    ``SECATEURS_DEBUG=1`` re-raises so developers still get the traceback. ``interrupted_hint``: a callable
    giving text to append to the Ctrl-C message (how to continue the run).
    """
    status = _Status()
    try:
        yield status
    except (UsageError, FileNotFoundError, FileExistsError) as e:
        if os.environ.get("SECATEURS_DEBUG"):
            raise
        msg = e.args[0] if e.args else str(e)
        print(f"secateurs {command}: error: {msg}", file=sys.stderr)
        status.code = 2
        raise SystemExit(2)
    except KeyboardInterrupt:
        hint = interrupted_hint() if interrupted_hint is not None else ""
        print(f"secateurs {command}: interrupted; no output was written in place{hint}", file=sys.stderr)
        raise SystemExit(130)


# ----------------------------------------------------------------------------------------------- types
def int_at_least(flag: str, low: int):
    """argparse type: an integer >= ``low``; the error names the flag and the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {low}, got {value}")
        return value

    return parse


def positive_int(flag: str):
    return int_at_least(flag, 1)


def nonneg_int(flag: str):
    return int_at_least(flag, 0)


def positive_float(flag: str, allow_zero: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
            bound = ">= 0" if allow_zero else "> 0"
            raise argparse.ArgumentTypeError(f"{flag} must be {bound}, got {text}")
        return value

    return parse


def fraction(flag: str, low_inclusive: bool = True, high_inclusive: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        lo_ok = value >= 0 if low_inclusive else value > 0
        hi_ok = value <= 1 if high_inclusive else value < 1
        if not (lo_ok and hi_ok):
            lo, hi = "[" if low_inclusive else "(", "]" if high_inclusive else ")"
            raise argparse.ArgumentTypeError(f"{flag} must be in {lo}0, 1{hi}, got {text}")
        return value

    return parse


def existing_dir(flag: str):
    def parse(text: str) -> Path:
        path = Path(text)
        if path.is_file():  # e.g. DIR/model.safetensors: checkpoints are directories
            raise argparse.ArgumentTypeError(f"{flag}: {text!r} is a file, not a directory; did you mean its "
                                             f"directory {str(path.parent)!r}?")
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{flag}: directory {text!r} does not exist")
        return path

    return parse


# ----------------------------------------------------------------------------------------------- groups
def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, metavar="D",
                   help="dataset name (fashion-mnist, mnist5k, mnist1d, digits, cifar10)")
    g.add_argument("--data-dir", type=existing_dir("--data-dir"), default=None, metavar="DIR",
                   help="directory holding the dataset files (default: $SECATEURS_DATA, system paths, download)")
    g.add_argument("--train-subset", type=positive_int("--train-subset"), default=None, metavar="N",
                   help="train on the first N images of a seeded permutation of the training split (default: "
                        "all; quick tries: e.g. 10000)")
    g.add_argument("--val-size", type=nonneg_int("--val-size"), default=None, metavar="N",
                   help="images carved from the training data for validation (default: dataset's)")


def add_train_args(p: argparse.ArgumentParser, epochs: float = 10, lr: float = 0.1, wd: float = 5e-4,
                   batch_size: int = 128, warmup: float = 1.0) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_float("--epochs"), default=epochs, metavar="E",
                   help=f"training epochs; fractions allowed, e.g. 0.5 (default {epochs})")
    g.add_argument("--lr", type=positive_float("--lr"), default=lr, help=f"peak learning rate (default {lr})")
    g.add_argument("--batch-size", type=positive_int("--batch-size"), default=batch_size, metavar="B",
                   help=f"global batch size (default {batch_size})")
    g.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd",
                   help="sgd is SGD with Nesterov momentum")
    g.add_argument("--momentum", type=fraction("--momentum"), default=0.9, metavar="M",
                   help="SGD momentum, in [0, 1)")
    g.add_argument("--weight-decay", type=positive_float("--weight-decay", allow_zero=True), default=wd,
                   metavar="WD", help="L2 weight decay (coupled for sgd/adam, decoupled for adamw)")
    g.add_argument("--warmup-epochs", type=positive_float("--warmup-epochs", allow_zero=True), default=warmup,
                   metavar="E", help="linear learning-rate warm-up before the cosine decay (at most half the run)")
    g.add_argument("--label-smoothing", type=fraction("--label-smoothing"), default=0.0, metavar="EPS",
                   help="cross-entropy label smoothing, in [0, 1)")
    g.add_argument("--no-augment", action="store_true", help="disable random crop / flip")
    g.add_argument("--max-steps", type=positive_int("--max-steps"), default=None, metavar="N",
                   help="stop after this many optimizer steps (smoke tests; default: no limit)")
    g.add_argument("--save-state", type=Path, default=None, metavar="FILE",
                   help="write the whole training state to FILE after every epoch (atomically), for --resume")
    g.add_argument("--resume", type=Path, default=None, metavar="FILE",
                   help="continue an interrupted run from its --save-state FILE (same command and flags)")


def add_bn_batches_arg(g) -> None:
    """``--bn-batches`` for the pruning commands (structured pruning leaves the dense BatchNorm statistics)."""
    g.add_argument("--bn-batches", type=nonneg_int("--bn-batches"), default=0, metavar="N",
                   help="after pruning, re-estimate BatchNorm statistics on N training batches of 64 (forward "
                        "passes only, no weight update). Default 0: keep the dense statistics, as the papers "
                        "report 'accuracy before fine-tuning'")


def recalibrate_bn(model, data, batches: int, seed: int, quiet: bool = False) -> int:
    """Re-estimate ``model``'s BatchNorm statistics on ``batches`` seeded, un-augmented training batches of 64."""
    from .._progress import progress_iter, progress_mode
    from ..data import seeded_batches
    from ..unstructured import reestimate_batchnorm

    if batches <= 0:
        return 0
    passes = seeded_batches(data.train_x, batch_size=64, seed=seed, batches=batches)
    return reestimate_batchnorm(model, progress_iter(passes, batches, "batchnorm statistics",
                                                     progress_mode(False if quiet else None)))


def add_run_args(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=nonneg_int("--seed"), default=0, metavar="S",
                   help="seeds the data order, augmentation, validation split and initialisation")
    g.add_argument("--threads", type=positive_int("--threads"), default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice, usually the number of cores)")
    g.add_argument("--out", required=out_required, type=Path, metavar="DIR",
                   help="output checkpoint directory (written atomically)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar or progress lines (without a terminal, long stages log a line every "
                        "~10%% or 30 s)")


def check_out(args) -> None:
    if args.out is not None and args.out.exists() and not args.overwrite:
        raise UsageError(f"--out: {str(args.out)!r} already exists; pass --overwrite to replace it")


def setup_threads(args) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def get_data(name: str, **kwargs):
    """get_dataset with flag-naming errors (unknown name, sizes that do not fit the dataset)."""
    from ..data import get_dataset, list_datasets

    if name not in list_datasets():
        raise UsageError(f"--data: unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    try:
        return get_dataset(name, **kwargs)
    except ValueError as e:
        raise UsageError(f"--data {name}: {e}") from None


def load_data(args):
    """Resolve --data and friends into DataSplits."""
    return get_data(args.data, data_dir=args.data_dir, train_subset=args.train_subset, val_size=args.val_size,
                    seed=args.seed)


def make_trainer(args, model, data, config, flag: str = "--batch-size", **kwargs):
    """A Trainer whose construction errors (batch larger than the data, not divisible by the world size) name
    --batch-size instead of ending in a traceback."""
    from ..train import Trainer, read_train_state

    state_path, resume = getattr(args, "save_state", None), getattr(args, "resume", None)
    check_state_paths(args, state_path, resume)
    try:
        trainer = Trainer(model, data, config, progress=False if args.quiet else None, state_path=state_path,
                          **kwargs)
    except ValueError as e:
        raise UsageError(f"{flag} {config.batch_size}: {e}") from None
    if resume is not None:
        try:
            trainer.load_state_dict(read_train_state(resume))
        except ValueError as e:
            raise UsageError(f"--resume {str(resume)!r}: {e}") from None
    return trainer


def check_state_paths(args, state_path: Path | None, resume: Path | None) -> None:
    """--save-state / --resume: the file lives outside --out (which is written once, at the end), and an existing
    state file is only replaced when it is the one being resumed or --overwrite is given."""
    out = Path(args.out).resolve() if getattr(args, "out", None) else None
    for flag, path in (("--save-state", state_path), ("--resume", resume)):
        if path is not None and out is not None and (path.resolve() == out or out in path.resolve().parents):
            raise UsageError(f"{flag} {str(path)!r}: keep the state file outside --out {str(args.out)!r} (the "
                             "output directory is written only when the run completes)")
    if resume is not None and not resume.is_file():
        raise UsageError(f"--resume: {str(resume)!r} is not a file")
    if (state_path is not None and state_path.exists() and not getattr(args, "overwrite", False)
            and (resume is None or state_path.resolve() != resume.resolve())):
        raise UsageError(f"--save-state {str(state_path)!r} already exists (an earlier run's state?); resume it "
                         "with --resume, or pass --overwrite to replace it")


def run_trainer(args, trainer):
    """``trainer.run()``, with a saved state that turns out not to fit (checked by the callbacks at the start of the
    run) reported against --resume."""
    from ..train import ResumeError

    try:
        return trainer.run()
    except ResumeError as e:
        raise UsageError(f"--resume {str(getattr(args, 'resume', ''))!r}: {e}") from None


def make_model(name: str, data, flag: str = "--model"):
    """Build a model for a dataset; returns (model, ModelSpec)."""
    from ..io import ModelSpec
    from ..models import create_model, list_models

    if ":" not in name and name not in list_models():
        raise UsageError(f"{flag}: unknown model {name!r}; known: {', '.join(list_models())} "
                         "or package.module:factory")
    kwargs = {"num_classes": data.num_classes, "in_channels": data.input_shape[0]}
    if len(data.input_shape) == 3 and ":" not in name:
        kwargs["input_size"] = data.input_shape[1]
    try:
        model = create_model(name, **kwargs)
    except (ImportError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{flag}: cannot build {name!r}: {e}") from None
    _check_forward(model, name, data, flag)
    spec = ModelSpec(name=name, kwargs=kwargs, input_shape=list(data.input_shape),
                     num_classes=data.num_classes, dataset=data.name)
    return model, spec


def _check_forward(model, name: str, data, flag: str) -> None:
    """Fail early, naming the flag, when the architecture cannot run on the dataset's input shape."""
    import torch

    shape = "x".join(map(str, data.input_shape))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *data.input_shape))
    except RuntimeError as e:
        raise UsageError(f"{flag}: {name!r} cannot run on {data.name or 'the'} inputs of shape {shape}: "
                         f"{str(e).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape[-1] != data.num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"{flag}: {name!r} returns {got} on a 1x{shape} batch; expected logits of width "
                         f"{data.num_classes}")


def input_shape_arg(text: str) -> list[int]:
    """argparse type for --input-shape: comma-separated sizes without the batch dimension."""
    try:
        dims = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input-shape must be comma-separated integers like 3,32,32, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"--input-shape sizes must be >= 1, got {text!r}")
    return dims


def add_model_source_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--model with (--data | --input-shape [--num-classes]), or --checkpoint: for commands that only inspect."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--model", metavar="M",
                     help="zoo name (list: `secateurs info --models`) or package.module:factory")
    src.add_argument("--checkpoint", type=existing_dir("--checkpoint"), metavar="DIR",
                     help="a checkpoint directory (model.json + model.safetensors)")
    p.add_argument("--data", metavar="D", help="take input shape and class count from this dataset")
    p.add_argument("--data-dir", type=existing_dir("--data-dir"), default=None, metavar="DIR",
                   help="directory holding the dataset files (with --data)")
    p.add_argument("--input-shape", type=input_shape_arg, metavar="C,H,W",
                   help="input shape without batch, e.g. 3,32,32")
    p.add_argument("--num-classes", type=positive_int("--num-classes"), default=10, metavar="K",
                   help="classes (with --input-shape)")


class _ShapeOnly:
    """Stands in for DataSplits where only the input shape and the class count matter."""

    def __init__(self, shape, num_classes, name=None):
        self.input_shape, self.num_classes, self.name = tuple(shape), num_classes, name


def resolve_model_source(args):
    """The model named by add_model_source_args flags: returns (model, input_shape, name)."""
    if args.checkpoint is not None:
        ckpt = load_checkpoint_arg(args.checkpoint)
        return ckpt.model, list(ckpt.spec.input_shape), ckpt.spec.name
    if (args.data is None) == (args.input_shape is None):
        raise UsageError("--model needs exactly one of --data or --input-shape")
    if args.data is not None:
        data = get_data(args.data, data_dir=args.data_dir)
        shape, classes = list(data.input_shape), data.num_classes
    else:
        shape, classes = list(args.input_shape), args.num_classes
    model, _ = make_model(args.model, _ShapeOnly(shape, classes, args.data))
    return model, shape, args.model


def load_checkpoint_arg(path, flag: str = "--checkpoint"):
    from ..io import load_checkpoint

    try:
        return load_checkpoint(path)
    except FileNotFoundError as e:
        raise UsageError(f"{flag}: {e}") from None
    except ValueError as e:
        raise UsageError(f"{flag} {str(path)!r}: {e}") from None


def train_config(args):
    from ..train import TrainConfig

    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                       momentum=args.momentum, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                       label_smoothing=args.label_smoothing, seed=args.seed, augment=not args.no_augment,
                       max_steps=args.max_steps)


def versions() -> dict:
    import platform

    import torch

    from .. import __version__

    return {"secateurs": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
