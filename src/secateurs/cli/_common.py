"""Flags shared by several commands (their groups), and the data / model / trainer plumbing the commands share.

The commands use this module as one namespace (``from . import _common as c``): the argument types
(``_types``), the error handling (``_errors``), the output claims (``_outputs``) and the unused-flag rules
(``_unused``) live in their own files and are re-exported here.
"""
from __future__ import annotations

import argparse
import os

from ._errors import UsageError, handle_errors
from ._outputs import (check_not_input, check_out, check_state_paths, claim_output, data_inputs, resources)
from ._types import (MAX_BATCH_SIZE, MAX_BATCHES, MAX_CHANNEL_ARG, MAX_EPOCHS, MAX_LOSS_WEIGHT, MAX_LR, MAX_REPEATS,
                     MAX_SEED, MAX_STEPS, MAX_THREADS, MAX_WEIGHT_DECAY, existing_dir, fraction, input_shape_arg,
                     int_at_least, nonneg_int, path_arg, positive_float, positive_int)
from ._unused import check_unused_flags, given_flags

__all__ = [
    "UsageError", "handle_errors", "check_not_input", "check_out", "check_state_paths", "claim_output", "data_inputs",
    "resources", "MAX_BATCH_SIZE", "MAX_BATCHES", "MAX_CHANNEL_ARG", "MAX_EPOCHS", "MAX_LOSS_WEIGHT", "MAX_LR",
    "MAX_REPEATS", "MAX_SEED", "MAX_STEPS", "MAX_THREADS", "MAX_WEIGHT_DECAY", "existing_dir", "fraction",
    "input_shape_arg", "int_at_least", "nonneg_int", "path_arg", "positive_float", "positive_int",
    "check_unused_flags", "given_flags",
    "add_data_args", "add_train_args", "add_bn_batches_arg", "add_distill_args", "check_compatible",
    "distill_from_arg", "distill_criterion", "add_run_args", "add_trust_arg", "setup_threads", "flag_for",
    "get_data", "load_data", "make_trainer", "run_trainer", "make_model", "add_model_source_args",
    "resolve_model_source", "load_checkpoint_arg", "train_config", "versions",
]


# ----------------------------------------------------------------------------------------------- groups
def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, metavar="D",
                   help="dataset name (fashion-mnist, mnist5k, mnist1d, digits, cifar10)")
    g.add_argument("--data-dir", type=existing_dir("--data-dir"), default=None, metavar="DIR",
                   help="directory holding the dataset files (default: $SECATEURS_DATA, system paths, download)")
    g.add_argument("--train-subset", type=positive_int("--train-subset", 1 << 40), default=None, metavar="N",
                   help="train on the first N images of a seeded permutation of the training split (default: "
                        "all; quick tries: e.g. 10000)")
    g.add_argument("--val-size", type=nonneg_int("--val-size", 1 << 40), default=None, metavar="N",
                   help="images carved from the training data for validation (default: dataset's)")


def add_train_args(p: argparse.ArgumentParser, epochs: float = 10, lr: float = 0.1, wd: float = 5e-4,
                   batch_size: int = 128, warmup: float = 1.0) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_float("--epochs", high=MAX_EPOCHS), default=epochs, metavar="E",
                   help=f"training epochs; fractions allowed, e.g. 0.5 (default {epochs})")
    g.add_argument("--lr", type=positive_float("--lr", high=MAX_LR), default=lr,
                   help=f"peak learning rate (default {lr})")
    g.add_argument("--batch-size", type=positive_int("--batch-size", MAX_BATCH_SIZE), default=batch_size,
                   metavar="B", help=f"global batch size (default {batch_size})")
    g.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd",
                   help="sgd is SGD with momentum (Nesterov unless --no-nesterov)")
    g.add_argument("--momentum", type=fraction("--momentum"), default=0.9, metavar="M",
                   help="SGD momentum, in [0, 1) (default 0.9)")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True,
                   help="Nesterov momentum for sgd (default: on)")
    g.add_argument("--weight-decay", type=positive_float("--weight-decay", allow_zero=True, high=MAX_WEIGHT_DECAY),
                   default=wd, metavar="WD",
                   help=f"L2 weight decay (coupled for sgd/adam, decoupled for adamw) (default {wd:g})")
    g.add_argument("--warmup-epochs", type=positive_float("--warmup-epochs", allow_zero=True, high=MAX_EPOCHS),
                   default=warmup, metavar="E",
                   help=f"linear learning-rate warm-up before the cosine decay (at most half the run) "
                        f"(default {warmup:g})")
    g.add_argument("--label-smoothing", type=fraction("--label-smoothing"), default=0.0, metavar="EPS",
                   help="cross-entropy label smoothing, in [0, 1) (default 0)")
    g.add_argument("--no-augment", action="store_true", help="disable random crop / flip")
    g.add_argument("--max-steps", type=positive_int("--max-steps", MAX_STEPS), default=None, metavar="N",
                   help="stop after this many optimizer steps (smoke tests; default: no limit)")
    g.add_argument("--save-state", type=path_arg("--save-state"), default=None, metavar="FILE",
                   help="write the whole training state to FILE after every epoch (atomically), for --resume")
    g.add_argument("--resume", type=path_arg("--resume"), default=None, metavar="FILE",
                   help="continue an interrupted run from its --save-state FILE (same command and flags)")


