"""Ranking strategy: channel scores + a ``Target`` -> how many (and which) channels each group keeps.

A group always keeps its highest-scored channels (ties: the lower index stays), so a selection is a choice of
one *width* per prunable group, and its cost is exact: ``CostModel.exact`` at a hard selection (for MACs, the
exact count of the physically pruned model, tested), including groups read through a split or a flatten.

Target semantics (``structured.target``): the achieved reduction lies in ``[R, R + tolerance]``. When no
selection lands there -- the request is beyond what the minimum widths allow, or the widths are too coarse
(``round_to``, tiny layers) -- ``TargetError`` says why, with the reachable values.

Scopes:

* ``global``: one ranking over all channels of all prunable groups by *normalised* score, the score divided by
  the mean score of its group (Torch-Pruning's default normaliser). Raw scores are not comparable across groups
  (a filter's L1 norm grows with its fan-in, BN scales with depth, Taylor with the layer's position); dividing by
  the group mean keeps each group's internal ordering and compares channels by how they stand within their group.
  The number of lowest-ranked channels removed is searched (bisection on the exact MACs, which never increase as
  more channels go; with free channels kept, below, nearly never).
* ``local``: the same pruned fraction ``r`` in every prunable group (``floor(r * width)`` channels), searched on
  ``r``. Widths change in steps, all groups of a width at once, so the last step is split: from the last
  selection above the budget, groups lose one more width step in order of their pruned fraction (the furthest
  behind first) until the budget is met — every group's fraction stays within one width step of the others'.

Cost-weighted ranking (``cost_weight`` = w in [0, 1]): a channel's normalised score is divided by ``rel ** w``,
where ``rel`` is what one channel of its group is worth in the cost relative to the mean over groups; w = 1 is
HALP's importance / latency ratio in Torch-Pruning's normalised units, w = 0 the plain ranking. A group's channel
worth is its exact saving when it alone goes to its smallest allowed width, divided by the channels that removes
-- a mean over the group's whole range, because a latency table is a step function of the width and its slope at
full width can be zero. A group whose removal saves nothing is ranked last (for w > 0). Default: 0 for MACs
(Torch-Pruning's convention) and ``LATENCY_COST_WEIGHT`` = 0 for latency too, as measured in
``benchmarks/results/cost_weight.md``: at every w in {0.25, 0.5, 1} the groups with the most latency per channel
went first almost whole (the trunk of resnet20 / resnet56 to 1 of 16 or 1 of 32 channels) and accuracy after the
same fine-tune fell by 3-17 points (mean 77.6-77.8 % against 88.1 % for w = 0, 4 model/target pairs) -- a group's
latency per channel differs 27-fold across resnet20 while normalised scores differ by a few fold within a group.
A latency target therefore changes *where* the plain ranking stops, not its order.

Free channels (``free``; default 0.1 for a latency cost, 0 for MACs; ``_free``): a latency table is a
staircase, so a group cut to the middle of a stair pays accuracy for no speed. Every selection the search
considers has each group raised to the widest width whose extra cost averages at most ``free`` x the group's own
mean cost per channel; the local scope's fractions may then differ by more than one width step. If that search
finds nothing in the window, the plain one runs.

Constraints: a group keeps at least ``min_channels`` (default 1). ``round_to = K`` makes every pruned group's width
a multiple of K (a group narrower than its smallest allowed multiple is left whole; an unpruned group keeps its
full width even if that is not a multiple). Unlike Torch-Pruning's ``round_to``, which floors each group's width
independently after the selection (so the total reduction overshoots the request by up to a whole multiple per
group), the rounding here is inside the search: only multiples are ever considered, and the total lands in the
same window ``[R, R + tolerance]`` or the call fails. If no multiple-of-K combination of whole steps reaches the
window from the ranking order, the remaining gap is filled greedily with single width steps (lowest normalised
score first for ``global``, most-behind fraction first for ``local``) that do not overshoot the window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from ...cost.base import CostModel
from ...cost.macs import MacsModel
from ...graph.groups import ChannelGraph
from ..plan import PruningPlan
from ..target import DEFAULT_TOLERANCE, Target
from ._free import default_free, restore_free
from .result import Selection

__all__ = ["SCOPES", "LATENCY_COST_WEIGHT", "select_channels", "max_reduction", "ranking_floor"]

SCOPES = ("global", "local")
LATENCY_COST_WEIGHT = 0.0  # benchmarks/results/cost_weight.md


@dataclass
class _Group:
    id: str
    width: int
    order: torch.Tensor  # channel indices, least important first
    norm: torch.Tensor  # normalised scores in ``order`` order (ascending)
    allowed: list[int]  # allowed widths, descending (first = full width)

    def snap(self, raw_kept: int) -> int:
        """The smallest allowed width that keeps at least ``raw_kept`` channels."""
        best = self.allowed[0]
        for w in self.allowed:
            if w >= raw_kept:
                best = w
        return best

    def kept(self, w: int) -> list[int]:
        return sorted(self.order[self.width - w:].tolist())

    def next_down(self, w: int) -> int | None:
        lower = [a for a in self.allowed if a < w]
        return lower[0] if lower else None


def _allowed_widths(width: int, min_channels: int, round_to: int) -> list[int]:
    lo = max(1, min_channels)
    lo = math.ceil(lo / round_to) * round_to
    return [width] + [w for w in range(width - 1, lo - 1, -1) if w % round_to == 0]


def _normalise(s: torch.Tensor, how: str | None) -> torch.Tensor:
    if how is None:
        return s
    if how == "mean":
        m = s.mean()
    elif how == "max":
        m = s.max()
    elif how == "sum":
        m = s.sum()
    else:
        raise ValueError(f"normalize must be 'mean', 'max', 'sum' or None, got {how!r}")
    return s / m if m > 0 else torch.zeros_like(s)


def _groups(graph: ChannelGraph, scores: Mapping[str, torch.Tensor], min_channels: int, round_to: int,
            normalize: str | None) -> list[_Group]:
    out = []
    for g in graph.prunable_groups():
        if g.id not in scores:
            continue
        s = torch.as_tensor(scores[g.id], dtype=torch.float64).detach().cpu().flatten()
        if s.numel() != g.width:
            raise ValueError(f"scores of group {g.id!r} have {s.numel()} entries; the group has {g.width} channels")
        if not torch.isfinite(s).all():
            raise ValueError(f"scores of group {g.id!r} are not all finite")
        order = torch.argsort(s, stable=True)  # ascending; equal scores: the lower index is removed first
        out.append(_Group(g.id, g.width, order, _normalise(s, normalize)[order],
                          _allowed_widths(g.width, min_channels, round_to)))
    unknown = set(scores) - {g.id for g in graph.groups}
    if unknown:
        raise KeyError(f"scores for groups not in the graph: {sorted(unknown)[:5]}")
    return out


class _Evaluator:
    """Exact cost of a width per group. Each group keeps a suffix of its ``order``; for ``MacsModel`` every
    layer's channel count is then a constant plus one prefix-sum lookup per group (its terms), which is fast; any
    other cost model is asked ``exact`` for each candidate. The final selection is re-checked with ``exact``."""

    def __init__(self, cost: CostModel, groups: list[_Group]):
        self.cost = cost
        self.groups = groups
        self._cache: dict[tuple[int, ...], float] = {}
        self.terms = None
        if not isinstance(cost, MacsModel):
            return
        index = {g.id: i for i, g in enumerate(groups)}
        suffix: dict[tuple[int, int], list[float]] = {}

        def side(s):
            const, parts = float(s.const), []
            for gid, a, _ in s.groups:
                gi = index.get(gid)
                if gi is None:  # prunable but not scored: always full
                    const += float(a.sum())
                    continue
                key = (gi, id(a))
                if key not in suffix:
                    ordered = a[groups[gi].order].flip(0)
                    suffix[key] = [0.0] + torch.cumsum(ordered, 0).tolist()
                parts.append((gi, suffix[key]))
            return const, parts

        self.terms = [(t.coef, None if t.inp is None else side(t.inp), side(t.out)) for t in cost.terms]

    def macs(self, widths: Sequence[int]) -> float:
        key = tuple(widths)
        if key not in self._cache:
            if self.terms is None:
                self._cache[key] = self.exact(widths)
                return self._cache[key]
            total = float(self.cost.constant)
            for coef, inp, out in self.terms:
                c_out = out[0] + sum(s[widths[gi]] for gi, s in out[1])
                if inp is None:
                    total += coef * c_out
                else:
                    total += coef * (inp[0] + sum(s[widths[gi]] for gi, s in inp[1])) * c_out
            self._cache[key] = int(round(total))
        return self._cache[key]

    def kept(self, widths: Sequence[int]) -> dict[str, list[int]]:
        return {g.id: g.kept(w) for g, w in zip(self.groups, widths) if w < g.width}

    def exact(self, widths: Sequence[int]) -> float:
        return self.cost.exact(self.kept(widths))


def _bisect(n: int, config, fits) -> int:
    """Smallest ``k`` in ``[0, n]`` with ``fits(config(k))`` (``fits`` is monotone in k); ``n`` must fit."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(config(mid)):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _smallest(graph: ChannelGraph, min_channels: int, round_to: int) -> dict[str, list[int]]:
    """Every prunable group at its smallest allowed width (its first channels)."""
    kept = {}
    for g in graph.prunable_groups():
        w = _allowed_widths(g.width, min_channels, round_to)[-1]
        if w < g.width:
            kept[g.id] = list(range(w))
    return kept


