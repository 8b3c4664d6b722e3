"""The front door of structured pruning: ``prune(model, data, flops_reduction=R, method=...)``.

One call takes a trained model to a smaller one, in place: trace the channel graph, score the channels (a baseline
criterion) or train AutoBot's bottlenecks, select the kept channels to the ``Target`` (``structured.target``: the
reduction lands in ``[R, R + tolerance]``), remove them with verified surgery (``apply_plan``), optionally
re-estimate BatchNorm statistics, and evaluate. The result carries the plan, the surgery's report and
``summary()``, the numbers the ``prune`` / ``autoprune`` commands write to ``summary.json``.

    result = prune(model, data, flops_reduction=0.5, method="l1", scope="global")
    print(result.report); json.dump(result.summary(), f)

Target keywords are turned into a ``Target`` by ``target_from_keywords`` alone, so a new kind of target is one
more keyword there and here, not a new workflow.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import ArgumentError
from .target import Target, target_from_keywords

if TYPE_CHECKING:
    import torch.nn as nn

    from ..data import DataSplits
    from ..graph.groups import ChannelGraph
    from .apply import PruneReport
    from .autobot.api import AutoBotConfig, AutoBotResult
    from .latency import LatencyConfig
    from .plan import PruningPlan
    from .select import Selection

__all__ = ["METHODS", "PruneResult", "prune"]

METHODS = ("autobot", "l1", "l2", "bn", "taylor", "random")


@dataclass
class PruneResult:
    """What ``prune`` did. ``plan``: this run's selection, relative to the model handed in (compose it with that
    model's own plan, ``replay_plan``, to replay on a dense model). ``accuracy_dense`` / ``accuracy``: test accuracy
    before / after pruning (after the BatchNorm pass, if any; ``None`` without a test split)."""

    method: str
    target: Target
    plan: "PruningPlan"
    report: "PruneReport"
    selection: "Selection"
    graph: "ChannelGraph"
    accuracy: float | None = None
    test_loss: float | None = None
    accuracy_dense: float | None = None
    accuracy_before_bn: float | None = None
    bn_batches: int = 0
    bn_batches_used: int = 0
    settings: dict[str, Any] = field(default_factory=dict)  # the method's arguments, as recorded
    autobot: "AutoBotResult | None" = None
    latency: dict[str, Any] | None = None  # a latency target's record (structured.latency.latency_summary)

    def replay_plan(self, source_plan: "PruningPlan | dict | None") -> "PruningPlan":
        """The plan that rebuilds the pruned model from the dense one: ``plan`` composed after ``source_plan``
        (the handed-in model's own plan, ``None`` for a dense model)."""
        from .plan import PruningPlan, compose_plans

        if source_plan is None:
            return self.plan
        first = source_plan if isinstance(source_plan, PruningPlan) else PruningPlan.from_dict(source_plan)
        return compose_plans(first, self.plan)

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers of this run, in the one ``summary.json`` schema (docs/summary.md): the reference
        (``*_dense``: the model handed in), the request (``requested_*``), the result, then the method's own."""
        r, widths_dense = self.report, {g.id: g.width for g in self.graph.groups}
        out = {
            "requested_flops_reduction": self.target.reduction if self.target.cost == "macs" else None,
            "tolerance": self.target.tolerance,
            "accuracy_dense": self.accuracy_dense, "accuracy": self.accuracy, "test_loss": self.test_loss,
            "bn_batches": self.bn_batches, "bn_batches_used": self.bn_batches_used,
            "accuracy_before_bn": self.accuracy_before_bn,
            "flops_reduction": r.macs_reduction, "macs": r.macs_after, "macs_dense": r.macs_before,
            "flops": 2 * r.macs_after, "flops_dense": 2 * r.macs_before, "params": r.params_after,
            "params_dense": r.params_before, "params_reduction": r.params_reduction,
            "widths": {**widths_dense, **{g: len(k) for g, k in self.plan.groups.items()}},
            "widths_dense": widths_dense, "prunable_groups": len(self.graph.prunable_groups()),
            "groups": len(self.graph.groups), "max_abs_diff": r.max_abs_diff, **self.settings,
        }
        if self.autobot is not None:
            a = self.autobot
            out.update(bottleneck_seconds=a.bottleneck_seconds, bottleneck_images=a.bottleneck_images,
                       best_step=a.best_step, threshold=self.selection.threshold,
                       selection_method=self.selection.method, autobot=asdict(a.config),
                       bottleneck_history=a.history)
        from .latency import SUMMARY_FIELDS

        out.update(dict.fromkeys(SUMMARY_FIELDS), **(self.latency or {}))
        return out


def prune(
    model: "nn.Module", data: "DataSplits | Iterable", *, flops_reduction: float | None = None,
    latency_reduction: float | None = None, target_latency_ms: float | None = None,
    latency: "LatencyConfig | None" = None, tolerance: float | None = None, method: str = "l1",
    scope: str = "global", min_channels: int = 1,
    round_to: int = 1, config: "AutoBotConfig | None" = None, calib_batches: int = 8, batch_size: int = 64,
    bn_batches: int = 0, seed: int = 0, example_inputs: Any = None, graph: "ChannelGraph | None" = None,
    graph_limits: Any = None, evaluate_test: bool = True, progress: bool | None = None,
) -> PruneResult:
    """Prune ``model`` **in place** to the target given by ``flops_reduction`` (R: the MACs reduction lands in
    ``[R, R + tolerance]``; default tolerance 1 point) with ``method``:

    * ``"autobot"``: AutoBot's trained bottlenecks and one global threshold (``config``: ``AutoBotConfig``;
      ``tolerance`` defaults to ``config.tolerance`` for a MACs target, to ``LATENCY_TOLERANCE`` for a latency one);
    * ``"l1" | "l2" | "bn" | "taylor" | "random"``: a criterion's channel scores, ranked ``scope="global"`` (by
      score / group mean) or ``"local"`` (the same fraction per group), each group keeping at least
      ``min_channels`` and, when pruned, a multiple of ``round_to``; ``taylor`` accumulates gradients over
      ``calib_batches`` seeded training batches of ``batch_size``.

    ``data``: a ``DataSplits`` (training batches for AutoBot / Taylor, the validation split to compare a latency
    target's candidates, the test split for the accuracies) or batches of ``(x, y)`` (then ``example_inputs`` is
    required and no test accuracy is evaluated; a latency target's candidates are scored on the first 8 batches,
    read once). ``bn_batches``: re-estimate
    BatchNorm statistics on that many seeded training batches of 64 after the surgery. ``graph_limits``: bounds for
    tracing (``graph.GraphLimits``). Raises ``TargetError`` (naming ``flops_reduction``) when no selection reaches
    the target and ``ArgumentError`` (naming ``method``) when the criterion cannot score this model.

    **Latency targets** instead of ``flops_reduction``: ``latency_reduction=R`` (remove that fraction of the dense
    latency) or ``target_latency_ms=T``, for the setting in ``latency`` (``structured.latency.LatencyConfig``:
    batch size, threads, runtime, dtype, a profile; default batch 1, 1 thread, torch). The latency cost model of
    this machine (a cached profile, measured when absent) replaces MACs in the selection and in AutoBot's loss;
    then the pruned network is timed against the dense one and the request corrected until the measured reduction
    is within ``latency.tolerance`` (bounded rounds; docs/latency.md). With ``latency.compare_macs`` (default) the
    same method priced by MACs is searched to the latency that plan measured, and the one with the lower
    validation loss after BatchNorm re-estimation is kept (``structured.candidates``). A target beyond what the
    model predicts at the smallest widths raises ``TargetError`` before any training.
    """
    from ..data import DataSplits
    from ..train import evaluate

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    wants_latency = latency_reduction is not None or target_latency_ms is not None
    if method == "autobot" and tolerance is None and not wants_latency:  # a latency target: LATENCY_TOLERANCE
        from .autobot.api import AutoBotConfig

        tolerance = (config or AutoBotConfig()).tolerance
    if wants_latency and flops_reduction is not None:
        raise TypeError("give one target: flops_reduction or a latency target, not both")
    target = None if wants_latency else target_from_keywords(flops_reduction=flops_reduction, tolerance=tolerance)
    splits = data if isinstance(data, DataSplits) else None
    if example_inputs is None:
        if splits is None:
            raise ValueError("example_inputs is required when data is not a DataSplits")
        example_inputs = splits.train_x[:1] if method == "autobot" else splits.train_x[:2]
    if graph is None:
        from ..graph import build_channel_graph

        graph = build_channel_graph(model, example_inputs, limits=graph_limits)
    if method != "autobot" and (target is None or target.reduction > 0):
        _check_floor(graph, min_channels, round_to)
    test = evaluate_test and splits is not None and len(splits.test_x) > 0
    lat = None
    if wants_latency:
        if method == "autobot":  # AutoBot's floor: its forced channels (one, or min_fraction), rounded up
            from .autobot.api import AutoBotConfig
            from .select.threshold import floor_selection

            smallest, constraint = floor_selection({g.id: g.width for g in graph.prunable_groups()}, round_to,
                                                   (config or AutoBotConfig()).min_fraction)
        else:
            from .select.ranking import ranking_floor

            smallest, constraint = ranking_floor(graph, min_channels, round_to)
        lat = _latency_setup(model, graph, example_inputs, latency, latency_reduction, target_latency_ms,
                             tolerance, smallest, constraint, progress)
        target = lat["target"]
    if method == "autobot":
        result = _autobot(model, data, target, config, example_inputs, graph, progress, evaluate_test, seed,
                          round_to, lat)
    else:
        dense = evaluate(model, splits.test_x, splits.test_y)["accuracy"] if test else None
        result = _criterion(model, data, target, method, scope, min_channels, round_to, calib_batches, batch_size,
                            seed, example_inputs, graph, lat)
        result.accuracy_dense = dense
    if result.latency is not None:
        from .latency import heavy_plan

        heavy = heavy_plan(result.latency, result.report.macs_reduction)
        if heavy:
            import warnings

            warnings.warn(heavy, stacklevel=2)
    result.bn_batches = bn_batches
    if test and bn_batches:
        result.accuracy_before_bn = result.accuracy if result.accuracy is not None else \
            evaluate(model, splits.test_x, splits.test_y)["accuracy"]
    if splits is not None and bn_batches > 0:
        result.bn_batches_used = recalibrate_batchnorm(model, splits, bn_batches, seed, progress)
    if test and (result.accuracy is None or result.bn_batches_used):
        ev = evaluate(model, splits.test_x, splits.test_y)
        result.accuracy, result.test_loss = ev["accuracy"], ev["loss"]
    return result


def recalibrate_batchnorm(model: "nn.Module", data: "DataSplits", batches: int, seed: int,
                          progress: bool | None = None, batch_size: int = 64) -> int:
    """Re-estimate ``model``'s BatchNorm statistics on ``batches`` seeded, un-augmented training batches of
    ``batch_size``; returns the batches used (0: statistics unchanged)."""
    from .._progress import progress_iter, progress_mode
    from ..data import seeded_batches
    from ..unstructured import reestimate_batchnorm

    if batches <= 0:
        return 0
    passes = seeded_batches(data.train_x, batch_size=batch_size, seed=seed, batches=batches)
    return reestimate_batchnorm(model, progress_iter(passes, batches, "batchnorm statistics", progress_mode(progress)))


def _latency_setup(model, graph, example_inputs, config, latency_reduction, target_latency_ms, tolerance,
                   smallest, constraint, progress) -> dict[str, Any]:
    """The latency cost model, the target and the reachable maximum, before any scoring or training."""
    import copy

    from .latency import LatencyConfig, latency_model, latency_target
    from .target import TargetError

    config = config or LatencyConfig()
    log = None if progress is False else (lambda s: print(f"latency: {s}", file=sys.stderr, flush=True))
    cost = latency_model(model, graph, tuple(example_inputs.shape[1:]), config, log=log)
    target = latency_target(cost, latency_reduction=latency_reduction, target_latency_ms=target_latency_ms,
                            tolerance=tolerance)
    reachable = cost.reduction(smallest)
    try:
        target.check_reachable(cost, smallest, constraint)
    except TargetError as e:
        if target_latency_ms is None:
            raise
        raise TargetError("target_latency_ms", target_latency_ms,  # say it in ms, the unit that was asked in
                          f"the fastest selection runs in {cost.dense * (1 - e.reachable):.4g} ms by the latency "
                          f"model ({e.reachable:.1%} less than the dense {cost.dense:.4g} ms; {e.reason})",
                          e.reachable) from None
    return {"cost": cost, "target": target, "config": config, "reachable": reachable, "log": log,
            "dense": copy.deepcopy(model).eval(), "requested_ms": target_latency_ms, "smallest": smallest}


def _with_latency(lat, graph, example_inputs, select, rival=None, data=None, seed=0) -> tuple["Selection", dict]:
    """The latency loop around ``select(Target) -> Selection``: (chosen selection, summary fields). ``rival(MACs
    reduction to start from, measured reduction to aim at, largest MACs reduction reachable, ± tolerance) ->
    (selection, loop)``: the same method priced by MACs,
    the second candidate when ``lat["config"].compare_macs`` (``structured.candidates``); ``data`` scores them."""
    from .latency import latency_summary, prune_to_latency

    selection, loop = prune_to_latency(lat["dense"], graph, example_inputs, lat["target"], lat["config"], select,
                                       lat["reachable"], log=lat["log"], target_ms=lat["requested_ms"])
    fields = (lat["cost"], loop, lat["config"], lat["target"], lat["requested_ms"])
    if rival is None or not lat["config"].compare_macs:
        return selection, latency_summary(*fields, reachable=lat["reachable"])
    chosen, candidates = _compare_macs(lat, graph, example_inputs, selection, loop, rival, data, seed)
    return chosen.selection, latency_summary(lat["cost"], chosen.loop, *fields[2:], goal=_goal(lat, chosen.loop),
                                             candidates=[c.to_dict() for c in candidates], plan_cost=chosen.cost,
                                             reachable=lat["reachable"])


def _rival_config(config, tolerance):
    """The MACs-priced rival's measure-and-correct setting: within ``tolerance`` of its aim (``rival_window``: at
    most ``EQUAL_LATENCY`` from the latency-priced plan's measured reduction), with at least ``RIVAL_ROUNDS`` rounds
    (a MACs-priced search starts further from the goal: MACs predict the latency poorly)."""
    from .candidates import RIVAL_ROUNDS

    return dataclasses.replace(config, tolerance=tolerance, rounds=max(config.rounds, RIVAL_ROUNDS))


def _compare_macs(lat, graph, example_inputs, selection, loop, rival, data, seed):
    """The latency-priced candidate, its MACs-priced rival at the latency it measured, both scored: (the chosen
    ``Candidate``, both). The rival is optional: whatever stops it (no MACs window, data it cannot be trained or
    scored on) is recorded as its ``reason`` and the latency-priced plan is kept."""
    import time

    from ..cost.macs import MacsModel
    from .candidates import EQUAL_LATENCY, Candidate, pick, rival_window, scoring_data
    from .target import TargetError

    macs = MacsModel(graph)
    log = lat["log"] or (lambda s: None)
    first = Candidate("latency", selection, loop, macs.reduction(selection.kept))
    measured = loop.chosen.measured.reduction
    aim, within = rival_window(measured, _goal(lat, loop), lat["config"].tolerance)
    log(f"the MACs-priced plan at the measured reduction {measured:.3f} (aimed at {aim:.3f} ± {within:.3f}), "
        f"to compare")
    t0 = time.perf_counter()
    try:
        scoring = scoring_data(data, seed)
        sel, rival_loop = rival(first.macs_reduction, aim, macs.reduction(lat["smallest"]), within)
    except (TargetError, ValueError, RuntimeError) as e:
        second = Candidate("macs", None, None, None, eligible=False, reason=f"not built: {e}",
                           seconds=time.perf_counter() - t0)
        log(f"no MACs-priced plan to compare: {e}")
        return pick([first, second]), [first, second]
    second = Candidate("macs", sel, rival_loop, macs.reduction(sel.kept), seconds=time.perf_counter() - t0)
    got = rival_loop.chosen.measured
    goal = _goal(lat, rival_loop)
    widths = {g.id: g.width for g in graph.prunable_groups()}
    if got.reduction < measured - EQUAL_LATENCY:  # slower: it would win by keeping more of the network
        second.eligible, second.reason = False, (f"measured a reduction of {got.reduction:.3f}, slower than the "
                                                 f"latency-priced plan's {measured:.3f} by more than {EQUAL_LATENCY:g}")
    elif abs(got.reduction - goal) > lat["config"].tolerance:
        second.eligible, second.reason = False, f"measured {got.reduction:.3f}, outside the target {goal:.3f} ± " \
                                                f"{lat['config'].tolerance:g}"
    elif all(sorted(sel.kept.get(g, range(w))) == sorted(selection.kept.get(g, range(w)))
             for g, w in widths.items()):
        second.eligible, second.reason = False, "the same plan"
    if second.eligible:
        _score(lat, graph, example_inputs, scoring, (first, second), seed, log)
    chosen = pick([first, second])
    log(f"kept the {chosen.cost}-priced plan (validation loss{' after recovery' if first.score == 'recovery' else ''}"
        f": latency-priced {first.val_loss}, MACs-priced "
        f"{second.val_loss}{'' if second.eligible else '; not compared: ' + second.reason})")
    return chosen, [first, second]


def _score(lat, graph, example_inputs, scoring, candidates, seed, log) -> None:
    """Score ``candidates`` in place: validation loss after BN re-estimation, then, where all are near chance
    there, after ``recovery_steps`` of fine-tuning. A failed BN scoring leaves the rival not compared; a failed
    recovery (diverged, too little data) leaves the BN scores deciding, its error recorded."""
    from .candidates import near_chance, plan_score

    first, second = candidates
    try:
        scores = [plan_score(lat["dense"], graph, c.selection.kept, example_inputs, scoring) for c in candidates]
    except (ValueError, RuntimeError) as e:
        second.eligible, second.reason = False, f"not scored: {e}"
        return
    for c, score in zip(candidates, scores):
        c.val_loss, c.val_accuracy, c.score = score["val_loss"], score["val_accuracy"], "bn"
    steps = lat["config"].recovery_steps
    if not steps or not all(near_chance(score) for score in scores):
        return
    log(f"both plans near chance after BatchNorm re-estimation (validation accuracy {first.val_accuracy:.3f} and "
        f"{second.val_accuracy:.3f}): scoring both after {steps} steps of fine-tuning")
    try:
        recovered = [plan_score(lat["dense"], graph, c.selection.kept, example_inputs, scoring, recovery_steps=steps,
                                seed=seed) for c in candidates]
    except (ValueError, RuntimeError) as e:
        for c in candidates:
            c.recovery_error = str(e)
        log(f"the recovery scoring failed ({e}); the BatchNorm-re-estimated scores decide")
        return
    for c, score in zip(candidates, recovered):
        c.bn_val_loss, c.bn_val_accuracy = c.val_loss, c.val_accuracy
        c.val_loss, c.val_accuracy, c.score, c.recovery_steps = (score["val_loss"], score["val_accuracy"],
                                                                 "recovery", steps)


def _goal(lat, loop) -> float:
    """The user's target as a reduction, for ``loop``: ``latency_reduction``, or ``1 - T / dense ms`` measured in
    the loop's first round for ``target_latency_ms=T`` (as ``meet_latency`` derives it)."""
    from ..cost.measured import ms_goal

    if lat["requested_ms"] is None:
        return lat["target"].reduction
    return ms_goal(lat["requested_ms"], loop.rounds[0].measured.dense_ms)


def _autobot(model, data, target, config, example_inputs, graph, progress, evaluate_test, seed, round_to=1,
             lat=None) -> PruneResult:
    from .autobot.api import AutoBotConfig, autoprune

    config = config or AutoBotConfig(seed=seed)
    record = {}
    choose = None
    if lat is not None:
        def rival(start, aim, reachable, within):  # bottlenecks trained on soft MACs, searched to aim ± within
            import copy

            from .latency import prune_to_latency

            found = {}

            def choose_macs(search):
                found["selection"], found["loop"] = prune_to_latency(
                    lat["dense"], graph, example_inputs, Target(start, config.tolerance),
                    _rival_config(lat["config"], within), search, reachable, log=lat["log"], measured=aim)
                return found["selection"]

            record["rival"] = autoprune(copy.deepcopy(lat["dense"]), data, Target(start, config.tolerance),
                                        config=config, example_inputs=example_inputs, graph=graph,
                                        progress=progress, evaluate_test=False, round_to=round_to,
                                        choose=choose_macs)
            return found["selection"], found["loop"]

        def choose(search):  # search(Target) -> Selection, AutoBot's threshold search on the trained scores
            selection, record["latency"] = _with_latency(lat, graph, example_inputs, search, rival, data, seed)
            return selection
    res = autoprune(model, data, target, config=config, example_inputs=example_inputs, graph=graph,
                    progress=progress, evaluate_test=evaluate_test, round_to=round_to,
                    cost=None if lat is None else lat["cost"], choose=choose)
    kept_macs = (record.get("latency") or {}).get("latency_plan_cost") == "macs"
    # the MACs-priced bottlenecks made the plan: their training's record (history, seconds, best step) with it
    return PruneResult("autobot", target, res.plan, res.report, res.selection, graph, res.accuracy, None,
                       res.accuracy_source, settings={"seed": config.seed},
                       autobot=record["rival"] if kept_macs else res, latency=record.get("latency"))


def _check_floor(graph, min_channels: int, round_to: int) -> None:
    """A floor that keeps every prunable group whole is the argument at fault, not the target: ``min_channels``
    if it is as wide as every group, else ``round_to`` (no multiple of it between the floor and a group's width)."""
    from ..errors import ArgumentError
    from .select.ranking import ranking_floor

    widths = [g.width for g in graph.prunable_groups()]
    if not widths or ranking_floor(graph, min_channels, round_to)[0]:
        return
    if min_channels >= max(widths):
        raise ArgumentError("min_channels", min_channels, f"leaves nothing to prune: the widest of the {len(widths)} "
                            f"prunable groups has {max(widths)} channels")
    raise ArgumentError("round_to", round_to, f"leaves nothing to prune above a floor of {min_channels} channels: "
                        f"none of the {len(widths)} prunable groups has a narrower multiple of {round_to} there")


def _criterion(model, data, target, method, scope, min_channels, round_to, calib_batches, batch_size, seed,
               example_inputs, graph, lat=None) -> PruneResult:
    from ..data import DataSplits, seeded_batches
    from .apply import apply_plan
    from .criteria import channel_scores
    from .select import select_channels

    batches = None
    if method == "taylor":
        batches = (list(seeded_batches(data.train_x, data.train_y, batch_size=batch_size, seed=seed,
                                       batches=calib_batches)) if isinstance(data, DataSplits) else data)
    try:
        scores = channel_scores(model, graph, method, data=batches, seed=seed)
    except ValueError as e:  # e.g. bn on a network without BatchNorm: the method does not fit the model
        raise ArgumentError("method", method, str(e)) from None
    settings = {"criterion": method, "scope": scope, "round_to": round_to, "min_channels": min_channels,
                "seed": seed, "calib_batches": calib_batches if method == "taylor" else None}
    def select(t):
        return select_channels(graph, scores, t, scope=scope, min_channels=min_channels, round_to=round_to,
                               meta={"criterion": method, "seed": seed},
                               cost=None if lat is None else lat["cost"],
                               free=None if lat is None else lat["config"].free)

    def rival(start, aim, reachable, within):  # the MACs-priced selection, searched to aim ± within
        from .latency import prune_to_latency

        def select_macs(t):
            return select_channels(graph, scores, t, scope=scope, min_channels=min_channels, round_to=round_to,
                                   meta={"criterion": method, "seed": seed})

        return prune_to_latency(lat["dense"], graph, example_inputs, Target(start, 0.01),
                                _rival_config(lat["config"], within), select_macs, reachable, log=lat["log"],
                                measured=aim)

    record = None
    if lat is None:
        selection = select(target)
    else:
        selection, record = _with_latency(lat, graph, example_inputs, select, rival, data, seed)
    report = apply_plan(model, selection.plan, example_inputs, graph=graph)  # verified: MACs, params, outputs
    if lat is None and report.macs_after != selection.cost:
        raise RuntimeError(f"counted {report.macs_after} MACs after pruning; the selection promised {selection.cost}")
    return PruneResult(method, target, selection.plan, report, selection, graph, settings=settings, latency=record)
