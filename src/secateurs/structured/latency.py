"""Pruning to a latency target: the latency cost model of the device, the target in ms or as a fraction, and the
measured check that closes the loop (``cost.measured.meet_latency``).

The front door (``structured.prune(..., latency_reduction=R)`` or ``target_latency_ms=T``) calls
:func:`latency_model` for the cost model (a cached profile of this machine for the batch size, threads, dtype
and runtime of :class:`LatencyConfig`, or the one given), :func:`latency_target` for the ``Target``, and
:func:`prune_to_latency` to select, time the real pruned network against the dense one, and correct. See
docs/latency.md.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .._schema import is_number
from ..errors import ArgumentError
from .candidates import RECOVERY_STEPS
from .target import Target

if TYPE_CHECKING:
    import torch.nn as nn

    from ..cost.latency import LatencyModel
    from ..cost.latency_profile import LatencyProfile
    from ..cost.measured import LatencyLoop
    from ..graph.groups import ChannelGraph
    from .select import Selection

__all__ = ["LatencyConfig", "latency_model", "latency_target", "prune_to_latency", "latency_summary",
           "heavy_plan", "SUMMARY_FIELDS", "HEAVY_MACS"]

LATENCY_TOLERANCE = 0.02

# a latency-targeted plan that removes at least this fraction of the MACs warns (``heavy_plan``). Measured
# (docs/latency.md): MobileNetV2 at batch 1, 50 % took 97 % of the MACs and no plan recovered (10.8-27.1 % after
# fine-tuning); ResNet-20 (dense 92.5 %) at batch 1, 50 %: 85-93 % of the MACs, 77-85 % after fine-tuning; at
# batch 64, 50 %: 79 %, 86-88 %.
HEAVY_MACS = 0.9

# the summary.json fields of a latency target (docs/summary.md); null in a run with a MACs target
SUMMARY_FIELDS = ("requested_latency_reduction", "requested_latency_ms", "latency_ms_dense", "latency_ms_measured",
                  "latency_ms_predicted", "latency_ms_dense_predicted", "latency_reduction",
                  "latency_reduction_predicted", "latency_target_met", "latency_tolerance", "latency_setting",
                  "latency_rounds", "latency_profile", "latency_target_reduction", "latency_candidates",
                  "latency_plan_cost", "latency_reachable")


@dataclass(frozen=True)
class LatencyConfig:
    """The setting a latency target holds for, and how it is checked.

    ``batch_size``, ``threads``, ``runtime`` ("torch" | "onnxruntime"), ``dtype``: what the latency is of.
    ``tolerance``: the measured reduction must land within ``± tolerance`` of the target (timing noise makes a
    one-sided check unverifiable); ``rounds``: measure-and-correct rounds at most; ``budget_s``: seconds of timing
    per round; ``profile``: a ``LatencyProfile`` or the path of one (``secateurs profile --out``), else the cached
    profile of this machine is used or measured. ``free``: the criteria's ranking keeps the channels that cost at
    most this fraction of their group's mean channel (``structured.select._free``; None: ``FREE_FRACTION``; 0:
    off); AutoBot's threshold search never restores channels its gates closed. ``compare_macs``: also build the
    same method's MACs-priced plan at the latency the first plan measured and keep the one with the lower
    validation loss (``structured.candidates``; the front door ``prune`` only); ``recovery_steps``: where both
    plans score near chance after BatchNorm re-estimation, score them again after this many steps of fine-tuning
    (``candidates.RECOVERY_STEPS``; 0: never)."""

    batch_size: int = 1
    threads: int = 1
    runtime: str = "torch"
    dtype: str = "float32"
    tolerance: float = 0.05
    rounds: int = 5
    budget_s: float = 3.0
    profile: Any = None
    free: float | None = None
    compare_macs: bool = True
    recovery_steps: int = RECOVERY_STEPS

    def __post_init__(self) -> None:
        from ..cost.latency_profile import DTYPES, RUNTIMES

        checks = [("latency_batch_size", self.batch_size, isinstance(self.batch_size, int) and self.batch_size >= 1),
                  ("threads", self.threads, isinstance(self.threads, int) and self.threads >= 1),
                  ("runtime", self.runtime, self.runtime in RUNTIMES),
                  ("dtype", self.dtype, self.dtype in DTYPES),
                  ("latency_tolerance", self.tolerance, is_number(self.tolerance) and 0 < self.tolerance < 1),
                  ("latency_rounds", self.rounds, isinstance(self.rounds, int) and self.rounds >= 1),
                  ("budget_s", self.budget_s, is_number(self.budget_s) and self.budget_s >= 0),
                  ("free", self.free, self.free is None or (is_number(self.free) and 0 <= self.free < 1)),
                  ("compare_macs", self.compare_macs, isinstance(self.compare_macs, bool)),
                  ("recovery_steps", self.recovery_steps, isinstance(self.recovery_steps, int)
                   and not isinstance(self.recovery_steps, bool) and 0 <= self.recovery_steps <= 100_000)]
        for name, value, ok in checks:
            if not ok:
                raise ArgumentError(name, value, "invalid value")
        from ..cost.latency_profile import runtime_dtype_problem

        problem = runtime_dtype_problem(self.runtime, self.dtype)
        if problem:
            raise ArgumentError("dtype", self.dtype, f"with runtime {self.runtime!r}: {problem}")
        if self.runtime == "onnxruntime":
            from ..cost.latency_profile import require_onnxruntime

            try:
                require_onnxruntime()
            except ImportError as e:
                raise ArgumentError("runtime", self.runtime, str(e)) from None

    def setting(self) -> dict:
        return {"batch_size": self.batch_size, "threads": self.threads, "runtime": self.runtime, "dtype": self.dtype}


def latency_model(model: "nn.Module", graph: "ChannelGraph", input_shape: Sequence[int], config: LatencyConfig,
                  log: Callable[[str], None] | None = None) -> "LatencyModel":
    """The latency cost model of ``graph`` for ``config``: from ``config.profile`` (a profile or its path) or the
    cache of this machine (measured now if absent). A given profile must be for this architecture and setting."""
    from ..cost.latency import LatencyModel
    from ..cost.latency_profile import LatencyProfile
    from ..cost.profiling import cached_profile

    prof = config.profile
    if isinstance(prof, (str, os.PathLike)):
        prof = LatencyProfile.load(prof)
    if prof is None:
        prof = cached_profile(model, graph, input_shape, batch_size=config.batch_size, threads=config.threads,
                              dtype=config.dtype, runtime=config.runtime, log=log)
    else:
        want = config.setting()
        got = {k: prof.key.get(k) for k in want}
        if got != want:
            raise ArgumentError("latency_profile", "given", f"was measured for {got}, not for {want}")
        import warnings

        from ..timing import allocator

        now = allocator()
        if prof.allocator != now:
            warnings.warn(f"the latency profile was timed with the allocator {prof.allocator!r} and this process "
                          f"times with {now!r} (secateurs.timing.allocator): its predictions may be off; the "
                          "measured rounds still check the target", stacklevel=2)
        if prof.negative_constant:  # the cache measures such a profile again; a given one is the user's to replace
            warnings.warn(f"the latency profile's fit has a negative constant ({prof.constant_ms:.4g} ms; profiles "
                          "written before secateurs held it >= 0): near the floor it predicts too little latency, "
                          "so the early refusal of an unreachable target may not fire and the heavy-plan warning "
                          "leaves out the floor; `secateurs profile` measures a new one", stacklevel=2)
    try:
        return LatencyModel(graph, prof)
    except ValueError as e:
        raise ArgumentError("latency_profile", "given", str(e)) from None


def latency_target(cost: "LatencyModel", *, latency_reduction: float | None = None,
                   target_latency_ms: float | None = None, tolerance: float | None = None) -> Target:
    """The ``Target`` of a latency request: remove ``latency_reduction`` of the dense latency, or run in
    ``target_latency_ms`` (converted with the profile's dense latency, a first estimate that ``prune_to_latency``
    re-derives from the measured dense latency; the argument name stays for errors). The
    predicted reduction lands in ``[R, R + tolerance]``, default ``LATENCY_TOLERANCE`` (2 points: the measured
    check is ±5 points, and the latency of one channel is coarser than its MACs in small layers)."""
    if (latency_reduction is None) == (target_latency_ms is None):
        raise TypeError("give exactly one of latency_reduction, target_latency_ms")
    tol = LATENCY_TOLERANCE if tolerance is None else float(tolerance)
    if target_latency_ms is not None:
        t = target_latency_ms
        if not is_number(t) or t <= 0:
            raise ArgumentError("target_latency_ms", t, "must be a positive number of milliseconds")
        if t >= cost.dense:
            raise ArgumentError("target_latency_ms", t, f"the dense model already runs in {cost.dense:.3f} ms in "
                                                        "this setting: nothing to prune")
        return Target(1 - t / cost.dense, tol, "latency", "target_latency_ms")
    r = latency_reduction
    if not is_number(r) or not 0 < r < 1:
        raise ArgumentError("latency_reduction", r, "must be in (0, 1)")
    return Target(float(r), tol, "latency", "latency_reduction")


def heavy_plan(fields: dict[str, Any], macs_reduction: float) -> str | None:
    """A warning's text when a plan kept for a latency target removes at least ``HEAVY_MACS`` of the MACs
    (``macs_reduction``, relative to the model handed in), else ``None``. ``fields``: the run's
    ``latency_summary``. The text gives the latency that remains with every group at its floor (the model's
    ``1 - latency_reachable``: unprunable layers, fixed overheads, the floor channels themselves), the usual reason
    such a target thins nearly every layer. A MACs target never warns: its reduction is what was asked for."""
    if macs_reduction < HEAVY_MACS:
        return None
    goal, ms = fields["latency_target_reduction"], fields["requested_latency_ms"]
    dense, reachable = fields["latency_ms_dense_predicted"], fields["latency_reachable"]
    asked = f"{goal:.1%} less latency" + (f", {ms:g} ms" if ms is not None else "")
    text = (f"the plan kept for the latency target ({asked}) removes {macs_reduction:.1%} of the MACs, and "
            "accuracy is unlikely to recover from that")
    if reachable >= 1:  # a whole-model fit with a negative constant extrapolates below 0 ms at the floor
        return text
    return (f"{text}; by the latency model {dense * (1 - reachable):.4g} ms of the dense {dense:.4g} ms remain with "
            f"every group at its floor (at most {reachable:.1%} less) in this setting; fixed costs weigh less at a "
            "larger batch size")


def prune_to_latency(dense: "nn.Module", graph: "ChannelGraph", example_inputs: Any, target: Target,
                     config: LatencyConfig, select: Callable[[Target], "Selection"], reachable: float,
                     log: Callable[[str], None] | None = None, measured: float | None = None,
                     target_ms: float | None = None) -> tuple["Selection", "LatencyLoop"]:
    """Rounds of ``select(target at a requested reduction)``, a pruned copy of ``dense`` timed against ``dense``
    (``cost.measured``), and a corrected request, until the measured latency reduction is within
    ``config.tolerance`` of ``measured`` (default ``target.reduction``: a latency target; with a MACs ``target``
    this finds the MACs reduction that measures a given latency), at most ``config.rounds`` rounds, the first
    request ``target.reduction``. ``target_ms``: the request was a latency in ms (``target_latency_ms``), so the goal
    is re-derived from the dense latency measured in the first round (``meet_latency``). ``dense`` is not changed. Returns the chosen selection and the loop's record. A
    corrected request that no selection can meet ends the loop."""
    from ..cost.measured import meet_latency, measure_latency
    from .apply import apply_plan
    from .plan import PruningPlan
    from .target import TargetError

    shape = tuple(example_inputs.shape[1:])

    def choose(requested: float):
        sel = select(target if requested == target.reduction else dataclasses.replace(target, reduction=requested))
        return sel, sel.reduction

    def measure(sel) -> Any:
        pruned = copy.deepcopy(dense)
        apply_plan(pruned, sel.plan if sel.plan is not None else PruningPlan.from_kept(graph, sel.kept),
                   example_inputs, graph=graph, verify=False)
        return measure_latency(dense, pruned, shape, batch_size=config.batch_size, threads=config.threads,
                               runtime=config.runtime, dtype=config.dtype, budget_s=config.budget_s)

    def guarded(requested: float):
        try:
            return choose(requested)
        except TargetError:
            if requested == target.reduction:
                raise
            return None  # a correction no selection meets: the loop keeps what it measured

    goal = target.reduction if measured is None else measured
    loop = meet_latency(guarded, measure, target=goal, tolerance=config.tolerance, max_rounds=config.rounds,
                        reachable=reachable, log=log, start=target.reduction, target_ms=target_ms)
    return loop.selection, loop


def latency_summary(cost: "LatencyModel", loop: "LatencyLoop", config: LatencyConfig, target: Target,
                    requested_ms: float | None = None, *, goal: float | None = None,
                    candidates: list[dict] | None = None, plan_cost: str | None = None,
                    reachable: float | None = None) -> dict[str, Any]:
    """The ``summary.json`` fields of a latency-targeted run (docs/summary.md, docs/latency.md). ``loop``: the
    chosen plan's measure-and-correct loop; ``goal``: the user's target reduction when that loop searched for
    another (the MACs candidate's, for the latency its rival measured: ``structured.candidates``), which the
    measured reduction is then checked against; ``candidates``: their records; ``plan_cost``: which cost priced
    the chosen plan; ``reachable``: the latency model's reduction with every group at its floor."""
    chosen = loop.chosen
    m = chosen.measured
    prof = cost.profile
    # the latency model's prediction for the chosen plan (a MACs-priced loop's rounds predict MACs)
    predicted = chosen.predicted if plan_cost in (None, "latency") else cost.reduction(loop.selection.kept)
    predicted_ms = cost.dense * (1 - predicted)
    goal = loop.target if goal is None else goal
    return {
        "requested_latency_reduction": target.reduction if target.argument == "latency_reduction" else None,
        "requested_latency_ms": requested_ms,
        "latency_ms_dense": m.dense_ms, "latency_ms_measured": m.pruned_ms,
        "latency_ms_predicted": predicted_ms, "latency_ms_dense_predicted": cost.dense,
        "latency_reduction": m.reduction, "latency_reduction_predicted": predicted,
        "latency_target_met": abs(m.reduction - goal) <= config.tolerance, "latency_tolerance": config.tolerance,
        "latency_target_reduction": goal,
        "latency_setting": {**config.setting(), **{k: m.setting.get(k) for k in (
            "rounds", "loadavg_before", "loadavg_after", "statistic", "allocator")}},
        "latency_rounds": loop.to_dict()["rounds"],
        "latency_profile": {"key": prof.key, "held_out_mean_abs_error_pct":
                            prof.validation.get("mean_abs_error_pct"), "build_s": prof.build_s},
        "latency_candidates": candidates, "latency_plan_cost": plan_cost, "latency_reachable": reachable,
    }