def _floor_text(min_channels: int, round_to: int) -> str:
    return f"min_channels={min_channels}" + (f", round_to={round_to}" if round_to > 1 else "")


def ranking_floor(graph: ChannelGraph, min_channels: int = 1,
                  round_to: int = 1) -> tuple[dict[str, list[int]], str]:
    """Every prunable group at its smallest allowed width, and that floor in words: the smallest selection the
    ranking can reach, for checking a target before any scoring (the twin of ``threshold.floor_selection``)."""
    return _smallest(graph, min_channels, round_to), _floor_text(min_channels, round_to)


def max_reduction(graph: ChannelGraph, min_channels: int = 1, round_to: int = 1,
                  cost: CostModel | None = None) -> float:
    """The largest reduction of ``cost`` (default: MACs) reachable when every prunable group is at its smallest
    allowed width."""
    cost = cost if cost is not None else MacsModel(graph)
    return cost.reduction(_smallest(graph, min_channels, round_to))


def select_channels(
    graph: ChannelGraph, scores: Mapping[str, torch.Tensor], flops_reduction: float | Target, *,
    scope: str = "global", min_channels: int = 1, round_to: int = 1, normalize: str | None = "mean",
    tolerance: float = DEFAULT_TOLERANCE, meta: Mapping[str, Any] | None = None, cost: CostModel | None = None,
    cost_weight: float | None = None, free: float | None = None,
) -> Selection:
    """Choose the kept channels of every scored prunable group so that the reduction lies in the target's window
    ``[R, R + tolerance]`` (see the module docstring); raise ``TargetError`` if no selection does. Groups without
    scores keep all their channels. ``flops_reduction``: R (a MACs target with ``tolerance``) or a ``Target``;
    ``cost``: the cost model of ``graph`` that the target reduces (built when not given); ``cost_weight``: rank by
    score / (relative cost per channel) ** w (module docstring; default 0 for MACs, ``LATENCY_COST_WEIGHT``
    otherwise); ``free``: keep the channels that cost at most this fraction of their group's mean channel
    (``_free``; default 0 for MACs, ``FREE_FRACTION`` otherwise)."""
    target = flops_reduction if isinstance(flops_reduction, Target) else Target(flops_reduction, tolerance)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if int(min_channels) != min_channels or min_channels < 1:
        raise ValueError(f"min_channels must be an integer >= 1, got {min_channels!r}")
    if int(round_to) != round_to or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1, got {round_to!r}")
    cost = cost if cost is not None else target.cost_model(graph)
    groups = _groups(graph, scores, int(min_channels), int(round_to), normalize)
    ev = _Evaluator(cost, groups)
    if cost_weight is None:
        cost_weight = 0.0 if cost.unit == "MACs" else LATENCY_COST_WEIGHT
    if not (0.0 <= cost_weight <= 1.0):
        raise ValueError(f"cost_weight must be in [0, 1], got {cost_weight!r}")
    if cost_weight > 0:
        _weigh_by_cost(groups, ev, float(cost_weight))
    free = default_free(free, cost.unit)
    dense = cost.dense
    eps = 1e-9 * dense
    fits = lambda w: ev.macs(w) <= target.budget(dense) + eps  # noqa: E731
    within = lambda w: ev.macs(w) >= target.floor(dense) - eps  # noqa: E731
    smallest = [g.allowed[-1] for g in groups]
    constraint = _floor_text(min_channels, round_to)
    target.check_reachable(cost, ev.kept(smallest), constraint)

    if scope == "global":
        config, n = _global_configs(groups)
    else:
        config, n = _local_configs(groups)

    def search(config):
        k = _bisect(n, config, fits)
        hi = config(k)  # first selection within the budget along the ranking
        candidates = [hi] if within(hi) else []
        if k > 0 and (scope == "local" or not candidates):
            filled = _fill(groups, ev, config(k - 1), fits, within, scope)
            if filled is not None:
                candidates.append(filled)
        return candidates, k, hi

    candidates, allowed = [], [sorted(g.allowed) for g in groups]
    if free > 0:  # keeping free channels; the plain search if that finds nothing (or the smallest is over budget)
        freed = _keeping_free(config, allowed, ev, free)
        if fits(freed(n)):
            candidates, k, hi = search(freed)
    if not candidates:
        candidates, k, hi = search(config)
    if not candidates:
        lo_red = 1 - ev.macs(config(k - 1)) / dense if k > 0 else 0.0
        got = 1 - ev.macs(hi) / dense
        raise target.error(
            f"cannot land within {target.tolerance:.0%} of a {target.reduction:.1%} "
            f"{cost.quantity} reduction with "
            f"{constraint} ({scope} scope): the nearest selections reach {lo_red:.2%} and {got:.2%}; the width "
            "steps are too coarse here (lower --round-to or --min-channels, or try the other --scope)")
    widths = max(candidates, key=ev.macs)  # the one closest to the budget
    if free > 0:  # the single-step fill stops mid-stair: keep what is free there too, if it stays in the window
        freed_widths = restore_free(widths, allowed, ev.macs, free)
        if fits(freed_widths) and within(freed_widths):
            widths = freed_widths
    kept = ev.kept(widths)
    exact = ev.exact(widths)
    if exact != ev.macs(widths):  # the fast evaluator and the cost model must agree exactly
        raise RuntimeError(f"internal error: cost {ev.macs(widths)} (search) != {exact} ({type(cost).__name__})")
    info = {"target": target.reduction, "achieved": 1 - exact / dense if dense > 0 else 0.0, "scope": scope,
            "min_channels": int(min_channels), "round_to": int(round_to), "normalize": normalize,
            "cost_weight": float(cost_weight), "free": free, **(dict(meta) if meta else {})}
    plan = PruningPlan.from_kept(graph, kept, meta=info)
    all_widths = {g.id: g.width for g in graph.groups}
    all_widths.update({g.id: w for g, w in zip(groups, widths)})
    return Selection(kept, exact, dense, target, scope, all_widths, plan=plan)


