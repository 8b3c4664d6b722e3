"""Measuring a latency profile: how long each conv/linear call of a model takes as a function of its widths, on
the device this runs on, and how the rest of the model adds up. The cost model built from it is
:class:`secateurs.cost.latency.LatencyModel`.

What is measured (the design, and why):

* **Per layer, a small grid of widths, timed in isolation.** Every conv/linear call of the channel graph's forward
  is reduced to a *signature* (layer type, full widths, kernel, stride, padding, input size): calls with the same
  signature share one table (ResNet-56's 58 conv/linear calls have 9). For each signature a fresh layer of the same
  configuration is timed at every (c_in, c_out) of ``GRID`` × full width (1 channel at the low end, and a
  point on each side of every multiple of 8, where a kernel's time steps: :func:`_grid`; only the widths a
  prunable group can change are varied; depthwise convs vary one width), all points of a table timed interleaved
  (:mod:`secateurs.timing`), each point's figure its best round (a short call on a busy CPU is either undisturbed
  or preempted; the median flips between the two once half the rounds are hit). The table is made monotone
  (a running minimum from the widest point down), so removing channels never predicts a slower layer: the selection and
  AutoBot's loss need that, and a layer that really is faster at some wider width (vector-length multiples) is
  the business of ``round_to``.
* **The whole model, at a few widths, calibrates the sum.** A layer inside a network runs with other operations
  around it (BatchNorm, activations, adds, caches shared with its neighbours) that isolated timing misses. The
  dense model and pruned copies at uniform and random widths are timed interleaved; the model is
  ``latency = constant + β · Σ layer tables + α · Σ (output elements per layer)``, fitted with β, α and
  constant ≥ 0 (by capping and falling back) and forced through the measured dense latency (so the model's dense
  cost *is* the measured dense latency, and the constant is the unprunable rest). The ``α`` term carries the
  elementwise work that scales with a layer's output; ``β`` the difference between a layer in isolation and in
  the network (and between the load while the tables and while the whole models were timed). Which of β, α are
  free is chosen by leave-one-out error (:func:`_fit`).
* **Held out.** Pruned copies at other random widths are timed in the same rounds and not used for the fit; their
  prediction error is stored with the profile (``validation``) and printed by ``secateurs profile``.

The profile itself (data, JSON, key, cache): :mod:`secateurs.cost.latency_profile`.
"""
from __future__ import annotations

import copy
import math
import random
import time
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import CheckpointError
from ..graph.groups import ChannelGraph
from .latency import LatencyModel
from .latency_profile import (DTYPES, RUNTIMES, TABLE_TIMINGS, LatencyProfile, LayerTable, _Call, cache_path,
                              layer_grids, profile_key, require_onnxruntime, runtime_dtype_problem)

__all__ = ["profile_latency", "cached_profile", "pruned_copy"]


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


def profile_latency(model: nn.Module, graph: ChannelGraph, input_shape: Sequence[int], *, batch_size: int = 1,
                    threads: int = 1, dtype: str = "float32", runtime: str = "torch", calibration: int = 2,
                    held_out: int = 3, seed: int = 0, layer_budget_s: float = 0.3, model_budget_s: float = 5.0,
                    min_rounds: int = 5, tables: str = "each",
                    log: Callable[[str], None] | None = None) -> LatencyProfile:
    """Measure a :class:`LatencyProfile` of ``model`` (with ``graph`` built on it) for batches of ``batch_size``
    × ``input_shape`` at ``threads`` threads; see the module docstring. ``calibration`` random-width copies join
    the uniform ones (75 / 50 / 30 %) in the fit; ``held_out`` more are only predicted and checked; whole models are
    timed for at least ``min_rounds`` rounds and ``model_budget_s`` seconds, each table for at least 3 rounds and
    ``layer_budget_s`` (``tables="each"``, the default: one table after another; ``"together"``: every table's
    points in one interleaved timing with the tables' budgets summed, which did not steady the plans:
    ``benchmarks/results/profile_spread_tables.md``). The model's device
    is the device measured (its dtype converted to ``dtype`` on copies)."""
    from ..timing import interleaved, time_models

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if tables not in TABLE_TIMINGS:
        raise ValueError(f"tables must be one of {TABLE_TIMINGS}, got {tables!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    problem = runtime_dtype_problem(runtime, dtype)
    if problem:
        raise ValueError(f"dtype {dtype!r} with runtime {runtime!r}: {problem}")
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
                          runtime=runtime, device=device, tables=tables)
        calls, call_rows, grids = layer_grids(model, graph, input_shape)
        gen = torch.Generator().manual_seed(seed)
        timed = _time_tables(grids, runtime=runtime, batch_size=batch_size, threads=threads, dtype=tdtype,
                             device=device, gen=gen, budget_s=layer_budget_s, tables=tables, log=log)
        profile = LatencyProfile(key, timed, call_rows, 1.0, 0.0, 0.0, 0.0)
        # whole models: dense, uniform and random widths for the fit, more random ones held out
        rng = random.Random(seed)
        fit_configs = [{}] + [_uniform(graph, f) for f in (0.75, 0.5, 0.3)] + \
                      [_random(graph, rng) for _ in range(calibration)]
        test_configs = [_random(graph, rng) for _ in range(held_out)]
        configs = fit_configs + test_configs
        models = [pruned_copy(model, graph, kept, input_shape, tdtype, device) for kept in configs]
        x = torch.randn(batch_size, *input_shape, generator=gen).to(device=device, dtype=tdtype)
        if runtime == "torch":
            whole = time_models(models, x, warmup=1, min_rounds=min_rounds, max_rounds=50, budget_s=model_budget_s)
        else:
            whole = interleaved([_runner(runtime, m, x, threads) for m in models], warmup=1,
                                min_rounds=min_rounds, max_rounds=50, budget_s=model_budget_s)
        # paired ratios (drift within a round cancels) on the dense model's best round (the tables' statistic)
        measured = [whole.best_ms[0] * r for r in whole.ratios]
        log(f"{len(models)} whole models timed ({whole.rounds} rounds)")
        lm = LatencyModel(graph, profile)
        feats = [lm.features(kept) for kept in configs]
        beta, alpha, form = _fit([f[0] for f in feats[:len(fit_configs)]],
                                 [f[1] for f in feats[:len(fit_configs)]], measured[:len(fit_configs)])
        profile.beta, profile.alpha, profile.dense_ms = beta, alpha, measured[0]
        # _fit holds it >= 0; max() drops a rounding residue at the bound (beta = ms_0 / sums_0), which would
        # otherwise make cached_profile measure this profile again on every call
        profile.constant_ms = max(0.0, measured[0] - beta * feats[0][0] - alpha * feats[0][1])
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
        profile.timing = whole.setting(batch_size=batch_size, runtime=runtime, dtype=dtype, tables=tables)
        profile.build_s = time.perf_counter() - start
        return profile
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)


