"""Checkpoints without pickle: ``model.json`` (how to rebuild) + ``model.safetensors`` (the weights).

A checkpoint directory holds:

* ``model.json`` — the model's registry name (a zoo name, ``package.module:factory``, ``torchvision:…``) and
  the keyword arguments it was built with, the input shape and class count, and, for a structurally pruned
  model, the pruning plan that is replayed on a fresh copy before the weights are loaded;
* ``model.safetensors`` — the state dict;
* ``summary.json`` — the metrics of the run that produced it; other files (plots, tables) may sit beside.

Writes are atomic at the directory level: everything goes into a hidden sibling temporary directory which is
renamed into place; an existing checkpoint is never modified in place — it is kept unless ``overwrite=True``,
and then it is moved aside and deleted only after the new one is complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["ModelSpec", "Checkpoint", "save", "load", "load_checkpoint", "write_json_atomic", "write_text_atomic",
           "atomic_path",
           "CheckpointExistsError"]

FORMAT = "secateurs"
FORMAT_VERSION = 1


class CheckpointExistsError(FileExistsError):
    pass


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model: registry name + kwargs (+ a structured pruning plan)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] = field(default_factory=list)
    num_classes: int | None = None
    dataset: str | None = None
    plan: dict | None = None
    sparsity: dict | None = None

    def build(self) -> nn.Module:
        """A fresh model with this architecture (the plan applied, weights random)."""
        from .models import create_model

        model = create_model(self.name, **self.kwargs)
        if self.plan is not None:
            from .graph import build_channel_graph
            from .structured import apply_plan, PruningPlan

            example = torch.zeros(1, *self.input_shape)
            # The plan was verified when it was made; re-tracing without the (slow) verification gives the same
            # groups and indices (verification can only mark groups unprunable).
            graph = build_channel_graph(model, example, verify=False)
            apply_plan(model, PruningPlan.from_dict(self.plan), example, graph=graph, verify=False)
        return model

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a secateurs model.json (format={d.get('format')!r})")
        if int(d.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(f"model.json version {d['version']} is newer than this secateurs "
                             f"(supports {FORMAT_VERSION}); upgrade secateurs")
        fields = {k: d[k] for k in ("name", "kwargs", "input_shape", "num_classes", "dataset", "plan", "sparsity")
                  if k in d}
        return cls(**fields)


@dataclass
class Checkpoint:
    model: nn.Module
    spec: ModelSpec
    summary: dict
    path: Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    Every file secateurs writes goes through here, so a crash never leaves a half-written output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename, so a power cut leaves the old file or the new one
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same directory and an atomic rename."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def save(out_dir: str | os.PathLike, model: nn.Module, spec: ModelSpec, summary: dict | None = None, *,
         overwrite: bool = False, extra: Callable[[Path], None] | None = None,
         weights: Callable[[dict, Path], Any] | None = None) -> Path:
    """Write a checkpoint directory atomically. ``extra(tmp_dir)`` may add files (plots) before the rename;
    ``weights(state, tmp_dir)`` replaces the ``model.safetensors`` writer (the compressed sparse format)."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise CheckpointExistsError(f"output directory {str(out)!r} already exists (pass overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise CheckpointExistsError(f"output path {str(out)!r} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if weights is None:
            save_file(_dedupe_shared(state), str(tmp / "model.safetensors"), metadata={"format": FORMAT})
        else:
            weights(state, tmp)
        write_json_atomic(tmp / "model.json", spec.to_dict())
        write_json_atomic(tmp / "summary.json", summary or {})
        if extra is not None:
            extra(tmp)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            old.rmdir()
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share storage; store independent copies instead."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        if v.numel():
            seen.add(ptr)
    return out


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model described by ``path/model.json`` and load ``path/model.safetensors`` into it."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    sparse = (path / "sparse.json").is_file()  # the compressed form of secateurs.sparse.format
    for name in ("model.json",) if sparse else ("model.json", "model.safetensors"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} has no {name}")
    spec = ModelSpec.from_dict(json.loads((path / "model.json").read_text()))
    model = spec.build()
    if sparse:
        from .sparse.format import read_state

        state = read_state(path, map_location)
    else:
        state = load_file(str(path / "model.safetensors"), device=str(map_location))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"checkpoint {str(path)!r} does not match its architecture {spec.name!r}: "
                         f"{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}") from None
    if missing or unexpected:
        raise ValueError(f"checkpoint {str(path)!r} does not match its architecture {spec.name!r}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.to(map_location)
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    model.eval()
    return Checkpoint(model, spec, summary, path)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", *, sparse_kernels: bool = False,
         batch_size: int = 1) -> nn.Module:
    """Rebuild a model saved by secateurs (dense, sparse or structurally pruned), in eval mode.

    ``sparse_kernels=True`` then swaps each sparse layer for a sparse-kernel one where a measurement at
    ``batch_size`` on this machine shows it faster (:func:`secateurs.sparse.to_sparse_kernels`)."""
    ckpt = load_checkpoint(path, map_location)
    if sparse_kernels:
        from .sparse import to_sparse_kernels

        to_sparse_kernels(ckpt.model, ckpt.spec.input_shape, batch_size=batch_size)
    return ckpt.model
