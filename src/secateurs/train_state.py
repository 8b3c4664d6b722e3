"""The training-state file (``--save-state`` / ``--resume``): what it holds, how it is written and read, and when a
saved state fits a run.

A state is a dict of tensors and plain data (``Trainer.state_dict``): ``format`` / ``version``, the configuration,
``total_steps`` and ``world_size``, ``epoch`` / ``global_step``, the model, optimizer and scheduler states,
``history``, timings, RNG states, every callback's ``state_dict()`` and the training loss's record. It is written
atomically with ``torch.save`` and read with ``torch.load(weights_only=True)`` (no arbitrary pickle), then
validated (``secateurs._schema``). ``check_resumable`` says, as a ``ResumeError``, why a state does not fit.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import InputError

__all__ = ["TRAIN_STATE_FORMAT", "TRAIN_STATE_VERSION", "ResumeError", "check_resumable", "cpu_copy",
           "read_train_state", "write_train_state"]

TRAIN_STATE_FORMAT = "secateurs-train-state"
TRAIN_STATE_VERSION = 1


class ResumeError(InputError):
    """A saved training state does not fit this run (configuration, model, callbacks); nothing was trained."""


SGD_ONLY = ("momentum", "nesterov")  # TrainConfig fields only SGD reads


def check_resumable(state: Any, *, config: dict, criterion: dict | None, total_steps: int, world_size: int,
                    model: dict[str, torch.Tensor]) -> None:
    """Raise ``ResumeError`` unless ``state`` continues a run with this configuration, loss record, step count,
    world size and model weights (names and shapes, parametrisations looked through)."""
    if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_FORMAT:
        raise ResumeError("not a secateurs training state")
    if int(state.get("version", 0)) > TRAIN_STATE_VERSION:
        raise ResumeError(f"training state version {state['version']} is newer than this secateurs supports "
                          f"({TRAIN_STATE_VERSION})")
    saved = state["config"]
    # SGD's own settings do nothing under adam / adamw: a state saved with another momentum there resumes
    ignored = SGD_ONLY if saved.get("optimizer", "sgd") != "sgd" and config.get("optimizer", "sgd") != "sgd" else ()
    diff = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in config.items()
            if k not in ignored and saved.get(k) != v]
    if diff:
        raise ResumeError("the training configuration differs from the saved run (" + "; ".join(diff) + ")")
    if state.get("criterion") != criterion:
        raise ResumeError(f"the training loss differs from the saved run (saved {state.get('criterion')}, "
                          f"now {criterion})")
    for key, now in (("total_steps", total_steps), ("world_size", world_size)):
        if state[key] != now:
            raise ResumeError(f"{key}: saved {state[key]}, now {now} (different data or launch)")
    saved, mine = _weight_shapes(state["model"]), _weight_shapes(model)
    if saved != mine:
        odd = sorted(set(saved) ^ set(mine)) or [k for k in saved if saved[k] != mine[k]]
        raise ResumeError(f"the saved weights do not fit this model (first difference: {odd[0]})")


def write_train_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    from ._atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def cpu_copy(obj: Any) -> Any:
    """A snapshot of nested dicts/lists/tuples whose tensors are detached CPU copies (live buffers keep changing)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def _weight_shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a state dict with parametrisations looked through (``m.parametrizations.weight.original``
    is ``m.weight``; the parametrisations' own buffers are ignored), so a sparsifier's forward masks, installed only
    once training begins, do not make a saved run look like another model."""
    out = {}
    for k, v in state.items():
        if ".parametrizations." in f".{k}":
            head, _, rest = f".{k}".partition(".parametrizations.")
            name, _, leaf = rest.partition(".")
            if leaf != "original":
                continue
            k = f"{head}.{name}".lstrip(".")
        out[k] = tuple(v.shape)
    return out


def read_train_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a state written by ``Trainer(state_path=...)`` (restricted unpickler: tensors and plain data only)."""
    import pickle
    import warnings

    from . import _schema
    from .errors import CheckpointError

    try:
        with warnings.catch_warnings():  # torch warns about legacy formats on stderr; our error says it all
            warnings.simplefilter("ignore")
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # corrupt, or holding objects other than tensors and plain data (torch's message then advises
        # weights_only=False, i.e. running the file's code: not advice to pass on)
        raise ResumeError(f"{str(path)!r} is not a readable training state: not a torch file of tensors and plain "
                          "data (objects that could run code are refused)") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError,
            IndexError, KeyError, MemoryError) as e:
        lines = str(e).strip().splitlines()
        raise ResumeError(f"{str(path)!r} is not a readable training state: "
                          f"{lines[0] if lines else type(e).__name__}") from None
    try:
        return _schema.validate_train_state(state, path, format_name=TRAIN_STATE_FORMAT,
                                            format_version=TRAIN_STATE_VERSION)
    except CheckpointError as e:
        raise ResumeError(str(e)) from None
