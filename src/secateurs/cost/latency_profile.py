"""Measuring a latency profile: how long each conv/linear call of a model takes as a function of its widths, on
the device this runs on, and how the rest of the model adds up. The cost model built from it is
:class:`secateurs.cost.latency.LatencyModel`.

What is measured (the design, and why):

* **Per layer, a small grid of widths, timed in isolation.** Every conv/linear call of the channel graph's forward
  is reduced to a *signature* (layer type, full widths, kernel, stride, padding, input size): calls with the same
  signature share one table (ResNet-56's 58 conv/linear calls have 9). For each signature a fresh layer of the same
  configuration is timed at every (c_in, c_out) of ``GRID`` × full width (1 channel at the low end, and one
  below each multiple of 8, where libraries switch algorithms: :func:`_grid`; only the widths a prunable group can
  change are varied; depthwise convs vary one width), all points of a table timed interleaved
  (:mod:`secateurs.timing`), each point's figure its best round (a short call on a busy CPU is either undisturbed
  or preempted; the median flips between the two once half the rounds are hit). The table is made monotone
  (a running maximum along each width), so removing channels never predicts a slower layer: the selection and
  AutoBot's loss need that, and a layer that really is faster at some wider width (vector-length multiples) is
  the business of ``round_to``.
* **The whole model, at a few widths, calibrates the sum.** A layer inside a network runs with other operations
  around it (BatchNorm, activations, adds, caches shared with its neighbours) that isolated timing misses. The
  dense model and pruned copies at uniform and random widths are timed interleaved; the model is
  ``latency = constant + β · Σ layer tables + α · Σ (output elements per layer)``, fitted with β, α ≥ 0 and
  forced through the measured dense latency (so the model's dense cost *is* the measured dense latency, and the
  constant is the unprunable rest). The ``α`` term carries the elementwise work that scales with a layer's output;
  ``β`` the difference between a layer in isolation and in the network (and between the load while the tables and
  while the whole models were timed). Which of β, α are free is chosen by leave-one-out error (:func:`_fit`).
* **Held out.** Pruned copies at other random widths are timed in the same rounds and not used for the fit; their
  prediction error is stored with the profile (``validation``) and printed by ``secateurs profile``.

Profiles are JSON (:meth:`LatencyProfile.to_dict`), validated on load, and cached under ``$SECATEURS_CACHE`` or
``~/.cache/secateurs/latency`` keyed by device, threads, batch, dtype, runtime, versions and the model's layers.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import CheckpointError
from ..graph.groups import ChannelGraph

__all__ = ["LatencyProfile", "LayerTable", "profile_latency", "layer_grids", "cached_profile", "cache_dir",
           "cache_path", "profile_key",
           "RUNTIMES", "DTYPES", "GRID"]

FORMAT = "secateurs-latency-profile"
VERSION = 1
RUNTIMES = ("torch", "onnxruntime")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
GRID = (0.25, 0.5, 0.75, 1.0)  # fractions of the full width, plus 1 channel: 5 points per varied width
MAX_LAYERS = 100_000
MAX_GRID = 64


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
        if not _finite(fit.get("constant_ms")):
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


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _nonneg(v) -> bool:
    return _finite(v) and v >= 0


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


def _grid(full: int, varied: bool, multiple: int = 1) -> list[int]:
    """Widths to time: 1 (or ``multiple``), ``GRID`` x full, and one below every point that is a multiple of 8.

    Convolution libraries switch algorithms (and blocked layouts) at vector-friendly widths, so the time of a
    layer can step between 15 and 16 channels. A point just below each multiple of 8 lets the table carry such a
    step instead of smearing it over a whole segment."""
    if not varied or full <= 1:
        return [full]
    pts = {max(multiple, int(round(f * full / multiple)) * multiple) for f in GRID} | {multiple}
    pts |= {p - multiple for p in pts if p % 8 == 0 and p - multiple >= multiple}
    return sorted(p for p in pts if p <= full)


# --- runtimes --------------------------------------------------------------------------------------------------

def _runner(runtime: str, module: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], Any]:
    """A zero-argument callable running ``module`` on ``x`` in ``runtime``."""
    module = module.eval()
    if runtime == "torch":
        def run():
            with torch.inference_mode():
                module(x)
        return run
    ort = require_onnxruntime()
    import io

    import warnings

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices, once per layer width
        torch.onnx.export(module, (x,), buf, input_names=["x"], output_names=["y"], dynamo=False,
                          do_constant_folding=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    # input and output bound once (IOBinding): no copy in or out per run, which an isolated layer would pay in
    # proportion to its widths and a layer inside a whole network does not
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(x.detach().cpu().contiguous().numpy()))
    with torch.no_grad():
        y = module(x)
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_shape_and_type(list(y.shape), y.numpy().dtype))
    return lambda: sess.run_with_iobinding(binding)


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
    name = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu:{platform.machine()}:{name or 'unknown'}"


def profile_key(model: nn.Module, graph: ChannelGraph, input_shape: Sequence[int], *, batch_size: int,
                threads: int, dtype: str = "float32", runtime: str = "torch",
                device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a profile is valid for: device, threads, batch, dtype, runtime, versions, and the model (a hash of its
    layer calls' signatures and input shape: any checkpoint of the same architecture shares a profile)."""
    calls = _layer_calls(model, graph, torch.zeros(1, *input_shape))
    arch = json.dumps([list(input_shape)] + [c.signature() for c in calls])
    return {"device": device_name(device), "threads": int(threads), "batch_size": int(batch_size),
            "dtype": dtype, "runtime": runtime, **_versions(runtime),
            "model": hashlib.sha256(arch.encode()).hexdigest()[:20], "input_shape": list(input_shape)}


