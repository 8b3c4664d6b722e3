"""A latency profile as data: what was measured (one width table per layer signature, the calibration fit, the
held-out check), what it is valid for (its key), its JSON form (validated field by field on load) and where it is
cached. Measuring one: :mod:`secateurs.cost.profiling`; the cost model built from it:
:mod:`secateurs.cost.latency`; the design: docs/latency.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .._device import cpu_model
from .._schema import is_number
from ..errors import CheckpointError
from ..graph.groups import ChannelGraph
from ._names import DTYPE_NAMES, RUNTIMES

__all__ = ["LatencyProfile", "LayerTable", "layer_grids", "cache_dir", "cache_path", "profile_key", "device_name",
           "require_onnxruntime", "RUNTIMES", "DTYPES", "GRID"]

FORMAT = "secateurs-latency-profile"
VERSION = 1
DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
GRID = (0.25, 0.5, 0.75, 1.0)  # fractions of the full width, plus 1 channel: 5 points per varied width
MAX_LAYERS = 100_000
MAX_GRID = 64
# in the cache key: a profile cached under another rule for the width grid is measured again
GRID_RULE = "both-sides-8"
# profile_latency(tables=...): all layer tables in one interleaved timing, or one by one
TABLE_TIMINGS = ("together", "each")


@dataclass
class LayerTable:
    """Measured ms of one layer signature on a grid: ``ms[i][j]`` at ``in_grid[i]`` input and ``out_grid[j]``
    output channels (features, for a linear layer). A width that is not varied has a one-point grid."""

    signature: str
    in_grid: list[int]
    out_grid: list[int]
    ms: list[list[float]]

    def to_dict(self) -> dict:
        return {"signature": self.signature, "in_grid": self.in_grid, "out_grid": self.out_grid, "ms": self.ms}


@dataclass
class LatencyProfile:
    """A measured profile: its key (what it is valid for), one table per layer signature, the table of every
    layer call of the graph, the calibration fit and the held-out check. See the module docstring."""

    key: dict[str, Any]
    tables: list[LayerTable]
    calls: list[dict[str, Any]]  # per graph.layers call: module, in/out channels, rows, table index
    beta: float
    alpha: float
    constant_ms: float
    dense_ms: float
    validation: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    build_s: float = 0.0

    @property
    def allocator(self) -> str:
        """The malloc regime its timings ran under (``secateurs.timing.allocator``); a profile from before the key
        recorded it was timed with the allocator as found."""
        from ..timing import AS_FOUND

        return self.key.get("allocator", AS_FOUND)

    @property
    def negative_constant(self) -> bool:
        """Whether its fit has a constant below 0 (written before ``profiling._fit`` held it ≥ 0): its model can
        predict below 0 ms near the floor. A rounding residue at the bound does not count."""
        return self.constant_ms < -1e-9 * max(self.dense_ms, 1.0)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "key": self.key, "tables": [t.to_dict() for t in self.tables],
                "calls": self.calls, "fit": {"beta": self.beta, "alpha": self.alpha, "constant_ms": self.constant_ms,
                                             "dense_ms": self.dense_ms},
                "validation": self.validation, "timing": self.timing, "build_s": self.build_s}

    @classmethod
    def from_dict(cls, d: Any, path: str | os.PathLike | None = None) -> "LatencyProfile":
        """Validate ``d`` (a parsed JSON profile) field by field; :class:`CheckpointError` names the bad one."""
        def bad(fld: str, msg: str):
            raise CheckpointError(path, fld, msg)

        if not isinstance(d, dict):
            bad(None, "expected a JSON object")
        if d.get("format") != FORMAT:
            bad("format", f"expected {FORMAT!r}, got {d.get('format')!r:.60}")
        if d.get("version") != VERSION:
            bad("version", f"expected {VERSION}, got {d.get('version')!r:.60}")
        key = d.get("key")
        if not isinstance(key, dict):
            bad("key", "expected an object")
        for k in ("device", "runtime", "dtype", "torch", "model"):
            if not isinstance(key.get(k), str):
                bad(f"key.{k}", f"expected a string, got {key.get(k)!r:.60}")
        for k in ("threads", "batch_size"):
            if not _is_int(key.get(k)) or not 1 <= key[k] <= 1 << 20:
                bad(f"key.{k}", f"expected a positive integer, got {key.get(k)!r:.60}")
        tables_raw = d.get("tables")
        if not isinstance(tables_raw, list) or not 0 < len(tables_raw) <= MAX_LAYERS:
            bad("tables", "expected a non-empty list")
        tables = []
        for i, t in enumerate(tables_raw):
            f = f"tables[{i}]"
            if not isinstance(t, dict) or not isinstance(t.get("signature"), str):
                bad(f, "expected an object with a signature")
            grids = []
            for side in ("in_grid", "out_grid"):
                g = t.get(side)
                if (not isinstance(g, list) or not 0 < len(g) <= MAX_GRID or not all(_is_int(v) and v > 0 for v in g)
                        or any(a >= b for a, b in zip(g, g[1:]))):
                    bad(f"{f}.{side}", "expected increasing positive integers")
                grids.append(g)
            ms = t.get("ms")
            if (not isinstance(ms, list) or len(ms) != len(grids[0])
                    or not all(isinstance(r, list) and len(r) == len(grids[1]) and all(_nonneg(v) for v in r)
                               for r in ms)):
                bad(f"{f}.ms", f"expected {len(grids[0])} rows of {len(grids[1])} non-negative numbers")
            tables.append(LayerTable(t["signature"], grids[0], grids[1], [[float(v) for v in r] for r in ms]))
        calls = d.get("calls")
        if not isinstance(calls, list) or len(calls) > MAX_LAYERS:
            bad("calls", "expected a list")
        for i, c in enumerate(calls):
            f = f"calls[{i}]"
            if not isinstance(c, dict) or not isinstance(c.get("module"), str):
                bad(f, "expected an object with a module name")
            for k in ("in_channels", "out_channels", "rows", "table"):
                if not _is_int(c.get(k)) or c[k] < 0:
                    bad(f"{f}.{k}", f"expected a non-negative integer, got {c.get(k)!r:.60}")
            if c["table"] >= len(tables):
                bad(f"{f}.table", f"{c['table']} is not one of the {len(tables)} tables")
        fit = d.get("fit")
        if not isinstance(fit, dict):
            bad("fit", "expected an object")
        for k in ("beta", "alpha", "dense_ms"):
            if not _nonneg(fit.get(k)):
                bad(f"fit.{k}", f"expected a non-negative number, got {fit.get(k)!r:.60}")
        if not is_number(fit.get("constant_ms")):
            bad("fit.constant_ms", f"expected a number, got {fit.get('constant_ms')!r:.60}")
        extra = {k: d.get(k) if isinstance(d.get(k), dict) else {} for k in ("validation", "timing")}
        build_s = float(d["build_s"]) if _nonneg(d.get("build_s")) else 0.0
        return cls(key, tables, calls, float(fit["beta"]), float(fit["alpha"]), float(fit["constant_ms"]),
                   float(fit["dense_ms"]), extra["validation"], extra["timing"], build_s)

    def save(self, path: str | os.PathLike) -> None:
        from .._atomic import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyProfile":
        from .._schema import read_json

        return cls.from_dict(read_json(path), path)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _nonneg(v) -> bool:
    return is_number(v) and v >= 0


# --- what a layer call is -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Call:
    module: str
    layer: nn.Module
    in_shape: tuple[int, ...]  # per example (no batch dim)
    in_var: bool  # a prunable group changes this width
    out_var: bool

    @property
    def depthwise(self) -> bool:
        m = self.layer
        return isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and m.groups == m.in_channels == m.out_channels

    @property
    def widths(self) -> tuple[int, int]:
        m = self.layer
        return (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)

    def signature(self) -> str:
        m = self.layer
        if isinstance(m, nn.Linear):
            conf = ["linear", m.in_features, m.out_features, m.bias is not None]
        else:
            conf = [type(m).__name__, m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                    "dw" if self.depthwise else m.groups, m.bias is not None, m.padding_mode]
        return json.dumps(conf + [list(self.in_shape[1:] if not isinstance(m, nn.Linear) else self.in_shape[:-1]),
                                  self.in_var and not self.depthwise, self.out_var], separators=(",", ":"))


def _layer_calls(model: nn.Module, graph: ChannelGraph, example: torch.Tensor) -> list[_Call]:
    """The conv/linear calls of one forward, in ``graph.layers`` order, with their input shapes and which of their
    widths a prunable group controls."""
    names = {m: n for n, m in model.named_modules()}
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def hook(module, args):
        seen.append((names[module], module, tuple(args[0].shape[1:])))

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules()
             if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and not getattr(m, "transposed", False)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    if [s[0] for s in seen] != [c.module for c in graph.layers]:
        raise ValueError("the model's conv/linear calls do not match the channel graph's layers "
                         "(was the graph built on this model?)")
    sides = {(mem.module, side) for g in graph.prunable_groups() for mem in g.members
             for side in (("in", "out") if mem.kind == "dw" else (mem.kind,))}
    return [_Call(n, m, shape, (n, "in") in sides, (n, "out") in sides) for n, m, shape in seen]


def _grid(full: int, varied: bool, multiple: int = 1, sides: tuple[int, ...] = (-1, 1)) -> list[int]:
    """Widths to time: 1 (or ``multiple``), ``GRID`` x full, and the points on both sides of each of those that is
    a multiple of 8 (for a 64-wide layer: 1, 15-17, 31-33, 47-49, 63, 64).

    A layer's time is a staircase in its widths, not a line. Kernels work in blocks of the vector length: at batch
    64 on this project's AVX-512 CPU a 3x3 conv on 16x16 maps costs 0.87 ms at 16 channels, 2.81 ms at 17 and 2.94
    ms at 32, and one on 8x8 maps steps up after 16, 32 and 48 channels (``benchmarks/results/latency_model.md``
    times these stairs). A point on each side of a multiple of 8 puts a step there where it is; with points on one
    side only the table spreads it over a whole segment and predicts savings for channels that save nothing (or
    misses a cut that saves half the layer). (An earlier measurement also saw a step *at* 16 channels on 32x32
    maps, 4.30 -> 5.23 ms; with ``secateurs.timing.steady_allocator`` it is 4.30 -> 4.34, so most likely it was
    the allocator's page faults.)
    ``sides``: which neighbours of each multiple of 8 to add, in ``multiple`` steps (``benchmarks/latency_model.py``
    compares one side only)."""
    if not varied or full <= 1:
        return [full]
    pts = {max(multiple, int(round(f * full / multiple)) * multiple) for f in GRID} | {multiple}
    pts |= {p + s * multiple for p in pts if p % 8 == 0 for s in sides if p + s * multiple >= multiple}
    return sorted(p for p in pts if p <= full)


# --- runtimes and keys ----------------------------------------------------------------------------------------

def runtime_dtype_problem(runtime: str, dtype: str) -> str | None:
    """Why ``dtype`` cannot be measured in ``runtime``, or None: onnxruntime is fed numpy arrays, and numpy has no
    bfloat16."""
    if runtime == "onnxruntime" and dtype == "bfloat16":
        return "onnxruntime is measured through numpy arrays, which have no bfloat16; use float32 or runtime torch"
    return None


def require_onnxruntime():
    """The onnxruntime module, or an :class:`ImportError` saying how to get it."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("onnxruntime is not installed (pip install onnxruntime)") from None
    return onnxruntime


def _versions(runtime: str) -> dict[str, str]:
    v = {"torch": torch.__version__}
    if runtime == "onnxruntime":
        v["onnxruntime"] = require_onnxruntime().__version__
    return v


def device_name(device: torch.device | str = "cpu") -> str:
    """A name for the hardware a profile is valid on: the CPU model (and architecture), or the GPU's name."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}:{cpu_model() or 'unknown'}"


def profile_key(model: nn.Module, graph: ChannelGraph, input_shape: Sequence[int], *, batch_size: int,
                threads: int, dtype: str = "float32", runtime: str = "torch",
                device: torch.device | str = "cpu", tables: str = "each") -> dict[str, Any]:
    """What a profile is valid for: device, threads, batch, dtype, runtime, versions, the allocator regime timings
    run under (``secateurs.timing.allocator``), and the model (a hash of its layer calls' signatures and
    input shape: any checkpoint of the same architecture shares a profile), and how the layer tables were timed
    (``tables``, :func:`secateurs.cost.profiling.profile_latency`)."""
    from ..timing import allocator

    from ..flops import _example_input

    calls = _layer_calls(model, graph, _example_input(model, input_shape, 1))  # where the model lives, its dtype
    arch = json.dumps([list(input_shape)] + [c.signature() for c in calls])
    return {"device": device_name(device), "threads": int(threads), "batch_size": int(batch_size),
            "dtype": dtype, "runtime": runtime, **_versions(runtime),
            "model": hashlib.sha256(arch.encode()).hexdigest()[:20], "input_shape": list(input_shape),
            "grid": GRID_RULE, "tables": tables, "allocator": allocator()}


def cache_dir() -> Path:
    """``$SECATEURS_CACHE/latency``, else ``~/.cache/secateurs/latency`` (never next to a user's checkpoint)."""
    root = os.environ.get("SECATEURS_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "secateurs") / "latency"


def cache_path(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / f"{key['model'][:12]}-b{key['batch_size']}-t{key['threads']}-{key['runtime']}-{digest}.json"



def layer_grids(model: nn.Module, graph: ChannelGraph, input_shape: Sequence[int]
                ) -> tuple[list[_Call], list[dict[str, Any]], list[tuple[_Call, LayerTable]]]:
    """The structure of a profile before anything is timed: the layer calls, their rows for the profile's
    ``calls`` (each pointing at its signature's table), and one (representative call, table with its width grids
    and ``ms`` zeros) per signature."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    calls = _layer_calls(model, graph, torch.zeros(1, *input_shape, device=device))
    sig_index: dict[str, int] = {}
    grids: list[tuple[_Call, LayerTable]] = []
    for c in calls:
        sig = c.signature()
        if sig in sig_index:
            continue
        sig_index[sig] = len(grids)
        full_in, full_out = c.widths
        m = c.layer
        mult = m.groups if isinstance(m, nn.modules.conv._ConvNd) and not c.depthwise else 1
        in_grid = _grid(full_in, c.in_var or c.depthwise, mult)
        out_grid = [full_out] if c.depthwise else _grid(full_out, c.out_var, mult)
        grids.append((c, LayerTable(sig, in_grid, out_grid, [[0.0] * len(out_grid) for _ in in_grid])))
    rows = [{"module": c.module, "in_channels": lc.in_channels, "out_channels": lc.out_channels, "rows": lc.rows,
             "table": sig_index[c.signature()]} for c, lc in zip(calls, graph.layers)]
    return calls, rows, grids
