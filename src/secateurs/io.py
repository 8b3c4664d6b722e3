"""Checkpoints without pickle: ``model.json`` (how to rebuild) + ``model.safetensors`` (the weights).

A checkpoint directory holds:

* ``model.json`` — the model's registry name (a zoo name, ``package.module:factory``, ``torchvision:…``) and
  the keyword arguments it was built with, the input shape and class count, and, for a structurally pruned
  model, the pruning plan that is replayed on a fresh copy before the weights are loaded;
* ``model.safetensors`` — the state dict;
* ``summary.json`` — the metrics of the run that produced it; other files (plots, tables) may sit beside.

Writes are atomic at the directory level: everything goes into a hidden sibling temporary directory which is
renamed into place; an existing checkpoint is never modified in place — it is kept unless ``overwrite=True``,
and then it is moved aside and deleted only after the new one is complete. A run killed in between leaves hidden
siblings (``.NAME.tmp-*``, ``.NAME.old-*``); the next write to the same path (:func:`recover`) restores the old
checkpoint if the final path is missing and removes the debris. One process at a time writes a path
(:func:`output_lock`). Files and directories follow the umask.

Loading never runs code the checkpoint chooses: ``model.json`` is validated (``secateurs._schema``), and a model
name other than a zoo / plain ``torchvision:`` / plain ``timm:`` name is refused before anything is imported unless
``trust_model_code=True`` (see the README, "Trust model"). Weights that are NaN or infinite are refused.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import _schema
from ._atomic import _follow_umask, atomic_path, output_lock, write_json_atomic, write_text_atomic  # noqa: F401
from .errors import CheckpointError, CheckpointNotFoundError, NonFiniteError, OutputError, UntrustedCodeError

__all__ = ["ModelSpec", "Checkpoint", "save", "load", "load_checkpoint", "write_json_atomic", "write_text_atomic",
           "atomic_path", "recover", "output_lock", "check_finite",
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

    def build(self, *, trust_model_code: bool = False, source: str | os.PathLike | None = None,
              max_numel: int | None = None) -> nn.Module:
        """A fresh model with this architecture (the plan applied, weights random).

        Without ``trust_model_code`` a name that would import code of the file's choosing is refused
        (:class:`UntrustedCodeError`) before any import, and the current directory and ``source`` (the
        checkpoint's directory) and its parent are kept off ``sys.path`` while building.
        """
        from .models import create_model, import_path_without, untrusted_reason

        where = Path(source) / "model.json" if source is not None else None
        try:
            reason = untrusted_reason(self.name, self.kwargs)
        except (KeyError, ValueError) as e:
            raise CheckpointError(where, "name", _first_line(e)) from None
        if reason is not None and not trust_model_code:
            raise UntrustedCodeError(where, self.name, reason)
        dirs = () if source is None else (Path(source), Path(source).parent)
        guard = contextlib.nullcontext() if trust_model_code else import_path_without(dirs)
        with guard:
            if max_numel is not None and reason is None:  # never run a user factory twice (side effects)
                self._check_size(where, max_numel)
            try:
                model = create_model(self.name, **self.kwargs)
            except (TypeError, ValueError, KeyError, AttributeError, ImportError, RuntimeError, MemoryError) as e:
                raise CheckpointError(where, "kwargs" if isinstance(e, (TypeError, ValueError)) else "name",
                                      f"cannot build {self.name!r}: {_first_line(e)}") from None
            if not isinstance(model, nn.Module):
                raise CheckpointError(where, "name", f"{self.name!r} built a {type(model).__name__}, not a module")
            if self.plan is not None:
                try:
                    self._apply_plan(model)
                except CheckpointError:
                    raise
                except Exception as e:  # any failure of a foreign plan on this architecture is the file's fault
                    raise CheckpointError(where, "plan", f"does not apply to {self.name!r}: "
                                                         f"{type(e).__name__}: {_first_line(e)}") from None
        return model

    def _check_size(self, where, max_numel: int) -> None:
        """Build on the meta device first (no memory): kwargs asking for a model far larger than the weights file
        (``hidden=[10**9]``) are refused before any real allocation."""
        from .models import create_model

        try:
            with torch.device("meta"):
                probe = create_model(self.name, **self.kwargs)
            numel = sum(t.numel() for t in probe.state_dict().values())
        except Exception:  # noqa: BLE001  the real build below reports what is wrong
            return
        if numel > max_numel:
            raise CheckpointError(where, "kwargs", f"build a {self.name!r} with {numel:,} weights: model.safetensors "
                                                   "does not match its architecture (it holds far fewer)")

    def _apply_plan(self, model: nn.Module) -> None:
        from .graph import build_channel_graph
        from .structured import apply_plan, PruningPlan

        example = torch.zeros(1, *self.input_shape)
        # The plan was verified when it was made; re-tracing without the (slow) verification gives the same
        # groups and indices (verification can only mark groups unprunable).
        graph = build_channel_graph(model, example, verify=False)
        apply_plan(model, PruningPlan.from_dict(self.plan), example, graph=graph, verify=False)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, path: str | os.PathLike | None = None) -> "ModelSpec":
        """Validate a parsed ``model.json`` (:class:`CheckpointError` naming ``path`` and the field)."""
        if not isinstance(d, dict):
            raise CheckpointError(path, None, "expected a JSON object")
        return cls(**_schema.model_spec_fields(d, path, format_name=FORMAT, format_version=FORMAT_VERSION))


@dataclass
class Checkpoint:
    model: nn.Module
    spec: ModelSpec
    summary: dict
    path: Path


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def save(out_dir: str | os.PathLike, model: nn.Module, spec: ModelSpec, summary: dict | None = None, *,
         overwrite: bool = False, extra: Callable[[Path], None] | None = None,
         weights: Callable[[dict, Path], Any] | None = None) -> Path:
    """Write a checkpoint directory atomically. ``extra(tmp_dir)`` may add files (plots) before the rename;
    ``weights(state, tmp_dir)`` replaces the ``model.safetensors`` writer (the compressed sparse format).

    Refuses (nothing written) weights that are not finite, an existing ``out_dir`` without ``overwrite``, and, even
    with it, an existing path that is not a secateurs checkpoint (a file, or a directory of other things).
    """
    out = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_finite(state, "the model to save")
    with output_lock(out):
        recover(out)
        if out.exists() and not overwrite:
            raise CheckpointExistsError(f"output directory {str(out)!r} already exists (pass overwrite to replace "
                                        "it)")
        if out.exists() or out.is_symlink():
            _check_replaceable(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        try:
            _follow_umask(tmp, is_dir=True)
            if weights is None:
                save_file(_dedupe_shared(state), str(tmp / "model.safetensors"), metadata={"format": FORMAT})
            else:
                weights(state, tmp)
            write_json_atomic(tmp / "model.json", spec.to_dict())
            write_json_atomic(tmp / "summary.json", summary or {})
            if extra is not None:
                extra(tmp)
            for f in tmp.rglob("*"):  # safetensors (and some plot backends) create their files 0600
                if not f.is_symlink():
                    _follow_umask(f, is_dir=f.is_dir())
            old = None
            if out.exists():
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
                old.rmdir()
                os.replace(out, old)
            # a kill here leaves no checkpoint at ``out``: recover() moves ``old`` back on the next write
            os.replace(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _check_replaceable(out: Path) -> None:
    """With overwrite, only a secateurs checkpoint directory may be replaced: never a file, a symlink or a folder
    of other things (``--out runs --overwrite`` must not delete every run)."""
    if out.is_symlink() or not out.is_dir():
        raise CheckpointExistsError(f"output path {str(out)!r} exists and is not a checkpoint directory; refusing "
                                    "to replace it")
    entries = list(out.iterdir())
    if entries and not (out / "model.json").is_file():
        raise CheckpointExistsError(f"output directory {str(out)!r} is not a secateurs checkpoint (no model.json) "
                                    f"and holds {len(entries)} entries; refusing to replace it")


def recover(path: str | os.PathLike) -> list[str]:
    """Clean up after a writer of ``path`` that was killed; returns one note per action (empty: nothing to do).

    If ``path`` is missing but a complete moved-aside copy (``.NAME.old-*``) exists, the kill came between moving
    the old checkpoint aside and moving the new one in: the old one is put back. Temporary copies
    (``.NAME.tmp-*``, ``.NAME.*.tmp``) and remaining moved-aside copies are removed. Call with the path locked.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    notes: list[str] = []
    olds, debris = [], []
    for entry in parent.iterdir():
        n = entry.name
        if n.startswith(f".{path.name}.old-"):
            olds.append(entry)
        elif n.startswith(f".{path.name}.tmp-") or (n.startswith(f".{path.name}.") and n.endswith(".tmp")):
            debris.append(entry)
    if not path.exists() and not path.is_symlink():
        complete = [o for o in olds if (o / "model.json").is_file() and (o / "model.safetensors").is_file()]
        if complete:
            best = max(complete, key=lambda o: o.stat().st_mtime)
            os.replace(best, path)
            olds.remove(best)
            notes.append(f"restored {str(path)!r} from {best.name}, left by a run killed while replacing it")
    for entry in olds + debris:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if olds or debris:
        notes.append(f"removed {len(olds) + len(debris)} temporary copies of {str(path)!r} left by an interrupted "
                     "run")
    return notes


def check_finite(state: dict[str, torch.Tensor], what: str) -> None:
    """Raise :class:`NonFiniteError` naming the first floating tensor of ``state`` with NaN or infinite values."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise NonFiniteError(f"{what}: tensor {name!r}", f"{bad} of {t.numel()} values are NaN or "
                                                                 "infinite")


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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    trust_model_code: bool = False, allow_non_finite: bool = False) -> Checkpoint:
    """Rebuild the model described by ``path/model.json`` and load ``path/model.safetensors`` into it.

    Every file is validated first; a problem raises :class:`~secateurs.errors.CheckpointError` naming the file and
    the field. ``trust_model_code``: allow a ``module:factory`` (or hub) model name to import and run its code —
    only for checkpoints you would run as a script. ``allow_non_finite``: accept NaN / infinite weights.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointNotFoundError(path, None, "checkpoint directory does not exist")
    sparse = (path / "sparse.json").is_file()  # the compressed form of secateurs.sparse.format
    for name in ("model.json",) if sparse else ("model.json", "model.safetensors"):
        if not (path / name).is_file():
            raise CheckpointNotFoundError(path, None, f"checkpoint has no {name}")
    spec = ModelSpec.from_dict(_schema.read_json(path / "model.json"), path / "model.json")
    summary_path = path / "summary.json"
    summary = _schema.validate_summary(_schema.read_json(summary_path), summary_path) if summary_path.is_file() \
        else {}
    if sparse:
        from .sparse.format import read_state

        weights = path / "sparse.json"
        try:
            state = read_state(path, map_location)
        except FileNotFoundError as e:
            raise CheckpointNotFoundError(path, None, _first_line(e)) from None
        except (ValueError, OSError, RuntimeError, TypeError) as e:
            raise CheckpointError(weights, None, _first_line(e)) from None
    else:
        weights = path / "model.safetensors"
        state = _read_weights(weights, map_location)
    if not allow_non_finite:
        check_finite(state, str(weights))
    stored = sum(t.numel() for t in state.values())
    # a pruning plan shrinks the dense model it is replayed on: allow a generous ratio, never an unbounded one
    limit = stored if spec.plan is None else 1000 * stored + 1_000_000
    model = spec.build(trust_model_code=trust_model_code, source=path, max_numel=limit)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        lines = str(e).splitlines()
        raise CheckpointError(weights, None, f"does not match its architecture {spec.name!r}: "
                                             f"{lines[1].strip() if len(lines) > 1 else _first_line(e)}") from None
    if missing or unexpected:
        raise CheckpointError(weights, None, f"does not match its architecture {spec.name!r}: "
                                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    _check_consistent(model, spec, path / "model.json")
    model.to(map_location)
    model.eval()
    return Checkpoint(model, spec, summary, path)


def _check_consistent(model: nn.Module, spec: ModelSpec, where: Path) -> None:
    """The fields other code trusts: the model runs on ``input_shape`` and gives ``num_classes`` logits, and the
    sparsity record names tensors the model has. One forward pass on zeros, in eval mode."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *spec.input_shape))
    except Exception as e:  # noqa: BLE001  whatever a wrong shape raises inside the model's forward
        raise CheckpointError(where, "input_shape", f"{spec.name!r} cannot run on inputs of shape "
                                                    f"{spec.input_shape}: {_first_line(e)}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckpointError(where, "input_shape", f"{spec.name!r} returns {got} on a batch of one, not a row of "
                                                    "logits")
    if spec.num_classes is not None and out.shape[-1] != spec.num_classes:
        raise CheckpointError(where, "num_classes", f"{spec.num_classes}, but the model gives {out.shape[-1]} "
                                                    "logits")
    names = (spec.sparsity or {}).get("tensors") or []
    params = dict(model.named_parameters())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise CheckpointError(where, "sparsity.tensors", f"names {unknown[:3]}, which {spec.name!r} does not have")


def _read_weights(path: Path, map_location) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError

    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(path, None, f"not a readable safetensors file ({_first_line(e)})") from None


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
         trust_model_code: bool = False, sparse_kernels: bool = False, batch_size: int = 1) -> nn.Module:
    """Rebuild a model saved by secateurs (dense, sparse or structurally pruned), in eval mode.

    A checkpoint whose model is a ``package.module:factory`` needs ``trust_model_code=True``: building it imports
    and runs that code (see the README, "Trust model"). ``sparse_kernels=True`` then swaps each sparse layer for a
    sparse-kernel one where a measurement at ``batch_size`` on this machine shows it faster
    (:func:`secateurs.sparse.to_sparse_kernels`).
    """
    ckpt = load_checkpoint(path, map_location, trust_model_code=trust_model_code)
    if sparse_kernels:
        from .sparse.kernels import to_sparse_kernels

        to_sparse_kernels(ckpt.model, ckpt.spec.input_shape, batch_size=batch_size)
    return ckpt.model