def cache_dir() -> Path:
    """``$SECATEURS_CACHE/latency``, else ``~/.cache/secateurs/latency`` (never next to a user's checkpoint)."""
    root = os.environ.get("SECATEURS_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "secateurs") / "latency"


def cache_path(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / f"{key['model'][:12]}-b{key['batch_size']}-t{key['threads']}-{key['runtime']}-{digest}.json"


# --- measuring ---------------------------------------------------------------------------------------------------

def _fresh_layer(call: _Call, c_in: int, c_out: int, dtype: torch.dtype, device) -> tuple[nn.Module, torch.Tensor]:
    """A new layer like ``call``'s at widths (c_in, c_out), and a random input for it (batch dim 1; the caller
    expands it)."""
    m = call.layer
    if isinstance(m, nn.Linear):
        layer = nn.Linear(c_in, c_out, bias=m.bias is not None)
        x_shape = (*call.in_shape[:-1], c_in)
    else:
        groups = c_in if call.depthwise else m.groups
        if call.depthwise:
            c_out = c_in
        layer = type(m)(c_in, c_out, m.kernel_size, m.stride, m.padding, m.dilation, groups, m.bias is not None,
                        m.padding_mode)
        x_shape = (c_in, *call.in_shape[1:])
    return layer.to(device=device, dtype=dtype), x_shape


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


def profile_latency(model: nn.Module, graph: ChannelGraph, input_shape: Sequence[int], *, batch_size: int = 1,
                    threads: int = 1, dtype: str = "float32", runtime: str = "torch", calibration: int = 2,
                    held_out: int = 3, seed: int = 0, layer_budget_s: float = 0.3, model_budget_s: float = 5.0,
                    min_rounds: int = 5,
                    log: Callable[[str], None] | None = None) -> LatencyProfile:
    """Measure a :class:`LatencyProfile` of ``model`` (with ``graph`` built on it) for batches of ``batch_size``
    × ``input_shape`` at ``threads`` threads; see the module docstring. ``calibration`` random-width copies join
    the uniform ones (75 / 50 / 30 %) in the fit; ``held_out`` more are only predicted and checked; whole models are
    timed for at least ``min_rounds`` rounds and ``model_budget_s`` seconds, each table for at least 3 rounds and
    ``layer_budget_s``. The model's device is the device measured (its dtype converted to ``dtype`` on copies)."""
    from ..timing import interleaved, time_models

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if runtime == "onnxruntime":
        require_onnxruntime()
    start = time.perf_counter()
    log = log or (lambda s: None)
    tdtype = DTYPES[dtype]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if runtime == "onnxruntime" and device.type != "cpu":
        raise ValueError("runtime 'onnxruntime' is measured on the CPU; move the model to the CPU")
    was_training = model.training
    model.eval()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        key = profile_key(model, graph, input_shape, batch_size=batch_size, threads=threads, dtype=dtype,
                          runtime=runtime, device=device)
        calls, call_rows, grids = layer_grids(model, graph, input_shape)
        tables: list[LayerTable] = []
        gen = torch.Generator().manual_seed(seed)
        for k, (c, table) in enumerate(grids):
            fns, shape = [], None
            for ci in table.in_grid:
                for co in table.out_grid:
                    layer, shape = _fresh_layer(c, ci, co, tdtype, device)
                    x = torch.randn(batch_size, *shape, generator=gen).to(device=device, dtype=tdtype)
                    fns.append(_runner(runtime, layer, x, threads))
            t = interleaved(fns, warmup=1, min_rounds=3, max_rounds=50, budget_s=layer_budget_s,
                            min_block_s=0.002, sub_blocks=1)  # the table takes the best round anyway
            n_out = len(table.out_grid)  # the best round: a busy machine only ever adds time to a short call
            table.ms = _monotone([t.best_ms[i * n_out:(i + 1) * n_out] for i in range(len(table.in_grid))])
            tables.append(table)
            log(f"layer {k + 1}/{len(grids)} timed ({len(fns)} widths)")
        profile = LatencyProfile(key, tables, call_rows, 1.0, 0.0, 0.0, 0.0)
        # whole models: dense, uniform and random widths for the fit, more random ones held out
        rng = random.Random(seed)
        fit_configs = [{}] + [_uniform(graph, f) for f in (0.75, 0.5, 0.3)] + \
                      [_random(graph, rng) for _ in range(calibration)]
        test_configs = [_random(graph, rng) for _ in range(held_out)]
        configs = fit_configs + test_configs
        models = [_pruned_copy(model, graph, kept, input_shape, tdtype, device) for kept in configs]
        x = torch.randn(batch_size, *input_shape, generator=gen).to(device=device, dtype=tdtype)
        if runtime == "torch":
            whole = time_models(models, x, warmup=1, min_rounds=min_rounds, max_rounds=50, budget_s=model_budget_s)
        else:
            whole = interleaved([_runner(runtime, m, x, threads) for m in models], warmup=1,
                                min_rounds=min_rounds, max_rounds=50, budget_s=model_budget_s)
        # paired ratios (drift within a round cancels) on the dense model's best round (the tables' statistic)
        measured = [whole.best_ms[0] * r for r in whole.ratios]
        log(f"{len(models)} whole models timed ({whole.rounds} rounds)")
        from .latency import LatencyModel

        lm = LatencyModel(graph, profile)
        feats = [lm.features(kept) for kept in configs]
        beta, alpha, form = _fit([f[0] for f in feats[:len(fit_configs)]],
                                 [f[1] for f in feats[:len(fit_configs)]], measured[:len(fit_configs)])
        profile.beta, profile.alpha, profile.dense_ms = beta, alpha, measured[0]
        profile.constant_ms = measured[0] - beta * feats[0][0] - alpha * feats[0][1]
        lm = LatencyModel(graph, profile)
        from .macs import MacsModel

        macs = MacsModel(graph)
        rows = []
        for kept, got, (s, _) in zip(configs, measured, feats):
            pred = lm.exact(kept)
            # two simpler predictors beside the model, to show what the fit buys (secateurs profile, benchmarks):
            # latency proportional to MACs, and the isolated tables at face value (beta 1, alpha 0)
            rows.append({"predicted_ms": pred, "measured_ms": got, "error": pred / got - 1,
                         "fraction_kept": _kept_fraction(graph, kept),
                         "macs_ratio": macs.exact(kept) / macs.dense,
                         "tables_only_ms": measured[0] + s - feats[0][0],
                         "kept": {g: len(idx) for g, idx in kept.items()}})
        test = rows[len(fit_configs):]
        profile.validation = {
            "form": form, "fit": rows[:len(fit_configs)], "held_out": test,
            "mean_abs_error_pct": 100 * sum(abs(r["error"]) for r in test) / max(len(test), 1),
            "max_abs_error_pct": 100 * max((abs(r["error"]) for r in test), default=0.0)}
        profile.timing = whole.setting(batch_size=batch_size, runtime=runtime, dtype=dtype)
        profile.build_s = time.perf_counter() - start
        return profile
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)


def _monotone(ms: list[list[float]]) -> list[list[float]]:
    """Running maximum along both widths: a narrower layer is never predicted slower than a wider one."""
    out = [list(r) for r in ms]
    for i in range(len(out)):
        for j in range(len(out[i])):
            if i:
                out[i][j] = max(out[i][j], out[i - 1][j])
            if j:
                out[i][j] = max(out[i][j], out[i][j - 1])
    return out


def _fit(sums: Sequence[float], elems: Sequence[float], ms: Sequence[float]) -> tuple[float, float, str]:
    """β, α ≥ 0 for ``ms_k - ms_0 ≈ β (sums_k - sums_0) + α (elems_k - elems_0)`` (through the dense point 0).

    Three forms compete: β alone, β and α, and α with β = 1 (the isolated tables taken at face value); the one with
    the smallest leave-one-out error wins and is refitted on every point. With a handful of points timed on a busy
    machine the two-parameter form can chase noise (an α that explains everything and β = 0); cross-validation
    keeps it only where it predicts points it did not see. Returns (β, α, form)."""
    pts = [(s - sums[0], e - elems[0], m - ms[0]) for s, e, m in zip(sums[1:], elems[1:], ms[1:])]

    def solve(form, data):
        sxx = sum(x * x for x, _, _ in data)
        szz = sum(z * z for _, z, _ in data)
        sxz = sum(x * z for x, z, _ in data)
        sxy = sum(x * y for x, _, y in data)
        szy = sum(z * y for _, z, y in data)
        if form == "beta":
            return (max(0.0, sxy / sxx) if sxx > 0 else 1.0), 0.0
        if form == "alpha":  # β = 1: fit the residual y - x on z
            r = sum(z * (y - x) for x, z, y in data)
            return 1.0, (max(0.0, r / szz) if szz > 0 else 0.0)
        det = sxx * szz - sxz * sxz
        if det <= 1e-12 * max(sxx * szz, 1e-300):
            return solve("beta", data)
        b, a = (sxy * szz - szy * sxz) / det, (szy * sxx - sxy * sxz) / det
        return (b, a) if b >= 0 and a >= 0 else solve("beta", data)

    def loo(form):
        err = 0.0
        for k, (x, z, y) in enumerate(pts):
            b, a = solve(form, pts[:k] + pts[k + 1:])
            err += (y - b * x - a * z) ** 2
        return err

    if not pts:
        return 1.0, 0.0, "beta"
    form = min(("beta", "alpha", "beta+alpha"), key=loo) if len(pts) > 2 else "beta"
    return (*solve(form, pts), form)


def _uniform(graph: ChannelGraph, f: float) -> dict[str, list[int]]:
    return {g.id: list(range(max(1, round(f * g.width)))) for g in graph.prunable_groups()}


def _random(graph: ChannelGraph, rng: random.Random) -> dict[str, list[int]]:
    """Random widths around a random overall level (so configurations span light to heavy pruning, and groups
    within one differ): level ~ U(0.2, 0.95), each group's kept fraction level x U(0.6, 1.4), within (0, 1]."""
    level = rng.uniform(0.2, 0.95)
    return {g.id: sorted(rng.sample(range(g.width),
                                    max(1, min(g.width, round(level * rng.uniform(0.6, 1.4) * g.width)))))
            for g in graph.prunable_groups()}


def _kept_fraction(graph: ChannelGraph, kept: Mapping[str, Sequence[int]]) -> float:
    total = sum(g.width for g in graph.prunable_groups())
    return sum(len(kept.get(g.id, range(g.width))) for g in graph.prunable_groups()) / max(total, 1)


def _pruned_copy(model: nn.Module, graph: ChannelGraph, kept: Mapping[str, Sequence[int]], input_shape,
                 dtype: torch.dtype, device) -> nn.Module:
    from ..structured.apply import apply_plan
    from ..structured.plan import PruningPlan

    m = copy.deepcopy(model)
    if kept:
        apply_plan(m, PruningPlan.from_kept(graph, kept), torch.zeros(1, *input_shape, device=device), graph=graph,
                   verify=False)
    return m.to(dtype=dtype).eval()


def cached_profile(model: nn.Module, graph: ChannelGraph, input_shape: Sequence[int], *, batch_size: int = 1,
                   threads: int = 1, dtype: str = "float32", runtime: str = "torch", rebuild: bool = False,
                   log: Callable[[str], None] | None = None, **kw) -> LatencyProfile:
    """The cached profile for this key (see :func:`profile_key`), or a new one measured and cached. A cache file
    that does not validate, or whose key differs, is measured again and replaced."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    key = profile_key(model, graph, input_shape, batch_size=batch_size, threads=threads, dtype=dtype,
                      runtime=runtime, device=device)
    path = cache_path(key)
    if path.exists() and not rebuild:
        try:
            prof = LatencyProfile.load(path)
            if prof.key == key:
                return prof
        except CheckpointError as e:
            (log or (lambda s: None))(f"latency cache {path} is not valid ({e}); measuring again")
    prof = profile_latency(model, graph, input_shape, batch_size=batch_size, threads=threads, dtype=dtype,
                           runtime=runtime, log=log, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.save(path)
    return prof