def _time_tables(grids: Sequence[tuple[_Call, LayerTable]], *, runtime: str, batch_size: int, threads: int,
                 dtype: torch.dtype, device, gen: torch.Generator, budget_s: float, tables: str,
                 log: Callable[[str], None]) -> list[LayerTable]:
    """Time every table's (c_in, c_out) points, fill in each table's ``ms`` (its best round, made monotone) and
    return the tables.

    ``tables="together"``: all points of all tables in one :func:`~secateurs.timing.interleaved` run, so every
    round visits every layer and load that drifts over the seconds of a profile slows all tables alike (the
    relative prices, which decide which layer a plan cuts, are what the selection uses; a common slow-down is
    the calibration's β), at the price of holding every table's layers at once. ``"each"`` (the default): one
    table's points interleaved, then the next table's, so a table timed in a slow second could be priced high
    against one timed in a fast second; measured, that is not what moves the plans (5 profiles of each on
    ResNet-56 at batch 64: the same spread of plans and of held-out error, ``profile_spread_tables.md``).
    ``"each"`` builds, times and drops one table's layers at a time, each point with a fresh input (as before the
    option); ``"together"`` holds them all, and the points of one table and input width share their input."""
    from ..timing import interleaved

    def runners(c, table, shared_input):
        fns = []
        for ci in table.in_grid:
            x = None
            for co in table.out_grid:
                layer, shape = _fresh_layer(c, ci, co, dtype, device)
                if x is None or not shared_input:
                    x = torch.randn(batch_size, *shape, generator=gen).to(device=device, dtype=dtype)
                fns.append(_runner(runtime, layer, x, threads))
        return fns

    kw = dict(warmup=1, min_rounds=3, max_rounds=50, min_block_s=0.002, sub_blocks=1)
    best = []  # per table, its points' best-round ms, in (c_in, c_out) order
    if tables == "together":
        per = [runners(c, table, True) for c, table in grids]
        flat = interleaved([f for fns in per for f in fns], budget_s=budget_s * len(grids), **kw).best_ms
        for fns in per:
            best.append(flat[:len(fns)])
            flat = flat[len(fns):]
        log(f"{len(grids)} layer tables timed together ({sum(map(len, per))} widths)")
    else:  # one table built, timed and let go at a time, a fresh input per point
        for k, (c, table) in enumerate(grids):
            fns = runners(c, table, False)
            best.append(interleaved(fns, budget_s=budget_s, **kw).best_ms)
            log(f"layer {k + 1}/{len(grids)} timed ({len(fns)} widths)")
    out = []
    for (c, table), ms in zip(grids, best):
        n_out = len(table.out_grid)  # the best round: a busy machine only ever adds time to a short call
        table.ms = _monotone([ms[i * n_out:(i + 1) * n_out] for i in range(len(table.in_grid))])
        out.append(table)
    return out