def _keeping_free(config, allowed: list[list[int]], ev: _Evaluator, free: float):
    """``config`` with the free channels of each selection kept (``_free``; ``allowed``: each group's widths,
    ascending)."""
    return lambda k: restore_free(config(k), allowed, ev.macs, free)


def _weigh_by_cost(groups: list[_Group], ev: _Evaluator, weight: float) -> None:
    """Divide each group's normalised scores by its channels' relative worth in the cost to the power ``weight``
    (module docstring)."""
    full = [g.width for g in groups]
    dense = ev.macs(full)
    worth = []
    for gi, g in enumerate(groups):
        removable = g.width - g.allowed[-1]
        if removable <= 0:
            worth.append(0.0)
            continue
        alone = full[:gi] + [g.allowed[-1]] + full[gi + 1:]
        worth.append(max(dense - ev.macs(alone), 0.0) / removable)
    positive = [w for w in worth if w > 0]
    if not positive:
        return
    mean = sum(positive) / len(positive)
    for g, w in zip(groups, worth):
        g.norm = g.norm / (w / mean) ** weight if w > 0 else torch.full_like(g.norm, math.inf)


def _global_configs(groups: list[_Group]):
    """Prefix k of one ranking of all removable channels -> widths."""
    entries = []
    for gi, g in enumerate(groups):
        removable = g.width - g.allowed[-1]
        for pos in range(removable):
            entries.append((float(g.norm[pos]), pos, gi))
    entries.sort()
    owner = [gi for _, _, gi in entries]

    def config(k: int) -> list[int]:
        pruned = [0] * len(groups)
        for gi in owner[:k]:
            pruned[gi] += 1
        return [g.snap(g.width - p) for g, p in zip(groups, pruned)]

    return config, len(entries)


