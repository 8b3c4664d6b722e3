"""Policy: channel scores + a MACs target -> how many (and which) channels each group keeps.

A group always keeps its highest-scored channels (ties: the lower index stays), so a selection is a choice of
one *width* per prunable group, and its MACs are exact: ``SoftMacsModel.macs_at`` at a hard 0/1 selection is the
exact count of the physically pruned model (phase-1 tests), including groups read through a split or a flatten.

Target semantics. ``flops_reduction = R`` is a *budget*: the selected model has at most ``(1 - R)`` of the dense
MACs (the reduction never falls short of R) and at most ``tolerance`` (1 point) more reduction than asked, i.e.
the achieved reduction lies in ``[R, R + tolerance]``. When no selection lands there — the request is beyond what
the minimum widths allow, or the widths are too coarse (``round_to``, tiny layers) — ``SelectionError`` (a
``ValueError``) says why, with the reachable values.

Scopes:

* ``global``: one ranking over all channels of all prunable groups by *normalised* score, the score divided by
  the mean score of its group (Torch-Pruning's default normaliser). Raw scores are not comparable across groups
  (a filter's L1 norm grows with its fan-in, BN scales with depth, Taylor with the layer's position); dividing by
  the group mean keeps each group's internal ordering and compares channels by how they stand within their group.
  The number of lowest-ranked channels removed is searched (bisection on the exact MACs, which never increase as
  more channels go).
* ``local``: the same pruned fraction ``r`` in every prunable group (``floor(r * width)`` channels), searched on
  ``r``. Widths change in steps, all groups of a width at once, so the last step is split: from the last
  selection above the budget, groups lose one more width step in order of their pruned fraction (the furthest
  behind first) until the budget is met — every group's fraction stays within one width step of the others'.

Constraints: a group keeps at least ``min_channels`` (default 1). ``round_to = K`` makes every pruned group's width
a multiple of K (a group narrower than its smallest allowed multiple is left whole; an unpruned group keeps its
full width even if that is not a multiple). Unlike Torch-Pruning's ``round_to``, which floors each group's width
independently after the selection (so the total reduction overshoots the request by up to a whole multiple per
group), the rounding here is inside the search: only multiples are ever considered, and the total lands in the
same window ``[R, R + 1 point]`` or the call fails. If no multiple-of-K combination of whole steps reaches the
window from the ranking order, the remaining gap is filled greedily with single width steps (lowest normalised
score first for ``global``, most-behind fraction first for ``local``) that do not overshoot the window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ..graph.groups import ChannelGraph
from ..soft_flops import SoftMacsModel
from .plan import PruningPlan

__all__ = ["SCOPES", "Selection", "SelectionError", "select_channels", "max_reduction", "compose_plans"]

SCOPES = ("global", "local")


class SelectionError(ValueError):
    """The MACs target cannot be met under the constraints; the message says why and what is reachable."""


@dataclass
class Selection:
    plan: PruningPlan
    macs: int  # exact MACs of the selection (per example)
    macs_dense: int
    target: float  # requested reduction
    widths: dict[str, int] = field(default_factory=dict)  # kept width of every group (prunable or not)

    @property
    def reduction(self) -> float:
        return 1 - self.macs / max(self.macs_dense, 1)


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
    """Exact MACs of a width per group, fast: each group keeps a suffix of its ``order``, so every layer's channel
    count is a constant plus one prefix-sum lookup per group (the terms of ``SoftMacsModel``). The final selection
    is re-checked with ``SoftMacsModel.macs_at``."""

    def __init__(self, graph: ChannelGraph, groups: list[_Group]):
        self.soft = SoftMacsModel(graph)
        self.groups = groups
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

        self.terms = [(t.coef, None if t.inp is None else side(t.inp), side(t.out)) for t in self.soft.terms]
        self._cache: dict[tuple[int, ...], int] = {}

    def macs(self, widths: Sequence[int]) -> int:
        key = tuple(widths)
        if key not in self._cache:
            total = float(self.soft.constant)
            for coef, inp, out in self.terms:
                c_out = out[0] + sum(s[widths[gi]] for gi, s in out[1])
                if inp is None:
                    total += coef * c_out
                else:
                    total += coef * (inp[0] + sum(s[widths[gi]] for gi, s in inp[1])) * c_out
            self._cache[key] = int(round(total))
        return self._cache[key]

    def exact(self, widths: Sequence[int]) -> int:
        return self.soft.macs_at({g.id: g.kept(w) for g, w in zip(self.groups, widths) if w < g.width})


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


def max_reduction(graph: ChannelGraph, min_channels: int = 1, round_to: int = 1) -> float:
    """The largest MACs reduction reachable when every prunable group is at its smallest allowed width."""
    soft = SoftMacsModel(graph)
    kept = {}
    for g in graph.prunable_groups():
        w = _allowed_widths(g.width, min_channels, round_to)[-1]
        if w < g.width:
            kept[g.id] = list(range(w))
    return 1 - soft.macs_at(kept) / max(soft.total, 1)


def select_channels(
    graph: ChannelGraph, scores: Mapping[str, torch.Tensor], flops_reduction: float, *, scope: str = "global",
    min_channels: int = 1, round_to: int = 1, normalize: str | None = "mean", tolerance: float = 0.01,
    meta: Mapping[str, Any] | None = None,
) -> Selection:
    """Choose the kept channels of every scored prunable group so that the MACs reduction lies in
    ``[flops_reduction, flops_reduction + tolerance]`` (see the module docstring); raise ``SelectionError`` if no
    selection does. Groups without scores keep all their channels."""
    if not 0 <= flops_reduction < 1:
        raise ValueError(f"flops_reduction must be in [0, 1), got {flops_reduction}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if int(min_channels) != min_channels or min_channels < 1:
        raise ValueError(f"min_channels must be an integer >= 1, got {min_channels!r}")
    if int(round_to) != round_to or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1, got {round_to!r}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    groups = _groups(graph, scores, int(min_channels), int(round_to), normalize)
    ev = _Evaluator(graph, groups)
    dense = ev.soft.total
    budget = (1 - flops_reduction) * dense
    floor_macs = (1 - flops_reduction - tolerance) * dense
    eps = 1e-9 * dense
    fits = lambda w: ev.macs(w) <= budget + eps  # noqa: E731
    within = lambda w: ev.macs(w) >= floor_macs - eps  # noqa: E731
    smallest = [g.allowed[-1] for g in groups]
    constraint = f"min_channels={min_channels}" + (f", round_to={round_to}" if round_to > 1 else "")

    if not fits(smallest):
        best = 1 - ev.macs(smallest) / max(dense, 1)
        raise SelectionError(
            f"a {flops_reduction:.1%} MACs reduction is beyond what {constraint} allows: at most {best:.2%} "
            f"({len(groups)} prunable groups at their minimum widths; the rest of the {dense:,} MACs cannot be "
            "removed, see `secateurs explain`)")

    if scope == "global":
        config, n = _global_configs(groups)
    else:
        config, n = _local_configs(groups)
    k = _bisect(n, config, fits)
    hi = config(k)  # first selection within the budget along the ranking
    candidates = [hi] if within(hi) else []
    if k > 0 and (scope == "local" or not candidates):
        filled = _fill(groups, ev, config(k - 1), fits, within, scope)
        if filled is not None:
            candidates.append(filled)
    if not candidates:
        lo_red = 1 - ev.macs(config(k - 1)) / dense if k > 0 else 0.0
        got = 1 - ev.macs(hi) / dense
        raise SelectionError(
            f"cannot land within {tolerance:.0%} of a {flops_reduction:.1%} MACs reduction with {constraint} "
            f"({scope} scope): the nearest selections reach {lo_red:.2%} and {got:.2%}; the width steps are too "
            "coarse here (lower --round-to or --min-channels, or try the other --scope)")
    widths = max(candidates, key=ev.macs)  # the one closest to the budget
    kept = {g.id: g.kept(w) for g, w in zip(groups, widths) if w < g.width}
    macs = ev.exact(widths)
    if macs != ev.macs(widths):  # the fast evaluator and SoftMacsModel must agree exactly
        raise RuntimeError(f"internal error: MACs {ev.macs(widths)} (search) != {macs} (SoftMacsModel)")
    info = {"target": flops_reduction, "achieved": 1 - macs / max(dense, 1), "scope": scope,
            "min_channels": int(min_channels), "round_to": int(round_to), "normalize": normalize,
            **(dict(meta) if meta else {})}
    plan = PruningPlan.from_kept(graph, kept, meta=info)
    all_widths = {g.id: g.width for g in graph.groups}
    all_widths.update({g.id: w for g, w in zip(groups, widths)})
    return Selection(plan, macs, dense, flops_reduction, all_widths)


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


def compose_plans(first: PruningPlan, second: PruningPlan) -> PruningPlan:
    """The plan equivalent to applying ``first`` and then ``second`` (computed on the model ``first`` produced):
    indices of ``second`` are positions among ``first``'s kept channels. Used to re-prune a pruned checkpoint,
    whose ``model.json`` must replay one plan on a fresh dense model."""
    groups: dict[str, list[int]] = {}
    widths = dict(first.widths)
    for g, kept in first.groups.items():
        groups[g] = list(kept)
    for g, idx in second.groups.items():
        base = groups.get(g)
        if base is None:
            groups[g] = list(idx)
            widths[g] = second.widths[g]
            continue
        if second.widths[g] != len(base):
            raise ValueError(f"group {g!r}: the second plan expects width {second.widths[g]}, the first keeps "
                             f"{len(base)}")
        groups[g] = [base[i] for i in idx]
    meta = {**first.meta, **second.meta, "composed_of": [first.meta, second.meta]}
    return PruningPlan(groups, widths, first.model_spec or second.model_spec, meta)