def _monotone(ms: list[list[float]]) -> list[list[float]]:
    """Running minimum from the widest point down, along both widths: a narrower layer is never predicted slower
    than a wider one. The minimum, not a running maximum from below: load only ever adds time, and a maximum would
    carry one disturbed narrow point up to every wider width (a whole table flattened by one spike)."""
    out = [list(r) for r in ms]
    for i in reversed(range(len(out))):
        for j in reversed(range(len(out[i]))):
            if i + 1 < len(out):
                out[i][j] = min(out[i][j], out[i + 1][j])
            if j + 1 < len(out[i]):
                out[i][j] = min(out[i][j], out[i][j + 1])
    return out


def _fit(sums: Sequence[float], elems: Sequence[float], ms: Sequence[float]) -> tuple[float, float, str]:
    """β, α ≥ 0 and a constant ≥ 0 for ``ms_k - ms_0 ≈ β (sums_k - sums_0) + α (elems_k - elems_0)`` (through
    the dense point 0).

    Three forms compete: β alone, β and α, and α with β = 1 (the isolated tables taken at face value); the one with
    the smallest leave-one-out error wins and is refitted on every point. With a handful of points timed on a busy
    machine the two-parameter form can chase noise (an α that explains everything and β = 0); cross-validation
    keeps it only where it predicts points it did not see.

    The constant (``ms_0 - β sums_0 - α elems_0``) is held ≥ 0 as β and α are: a fit that explains more than the
    dense latency extrapolates below 0 ms towards the smallest widths (VGG-16 at batch 64 here: β 0.88 and α with a
    constant of -5 ms, so one channel per group predicted -2.8 ms and a reachable reduction of 1.009). The bounds
    are enforced by capping and falling back, not by a constrained least-squares fit: β alone is capped at
    ``ms_0 / sums_0``, α (β = 1) at the rest of the dense latency, and the two-parameter form, like a negative
    coefficient, falls back to β alone. Returns (β, α, the form used: the refit's, after any fallback)."""
    pts = [(s - sums[0], e - elems[0], m - ms[0]) for s, e, m in zip(sums[1:], elems[1:], ms[1:])]
    beta_cap = ms[0] / sums[0] if sums[0] > 0 else math.inf

    def rest(b, a):  # the constant the fit implies
        return ms[0] - b * sums[0] - a * elems[0]

    def solve(form, data) -> tuple[float, float, str]:
        sxx = sum(x * x for x, _, _ in data)
        szz = sum(z * z for _, z, _ in data)
        sxz = sum(x * z for x, z, _ in data)
        sxy = sum(x * y for x, _, y in data)
        szy = sum(z * y for _, z, y in data)
        if form == "beta":
            return min(beta_cap, max(0.0, sxy / sxx) if sxx > 0 else 1.0), 0.0, "beta"
        if form == "alpha":  # β = 1: fit the residual y - x on z
            if rest(1.0, 0.0) < 0:
                return solve("beta", data)
            r = sum(z * (y - x) for x, z, y in data)
            a = max(0.0, r / szz) if szz > 0 else 0.0
            return 1.0, (min(a, rest(1.0, 0.0) / elems[0]) if elems[0] > 0 else a), "alpha"
        det = sxx * szz - sxz * sxz
        if det <= 1e-12 * max(sxx * szz, 1e-300):
            return solve("beta", data)
        b, a = (sxy * szz - szy * sxz) / det, (szy * sxx - sxy * sxz) / det
        return (b, a, "beta+alpha") if b >= 0 and a >= 0 and rest(b, a) >= 0 else solve("beta", data)

    def loo(form):
        err = 0.0
        for k, (x, z, y) in enumerate(pts):
            b, a, _ = solve(form, pts[:k] + pts[k + 1:])
            err += (y - b * x - a * z) ** 2
        return err

    if not pts:
        return min(1.0, beta_cap), 0.0, "beta"
    return solve(min(("beta", "alpha", "beta+alpha"), key=loo) if len(pts) > 2 else "beta", pts)


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


def pruned_copy(model: nn.Module, graph: ChannelGraph, kept: Mapping[str, Sequence[int]], input_shape,
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
    that does not validate, or whose key differs, is measured again and replaced; so is one fitted with a negative
    constant (written before :func:`_fit` held it ≥ 0)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    key = profile_key(model, graph, input_shape, batch_size=batch_size, threads=threads, dtype=dtype,
                      runtime=runtime, device=device, tables=kw.get("tables", "each"))
    path = cache_path(key)
    say = log or (lambda s: None)
    if path.exists() and not rebuild:
        try:
            prof = LatencyProfile.load(path)
            if prof.key == key:
                if not prof.negative_constant:
                    return prof
                say(f"latency cache {path} was fitted with a negative constant ({prof.constant_ms:.4g} ms); "
                    "measuring again")
        except CheckpointError as e:
            say(f"latency cache {path} is not valid ({e}); measuring again")
    prof = profile_latency(model, graph, input_shape, batch_size=batch_size, threads=threads, dtype=dtype,
                           runtime=runtime, log=log, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.save(path)
    return prof
