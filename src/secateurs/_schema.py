"""The schema of every file secateurs reads: ``model.json``, a pruning plan, ``summary.json``, a training state.

Each reader checks types, ranges and sizes before any value is used, and raises :class:`CheckpointError` naming the
file and the field, so a broken or hostile file ends in one line, never in a KeyError or TypeError deep inside a
model factory. Limits (sizes, shape volume) keep a crafted file from asking for unbounded memory or time.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import CheckpointError

# model.json / summary.json / plan.json are small: a larger file is not ours (and would be slow to parse).
MAX_JSON_BYTES = 64 << 20
# torch.zeros(1, *input_shape) is built to replay a plan and to count MACs: bound its volume (elements).
MAX_INPUT_ELEMENTS = 1 << 24
MAX_INPUT_DIMS = 4
MAX_CLASSES = 1 << 20
MAX_CHANNELS = 1 << 20


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: str | os.PathLike, *, kind: str = "object") -> Any:
    """Parse ``path`` as strict JSON (no NaN/Infinity) holding a ``kind`` ("object" or "any")."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise CheckpointError(path, None, f"{size} bytes; larger than the {MAX_JSON_BYTES} a secateurs JSON "
                                              "file can be")
        text = path.read_bytes().decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except CheckpointError:
        raise
    except UnicodeDecodeError as e:
        raise CheckpointError(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise CheckpointError(path, None, "JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity
        raise CheckpointError(path, None, f"not valid JSON ({e})") from None
    except OSError as e:
        raise CheckpointError(path, None, f"cannot be read ({e.strerror or e})") from None
    if kind == "object" and not isinstance(value, dict):
        raise CheckpointError(path, None, f"expected a JSON object, got {_type(value)}")
    return value


def _type(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(path, field: str, v: Any, low: int, high: int) -> int:
    if not is_int(v):
        raise CheckpointError(path, field, f"expected an integer, got {_type(v)} {v!r:.60}")
    if not low <= v <= high:
        raise CheckpointError(path, field, f"{v} is outside [{low}, {high}]")
    return v


def _str(path, field: str, v: Any, optional: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v:
        raise CheckpointError(path, field, f"expected a non-empty string, got {_type(v)} {v!r:.60}")
    return v


def _object(path, field: str, v: Any, optional: bool = False) -> dict | None:
    if v is None and optional:
        return None
    if not isinstance(v, dict):
        raise CheckpointError(path, field, f"expected an object, got {_type(v)}")
    return v


# ----------------------------------------------------------------------------------------------- model.json
def model_spec_fields(d: Mapping[str, Any], path, *, format_name: str, format_version: int) -> dict[str, Any]:
    """The validated ``ModelSpec`` fields of a parsed ``model.json``."""
    if d.get("format") != format_name:
        raise CheckpointError(path, "format", f"not a secateurs model.json (format={d.get('format')!r:.60})")
    version = d.get("version", 1)
    if not is_int(version) or version < 1:
        raise CheckpointError(path, "version", f"expected an integer >= 1, got {version!r:.60}")
    if version > format_version:
        raise CheckpointError(path, "version", f"{version} is newer than this secateurs (supports "
                                               f"{format_version}); upgrade secateurs")
    if "name" not in d:
        raise CheckpointError(path, "name", "missing")
    name = _str(path, "name", d["name"])
    kwargs = _object(path, "kwargs", d.get("kwargs", {}))
    for k in kwargs:
        if not k.isidentifier():
            raise CheckpointError(path, "kwargs", f"{k!r:.60} is not a keyword argument name")
    for k in ("num_classes", "in_channels"):
        if k in kwargs:
            _int(path, f"kwargs.{k}", kwargs[k], 1, MAX_CLASSES if k == "num_classes" else MAX_CHANNELS)
    shape = d.get("input_shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= MAX_INPUT_DIMS:
        raise CheckpointError(path, "input_shape", f"expected a list of 1 to {MAX_INPUT_DIMS} sizes without the "
                                                   f"batch dimension, got {shape!r:.60}")
    volume = 1
    for i, s in enumerate(shape):
        volume *= _int(path, f"input_shape[{i}]", s, 1, MAX_INPUT_ELEMENTS)
    if volume > MAX_INPUT_ELEMENTS:
        raise CheckpointError(path, "input_shape", f"{shape} has {volume} elements per sample; at most "
                                                   f"{MAX_INPUT_ELEMENTS}")
    num_classes = d.get("num_classes")
    if num_classes is not None:
        _int(path, "num_classes", num_classes, 1, MAX_CLASSES)
    dataset = _str(path, "dataset", d.get("dataset"), optional=True)
    plan = d.get("plan")
    if plan is not None:
        validate_plan(plan, path, field="plan")
    sparsity = _object(path, "sparsity", d.get("sparsity"), optional=True)
    if sparsity is not None and "tensors" in sparsity:
        tensors = sparsity["tensors"]
        if not isinstance(tensors, list) or not all(isinstance(t, str) and t for t in tensors):
            raise CheckpointError(path, "sparsity.tensors", f"expected a list of parameter names, got "
                                                            f"{tensors!r:.60}")
    return {"name": name, "kwargs": dict(kwargs), "input_shape": list(shape), "num_classes": num_classes,
            "dataset": dataset, "plan": plan, "sparsity": sparsity}


# ----------------------------------------------------------------------------------------------- plan
def validate_plan(d: Any, path, field: str = "plan", version: int = 1) -> dict:
    """A pruning plan as stored by ``PruningPlan.to_dict``: {version, groups: {id: [kept]}, widths: {id: n}}."""
    if not isinstance(d, dict):
        raise CheckpointError(path, field, f"expected an object, got {_type(d)}")
    if d.get("version") != version:
        raise CheckpointError(path, f"{field}.version", f"unsupported plan version {d.get('version')!r:.60} "
                                                        f"(expected {version})")
    groups = _object(path, f"{field}.groups", d.get("groups"))
    widths = _object(path, f"{field}.widths", d.get("widths"))
    for g, w in widths.items():
        _int(path, f"{field}.widths[{g!r:.60}]", w, 1, MAX_CHANNELS)
    for g, kept in groups.items():
        where = f"{field}.groups[{g!r:.60}]"
        if g not in widths:
            raise CheckpointError(path, where, "group has no width in widths")
        if not isinstance(kept, list) or not kept:
            raise CheckpointError(path, where, f"expected a non-empty list of kept channel indices, got "
                                               f"{kept!r:.60}")
        for i in kept:
            _int(path, where, i, 0, widths[g] - 1)
        if len(set(kept)) != len(kept):
            raise CheckpointError(path, where, "channel indices repeat")
    _object(path, f"{field}.model_spec", d.get("model_spec"), optional=True)
    _object(path, f"{field}.meta", d.get("meta"), optional=True)
    return d


# ----------------------------------------------------------------------------------------------- summary.json
# Keys other code reads from a summary, and what they must be.
_SUMMARY_NUMBERS = ("accuracy", "test_loss", "flops_reduction", "sparsity", "macs_dense", "params_dense", "macs",
                    "params")


# Names older versions wrote -> the one schema's names (docs/summary.md); a summary is read under the new names.
RENAMED_SUMMARY_KEYS = {"source": "checkpoint", "dense_accuracy": "accuracy_dense", "dense_macs": "macs_dense",
                        "target_flops_reduction": "requested_flops_reduction", "target_sparsity": "requested_sparsity",
                        "verify_max_abs_diff": "max_abs_diff"}


def validate_summary(d: Any, path) -> dict:
    """``summary.json``: an object; the metrics other commands read are finite numbers (or null). Fields under
    an older name (``RENAMED_SUMMARY_KEYS``) are returned under the current one."""
    if not isinstance(d, dict):
        raise CheckpointError(path, None, f"expected a JSON object, got {_type(d)}")
    d = {RENAMED_SUMMARY_KEYS.get(k, k) if RENAMED_SUMMARY_KEYS.get(k) not in d else k: v for k, v in d.items()}
    for key in _SUMMARY_NUMBERS:
        v = d.get(key)
        if v is not None and not is_number(v):
            raise CheckpointError(path, key, f"expected a finite number or null, got {_type(v)} {v!r:.60}")
    acc = d.get("accuracy")
    if acc is not None and not 0 <= acc <= 1:
        raise CheckpointError(path, "accuracy", f"{acc} is outside [0, 1]")
    for key in ("widths", "criterion"):
        v = d.get(key)
        if key == "widths" and v is not None and not isinstance(v, dict):
            raise CheckpointError(path, key, f"expected an object, got {_type(v)}")
        if key == "criterion" and v is not None and not isinstance(v, str):
            raise CheckpointError(path, key, f"expected a string, got {_type(v)}")
    return d


# ----------------------------------------------------------------------------------------------- train state
def validate_train_state(state: Any, path, *, format_name: str, format_version: int) -> dict:
    """A ``Trainer.state_dict()`` read back from disk: every key the restore uses, with the right type."""
    import torch

    if not isinstance(state, dict) or state.get("format") != format_name:
        raise CheckpointError(path, None, "not a secateurs training state")
    version = state.get("version")
    if not is_int(version) or version < 1:
        raise CheckpointError(path, "version", f"expected an integer >= 1, got {version!r:.60}")
    if version > format_version:
        raise CheckpointError(path, "version", f"training state version {version} is newer than this secateurs "
                                               f"supports ({format_version})")
    kinds = {"config": dict, "model": dict, "optimizer": dict, "scheduler": dict, "history": list,
             "callbacks": list, "rng": torch.Tensor}
    for key, kind in kinds.items():
        if not isinstance(state.get(key), kind):
            got = "missing" if key not in state else f"a {type(state[key]).__name__}"
            raise CheckpointError(path, key, f"expected a {kind.__name__}, got {got}")
    for key in ("total_steps", "world_size", "epoch", "global_step", "images"):
        _int(path, key, state.get(key), 0 if key != "world_size" else 1, 1 << 62)
    if not is_number(state.get("train_time")):
        raise CheckpointError(path, "train_time", f"expected a finite number, got {state.get('train_time')!r:.60}")
    for k, v in state["model"].items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(path, "model", f"entry {k!r:.60} is not a named tensor")
    if not all(isinstance(h, dict) for h in state["history"]):
        raise CheckpointError(path, "history", "expected a list of objects")
    if state["rng"].dtype != torch.uint8:
        raise CheckpointError(path, "rng", f"expected a uint8 tensor, got {state['rng'].dtype}")
    return state
