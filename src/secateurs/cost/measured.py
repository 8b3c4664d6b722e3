"""Closing the loop on a latency target: time the real pruned model against the dense one and correct the request.

A latency model predicts; the promise to the user is about the *measured* latency. :func:`meet_latency` asks a
selection for a predicted reduction, times the pruned model interleaved with the dense one
(:func:`measure_latency`: paired ratios, the same runtime and setting as the profile), and, while the measured
reduction misses the target by more than the tolerance, asks again with a request corrected by the measured
points (the first correction shifts the request by the miss; later ones interpolate the two nearest measured
points, a secant step on "measured as a function of requested", kept inside the bracket of requests measured on
either side of the target once there is one, in order), for a bounded number of rounds. The result
keeps every round, so a report can show the path, and the best round (within tolerance, else the nearest).

Measured acceptance is symmetric, ``|measured − R| ≤ tolerance``: timing noise on a shared machine is a few per
cent, so a one-sided budget ``[R, R + 0.01]`` cannot be verified by a measurement; the predicted selection inside
each round keeps the budget window of its target.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

__all__ = ["MeasuredLatency", "LatencyRound", "LatencyLoop", "measure_latency", "meet_latency", "ms_goal"]


@dataclass(frozen=True)
class MeasuredLatency:
    """Dense and pruned median ms, the paired ratio pruned / dense, and the setting they were measured under."""

    dense_ms: float
    pruned_ms: float
    ratio: float
    setting: dict[str, Any]

    @property
    def reduction(self) -> float:
        return 1.0 - self.ratio


def measure_latency(dense: nn.Module, pruned: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1,
                    threads: int = 1, runtime: str = "torch", dtype: str = "float32", budget_s: float = 3.0,
                    min_rounds: int = 5) -> MeasuredLatency:
    """Time ``dense`` and ``pruned`` interleaved on one random batch (:mod:`secateurs.timing`) in ``runtime``."""
    import copy

    from ..timing import interleaved, time_models
    from .latency_profile import DTYPES, runtime_dtype_problem
    from .profiling import _runner

    problem = runtime_dtype_problem(runtime, dtype)
    if problem:
        raise ValueError(f"dtype {dtype!r} with runtime {runtime!r}: {problem}")
    device = next((p.device for p in dense.parameters()), torch.device("cpu"))
    tdtype = DTYPES[dtype]
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).to(device, tdtype)
    models = [m if next((p.dtype for p in m.parameters()), tdtype) == tdtype else copy.deepcopy(m).to(dtype=tdtype)
              for m in (dense, pruned)]
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        if runtime == "torch":
            t = time_models(models, x, warmup=1, min_rounds=min_rounds, max_rounds=200, budget_s=budget_s)
        else:
            modes = [m.training for m in models]
            try:
                fns = [_runner(runtime, m, x, threads) for m in models]
            finally:
                for m, mode in zip(models, modes):
                    m.train(mode)
            t = interleaved(fns, warmup=1, min_rounds=min_rounds, max_rounds=200, budget_s=budget_s)
    finally:
        torch.set_num_threads(old)
    return MeasuredLatency(t.ms[0], t.ms[1], t.ratios[1],
                           t.setting(batch_size=batch_size, runtime=runtime, dtype=dtype))


@dataclass(frozen=True)
class LatencyRound:
    requested: float  # the predicted reduction asked of the selection
    predicted: float  # the predicted reduction of what it selected
    measured: MeasuredLatency

    def to_dict(self) -> dict:
        m = self.measured
        return {"requested_reduction": self.requested, "predicted_reduction": self.predicted,
                "measured_reduction": m.reduction, "latency_ms_dense": m.dense_ms, "latency_ms_measured": m.pruned_ms,
                "loadavg_before": m.setting.get("loadavg_before"), "loadavg_after": m.setting.get("loadavg_after")}


@dataclass
class LatencyLoop:
    """Every round of :func:`meet_latency`, the index of the one chosen, and the selection it made."""

    target: float
    tolerance: float
    rounds: list[LatencyRound] = field(default_factory=list)
    best: int = -1
    selection: Any = None

    @property
    def met(self) -> bool:
        return self.best >= 0 and abs(self.rounds[self.best].measured.reduction - self.target) <= self.tolerance

    @property
    def chosen(self) -> LatencyRound:
        return self.rounds[self.best]

    def to_dict(self) -> dict:
        return {"target_reduction": self.target, "tolerance": self.tolerance, "met": self.met, "chosen": self.best,
                "rounds": [r.to_dict() for r in self.rounds]}


def meet_latency(select: Callable[[float], tuple[Any, float]], measure: Callable[[Any], MeasuredLatency], *,
                 target: float, tolerance: float = 0.05, max_rounds: int = 3, reachable: float = 1.0,
                 log: Callable[[str], None] | None = None, start: float | None = None,
                 target_ms: float | None = None) -> LatencyLoop:
    """Rounds of ``select(requested) -> (selection, predicted reduction)`` and ``measure(selection)`` until the
    measured reduction is within ``tolerance`` of ``target`` (see the module docstring). Requests stay within
    ``[0, reachable]``; a request that repeats an earlier one ends the loop (nothing new to learn), and so does a
    corrected request for which ``select`` returns ``None`` (no selection meets it). ``start``: the first request
    (default ``target``; another when the selection's reduction is of another cost, e.g. MACs). ``target_ms``: the
    goal is a latency in ms; ``target`` is its first estimate (from a predicted dense latency), re-derived after the
    first round as ``1 - target_ms / dense ms measured there`` so that a met loop's pruned ms is within
    ``tolerance`` (of the dense latency) of ``target_ms``; ``loop.target`` is the fraction used."""
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    loop = LatencyLoop(target, tolerance)
    requested, selections = (target if start is None else start), []
    for k in range(max_rounds):
        chosen = select(requested)
        if chosen is None:
            if k == 0:
                raise ValueError("select returned nothing for the target itself")
            break
        selection, predicted = chosen
        measured = measure(selection)
        if target_ms is not None and k == 0:
            target = loop.target = ms_goal(target_ms, measured.dense_ms)
            if log:
                log(f"target {target_ms:.4g} ms = reduction {target:.3f} of the dense {measured.dense_ms:.4g} ms "
                    "measured in round 1")
        loop.rounds.append(LatencyRound(requested, predicted, measured))
        selections.append(selection)
        if log:
            log(f"latency round {k + 1}: requested {requested:.3f}, predicted {predicted:.3f}, measured "
                f"{measured.reduction:.3f} (target {target:.3f} ± {tolerance:.3f})")
        if abs(measured.reduction - target) <= tolerance or k == max_rounds - 1:
            break
        nxt = min(max(_next_request(loop.rounds, target), 0.0), reachable)
        if any(abs(nxt - r.requested) < 1e-4 for r in loop.rounds):
            break
        requested = nxt
    loop.best = min(range(len(loop.rounds)), key=lambda i: abs(loop.rounds[i].measured.reduction - target))
    loop.selection = selections[loop.best]
    return loop


def ms_goal(target_ms: float, dense_ms: float) -> float:
    """The reduction a target of ``target_ms`` asks of a model whose dense latency measured ``dense_ms``."""
    return max(0.0, 1.0 - target_ms / dense_ms)


def _next_request(rounds: Sequence[LatencyRound], target: float) -> float:
    """The request expected to measure ``target``. Once rounds on both sides of the target bracket it (the highest
    request measured below, the lowest measured above, in that order), the next request stays inside the bracket:
    the secant through its two ends, or its midpoint when the secant lands in the outer tenth at either end
    (a measured latency can jump where a kernel changes algorithm at some width, and an unbracketed secant then
    oscillates across the jump). Before that: the shift by the miss after one round, then the secant through the
    two rounds measured nearest the target (a flat or inverted secant falls back to the shift)."""
    last = rounds[-1]
    shift = last.requested + (target - last.measured.reduction)
    if len(rounds) < 2:
        return shift
    below = [r for r in rounds if r.measured.reduction < target]
    above = [r for r in rounds if r.measured.reduction > target]
    if below and above:
        lo = max(below, key=lambda r: r.requested)
        hi = min(above, key=lambda r: r.requested)
        width = hi.requested - lo.requested
        if width > 0:
            dm = hi.measured.reduction - lo.measured.reduction
            guess = lo.requested + (target - lo.measured.reduction) * width / dm
            if not (lo.requested + 0.1 * width <= guess <= hi.requested - 0.1 * width):
                guess = lo.requested + 0.5 * width
            return guess
    a, b = sorted(rounds, key=lambda r: abs(r.measured.reduction - target))[:2]
    dm = b.measured.reduction - a.measured.reduction
    dr = b.requested - a.requested
    if abs(dr) < 1e-9 or dm / dr <= 0.05:  # measured must grow with requested: else the points are noise
        return shift
    return a.requested + (target - a.measured.reduction) * dr / dm
