"""argparse value types of the shared flags, and their upper bounds: every error names the flag and the value."""
from __future__ import annotations

import argparse
from pathlib import Path


def int_at_least(flag: str, low: int, high: int | None = None):
    """argparse type: an integer in [``low``, ``high``]; the error names the flag and the value.

    ``1e3`` is accepted for 1000 (an integral number), so an out-of-range value gets the stated maximum rather
    than "not an integer".
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = float("nan")
            if not (f == f and abs(f) != float("inf") and f.is_integer()):
                raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") from None
            value = int(f)
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{flag} must be at most {high}, got {text}")
        return value

    return parse


def positive_int(flag: str, high: int | None = None):
    return int_at_least(flag, 1, high)


def nonneg_int(flag: str, high: int | None = None):
    return int_at_least(flag, 0, high)


def positive_float(flag: str, allow_zero: bool = False, high: float | None = None):
    """argparse type: a finite number > 0 (>= 0 with ``allow_zero``) and at most ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
            bound = ">= 0" if allow_zero else "> 0"
            raise argparse.ArgumentTypeError(f"{flag} must be {bound}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{flag} must be at most {high:g}, got {text}")
        return value

    return parse


# Upper bounds of the hyper-parameter flags: beyond them a value overflows float32 arithmetic or asks for a run
# that never ends; stated in the error so the user knows the maximum.
MAX_LR = 1e6
MAX_EPOCHS = 10_000.0
MAX_STEPS = 100_000_000
MAX_WEIGHT_DECAY = 10.0
MAX_LOSS_WEIGHT = 1e6
MAX_BATCHES = 1_000_000
MAX_BATCH_SIZE = 1 << 20
MAX_SEED = 2 ** 63 - 1
MAX_THREADS = 1024
MAX_REPEATS = 10_000
MAX_CHANNEL_ARG = 1 << 20


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


def path_arg(flag: str):
    """argparse type: a path; an empty one is refused (``Path("")`` is the current directory, which nobody meant)."""
    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{flag}: empty path {text!r}")
        return Path(text)

    return parse


def existing_dir(flag: str):
    def parse(text: str) -> Path:
        path = path_arg(flag)(text)
        if path.is_file():  # e.g. DIR/model.safetensors: checkpoints are directories
            raise argparse.ArgumentTypeError(f"{flag}: {text!r} is a file, not a directory; did you mean its "
                                             f"directory {str(path.parent)!r}?")
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{flag}: directory {text!r} does not exist")
        return path

    return parse


def input_shape_arg(text: str) -> list[int]:
    """argparse type for --input-shape: comma-separated sizes without the batch dimension."""
    try:
        dims = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input-shape must be comma-separated integers like 3,32,32, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"--input-shape sizes must be >= 1, got {text!r}")
    from .._schema import MAX_INPUT_DIMS, MAX_INPUT_ELEMENTS

    volume = 1
    for d in dims:
        volume *= d
    if len(dims) > MAX_INPUT_DIMS or volume > MAX_INPUT_ELEMENTS:
        raise argparse.ArgumentTypeError(f"--input-shape {text!r}: at most {MAX_INPUT_DIMS} sizes and "
                                         f"{MAX_INPUT_ELEMENTS} elements per sample")
    return dims
