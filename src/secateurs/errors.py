"""The errors secateurs raises for bad *input* (a file, a value), as types the CLI maps to exit status 2.

Every error here carries what was wrong as data (the file, the field, the value), so a caller can react to the
type and its attributes, never to the wording of a message. The CLI prints ``str(error)`` on one line.

* :class:`CheckpointError` — a file we read (``model.json``, ``model.safetensors``, ``summary.json``, a plan, a
  training state) is missing, malformed, or describes something we refuse to build;
* :class:`UntrustedCodeError` — a checkpoint names a model factory that would import and run code the user has
  not opted into (``trust_model_code=True`` / ``--trust-model-code``);
* :class:`NonFiniteError` — NaN or infinity where numbers must be finite (weights, a training loss);
* :class:`OutputError` — an output path that would destroy an input, or is being written by another run;
* :class:`ArgumentError` — a library call's argument (``argument``, ``value``) that cannot be honoured, e.g. a
  pruning target no selection reaches (``structured.target.TargetError``); the CLI names its flag instead;
* :class:`GraphError` — the channel graph of a model cannot be built (a named layer or op, or a bound passed).

Importing this module imports nothing heavy.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["InputError", "CheckpointError", "CheckpointNotFoundError", "UntrustedCodeError", "NonFiniteError",
           "DivergedError", "OutputError", "UnreachableTargetError", "ArgumentError", "GraphError"]


class InputError(ValueError):
    """Base of the errors caused by what the user handed us (exit status 2 in the CLI, no traceback)."""


class CheckpointError(InputError):
    """``path`` (a file or directory) has a bad ``field`` (``None``: the file as a whole): ``message`` says why."""

    def __init__(self, path: str | os.PathLike | None, field: str | None, message: str):
        self.path = Path(path) if path is not None else None
        self.field, self.message = field, message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "checkpoint"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def __reduce__(self):  # picklable across processes (DDP, multiprocessing) despite the custom __init__
        return type(self), (self.path, self.field, self.message)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint directory, or a file it must hold, does not exist."""


class UntrustedCodeError(CheckpointError):
    """A checkpoint names ``factory``, which is not a zoo, torchvision or timm name: building it would import
    arbitrary code. Refused before anything is imported, unless the caller trusts the checkpoint."""

    def __init__(self, path: str | os.PathLike | None, factory: str, reason: str | None = None):
        self.factory = factory
        why = reason or "is not a zoo, torchvision: or timm: name, so building it imports and runs code"
        super().__init__(path, "name", f"model factory {factory!r} {why}; refused. If you trust this checkpoint, "
                                       "pass --trust-model-code (library: trust_model_code=True)")

    def __reduce__(self):
        return _rebuild, (type(self), self.__dict__, str(self))


class NonFiniteError(InputError):
    """``where`` (a tensor, a metric) holds NaN or infinite values: ``message`` says how many / which."""

    def __init__(self, where: str, message: str):
        self.where, self.message = where, message
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        return type(self), (self.where, self.message)


class DivergedError(NonFiniteError):
    """Training produced a non-finite loss at optimizer ``step`` (0-based) with learning rate ``lr``."""

    def __init__(self, step: int, loss: float, lr: float):
        self.step, self.loss, self.lr = step, loss, lr
        super().__init__("training loss", f"{loss} at step {step}; training diverged (learning rate {lr:g} "
                                          "is the usual cause) and no checkpoint was written")

    def __reduce__(self):
        return type(self), (self.step, self.loss, self.lr)


class OutputError(InputError):
    """The output ``path`` given by ``flag`` cannot be written: ``message`` says why (nothing was written)."""

    def __init__(self, flag: str, path: str | os.PathLike, message: str):
        self.flag, self.path, self.message = flag, Path(path), message
        super().__init__(f"{flag} {str(path)!r}: {message}")

    def __reduce__(self):
        return type(self), (self.flag, self.path, self.message)


class UnreachableTargetError(InputError):
    """A pruning target (a MACs reduction) that no selection can reach in this network; the message says what
    is reachable."""


class ArgumentError(InputError):
    """The value ``value`` of the library argument ``argument`` (e.g. ``flops_reduction``) cannot be honoured:
    ``reason`` says why. A command line maps ``argument`` to its flag (``cli._common.flag_for``) and prints the
    same reason."""

    def __init__(self, argument: str, value, reason: str):
        self.argument, self.value, self.reason = argument, value, reason
        super().__init__(self.describe(argument))

    def describe(self, name: str) -> str:
        """The one-line message with ``name`` (an argument or a flag) in front."""
        value = f"{self.value:g}" if isinstance(self.value, float) else str(self.value)
        return f"{name} {value}: {self.reason}"

    def __reduce__(self):
        return _rebuild, (type(self), self.__dict__, str(self))


def _rebuild(cls, state, text):
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, text)
    return err


class GraphError(RuntimeError):
    """The channel graph of a model cannot be built: the tracer failed on a named layer or op, or the group
    enumeration passed its time or size bound. The message is one line and says what to do."""