def _local_configs(groups: list[_Group]):
    """Index k into the sorted breakpoints of the common pruned fraction r -> widths."""
    ratios = sorted({p / g.width for g in groups for p in range(1, g.width + 1)} | {0.0})

    def config(k: int) -> list[int]:
        r = ratios[k]
        return [g.snap(g.width - math.floor(r * g.width + 1e-9)) for g in groups]

    return config, len(ratios) - 1


def _fill(groups: list[_Group], ev: _Evaluator, start: list[int], fits, within, scope: str) -> list[int] | None:
    """From ``start`` (over budget) take single width steps, best first, never below the window's floor, until
    the budget is met. ``None`` if it gets stuck."""
    widths = list(start)
    while not fits(widths):
        options = []
        for gi, g in enumerate(groups):
            nxt = g.next_down(widths[gi])
            if nxt is None:
                continue
            trial = widths[:gi] + [nxt] + widths[gi + 1:]
            if not within(trial):
                continue
            removed = g.norm[g.width - widths[gi]:g.width - nxt]
            score = float(removed.mean())
            if scope == "local":
                key = (1 - nxt / g.width, score, gi)
            else:
                key = (score, 0.0, gi)
            options.append((key, trial))
        if not options:
            return None
        widths = min(options, key=lambda o: o[0])[1]
    return widths