def add_bn_batches_arg(g) -> None:
    """``--bn-batches`` for the pruning commands (structured pruning leaves the dense BatchNorm statistics)."""
    g.add_argument("--bn-batches", type=nonneg_int("--bn-batches", MAX_BATCHES), default=0, metavar="N",
                   help="after pruning, re-estimate BatchNorm statistics on N training batches of 64 (forward "
                        "passes only, no weight update). Default 0: keep the dense statistics, as the papers "
                        "report 'accuracy before fine-tuning'")


def add_distill_args(g, teacher_flag: str | None) -> None:
    """Knowledge-distillation flags. ``teacher_flag`` (e.g. ``--distill-from DIR``) names the teacher; without it
    the command's own source model is the teacher and ``--distill`` switches distillation on."""
    if teacher_flag:
        g.add_argument(teacher_flag, type=existing_dir(teacher_flag), default=None, metavar="DIR",
                       help="distil from this checkpoint's logits (the teacher; e.g. the dense source of a pruned "
                            "model). Default: no distillation")
    else:
        g.add_argument("--distill", action="store_true",
                       help="fine-tune with knowledge distillation from the source checkpoint (default: off)")
    g.add_argument("--distill-weight", type=fraction("--distill-weight", high_inclusive=True), default=0.5,
                   metavar="A", help="loss = (1-A)*CE + A*T^2*KL(teacher || student) (default 0.5)")
    g.add_argument("--temperature", type=positive_float("--temperature"), default=4.0, metavar="T",
                   help="distillation temperature (default 4)")


def check_compatible(ckpt, data, flag: str = "--checkpoint") -> None:
    """The checkpoint ``ckpt`` (given by ``flag``) takes --data's input shape and classes."""
    if list(ckpt.spec.input_shape) != list(data.input_shape) or ckpt.spec.num_classes != data.num_classes:
        raise UsageError(f"{flag} {str(ckpt.path)!r} expects input {ckpt.spec.input_shape} with "
                         f"{ckpt.spec.num_classes} classes; --data {data.name} has {list(data.input_shape)} "
                         f"and {data.num_classes}")


def distill_from_arg(args, data, device):
    """``--distill-from DIR``: (the distillation loss from that teacher, its summary.json record), or
    (None, None) without the flag."""
    if args.distill_from is None:
        return None, None
    teacher = load_checkpoint_arg(args.distill_from, flag="--distill-from", trust=args.trust_model_code)
    check_compatible(teacher, data, flag="--distill-from")
    criterion = distill_criterion(args, teacher.model, device)
    return criterion, {"teacher": str(args.distill_from), **criterion.to_dict()}


def distill_criterion(args, teacher, device):
    """The distillation loss for the trainer from the ``teacher`` model, with --distill-weight / --temperature."""
    from ..distill import DistillationLoss, DistillConfig

    try:
        config = DistillConfig(weight=args.distill_weight, temperature=args.temperature)
    except ValueError as e:
        flag = "--distill-weight" if str(e).startswith("weight") else "--temperature"
        raise UsageError(f"{flag}: {e}") from None
    return DistillationLoss(teacher.to(device), config, label_smoothing=getattr(args, "label_smoothing", 0.0))


def add_run_args(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=nonneg_int("--seed", MAX_SEED), default=0, metavar="S",
                   help="seeds the data order, augmentation, validation split and initialisation (default 0)")
    g.add_argument("--threads", type=positive_int("--threads", MAX_THREADS), default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice, usually the number of cores)")
    g.add_argument("--out", required=out_required, type=path_arg("--out"), metavar="DIR",
                   help="output checkpoint directory (written atomically)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out checkpoint (never a directory that is not a checkpoint)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar or progress lines (without a terminal, long stages log a line every "
                        "~10%% or 30 s)")


def add_trust_arg(p: argparse.ArgumentParser) -> None:
    """``--trust-model-code`` for every command that reads a checkpoint (see the README, "Trust model")."""
    p.add_argument("--trust-model-code", action="store_true",
                   help="allow a checkpoint whose model.json names a package.module:factory (or a hub model) to "
                        "import and run that code; only for checkpoints you would run as a script")


def setup_threads(args) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def flag_for(argument: str) -> str:
    """The flag of a library argument that a command line passes through unrenamed: ``val_size`` -> ``--val-size``
    (what an ``ArgumentError`` names; commands that rename one map it first, e.g. ``_structured.FLAGS``)."""
    return "--" + argument.replace("_", "-")


def get_data(name: str, **kwargs):
    """get_dataset with flag-naming errors (unknown name, sizes that do not fit the dataset)."""
    from ..data import get_dataset, list_datasets

    if name not in list_datasets():
        raise UsageError(f"--data: unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    from ..errors import ArgumentError

    try:
        return get_dataset(name, **kwargs)
    except ArgumentError as e:  # a size option: its flag if the user gave one, else the dataset's default
        given = kwargs.get(e.argument) is not None
        what = flag_for(e.argument) if given else f"the dataset's default {e.argument}"
        raise UsageError(f"--data {name}: {e.describe(what)}") from None
    except ValueError as e:
        raise UsageError(f"--data {name}: {e}") from None


def load_data(args):
    """Resolve --data and friends into DataSplits."""
    return get_data(args.data, data_dir=args.data_dir, train_subset=args.train_subset, val_size=args.val_size,
                    seed=args.seed)


ONE_VALUE_PER_CHANNEL = "Expected more than 1 value per channel when training"  # torch's BatchNorm, batch of 1


def make_trainer(args, model, data, config, flag: str = "--batch-size", **kwargs):
    """A Trainer whose construction errors (batch larger than the data, not divisible by the world size) name
    --batch-size instead of ending in a traceback. Its --save-state / --resume were checked before any work
    (``check_out``, or ``check_state_paths`` where nothing is written)."""
    from ..train import Trainer
    from ..train_state import read_train_state

    state_path, resume = getattr(args, "save_state", None), getattr(args, "resume", None)
    try:
        trainer = Trainer(model, data, config, progress=False if args.quiet else None, state_path=state_path,
                          **kwargs)
    except ValueError as e:
        raise UsageError(f"{flag} {config.batch_size}: {e}") from None
    if trainer.total_steps > MAX_STEPS:
        raise UsageError(f"--epochs {config.epochs:g}: {trainer.total_steps:,} optimizer steps; at most "
                         f"{MAX_STEPS:,} (lower --epochs or pass --max-steps)")
    if resume is not None:
        try:
            trainer.load_state_dict(read_train_state(resume))
        except ValueError as e:
            raise UsageError(f"--resume {str(resume)!r}: {e}") from None
    return trainer


def run_trainer(args, trainer, flag: str = "--batch-size"):
    """``trainer.run()``, with a saved state that turns out not to fit (checked by the callbacks at the start of the
    run) reported against --resume, and a batch too small for the model's BatchNorm against ``flag``."""
    from ..errors import DivergedError
    from ..train_state import ResumeError

    try:
        return trainer.run()
    except ResumeError as e:
        raise UsageError(f"--resume {str(getattr(args, 'resume', ''))!r}: {e}") from None
    except DivergedError as e:
        lr_flag = "--finetune-lr" if hasattr(args, "finetune_lr") else "--lr"
        value = getattr(args, lr_flag[2:].replace("-", "_"), float("nan"))
        raise UsageError(f"{lr_flag} {value:g}: {e}; try a smaller {lr_flag}") from None
    except ValueError as e:  # after DivergedError, which is one
        if ONE_VALUE_PER_CHANNEL not in str(e):
            raise
        raise UsageError(f"{flag} {trainer.config.batch_size}: a BatchNorm layer of the model sees one value per "
                         f"channel at this batch size (1x1 features), and training needs at least 2; use a larger "
                         f"{flag}") from None


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
    p.add_argument("--num-classes", type=positive_int("--num-classes", MAX_CHANNEL_ARG), default=10, metavar="K",
                   help="classes (with --input-shape)")
    add_trust_arg(p)


class _ShapeOnly:
    """Stands in for DataSplits where only the input shape and the class count matter."""

    def __init__(self, shape, num_classes, name=None):
        self.input_shape, self.num_classes, self.name = tuple(shape), num_classes, name


def resolve_model_source(args):
    """The model named by add_model_source_args flags: returns (model, input_shape, name)."""
    if args.checkpoint is not None:
        ckpt = load_checkpoint_arg(args.checkpoint, trust=args.trust_model_code)
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


def load_checkpoint_arg(path, flag: str = "--checkpoint", trust: bool = False):
    """load_checkpoint with its typed errors (bad file or field, untrusted factory, NaN weights) naming ``flag``."""
    from ..errors import InputError
    from ..io import load_checkpoint

    try:
        return load_checkpoint(path, trust_model_code=trust)
    except InputError as e:
        raise UsageError(f"{flag}: {e}") from None


def train_config(args):
    from ..train import TrainConfig

    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                       momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
                       warmup_epochs=args.warmup_epochs,
                       label_smoothing=args.label_smoothing, seed=args.seed, augment=not args.no_augment,
                       max_steps=args.max_steps)


def versions() -> dict:
    import platform

    import torch

    from .. import __version__

    return {"secateurs": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
