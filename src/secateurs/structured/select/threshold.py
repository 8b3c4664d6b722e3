"""Threshold strategy (AutoBot's): one global threshold θ on the trained scores such that the *exact* cost of the
hard selection lands in the target's window ``[R, R + tolerance]``.

Every group keeps its highest-scoring channel whatever θ is (a group cannot vanish); with ``min_fraction = f`` it
keeps at least ``ceil(f · width)`` of its best channels (by α), so no group is thinned below that fraction. The cost of a hard selection
is exact from ``CostModel.exact`` (for MACs: the count of the physically pruned network, tested), so no candidate
network is ever built.

1. Binary search on θ (start 0.5, step 0.25, halving, at most ``max_iter`` iterations) until the exact cost lands
   in the window.
2. Binarised scores are often tied or so close that θ cannot separate them, and one channel can move the cost by
   more than the tolerance. Then: rank every channel globally (score, then α, then group and index:
   deterministic), and binary-search the longest prefix of that ranking whose cost stays within the budget --
   the threshold search at one-channel resolution.
3. If that prefix is still below the window's floor (a big channel just above it jumps past the window), repair
   greedily: add lower-ranked channels that fit, in rank order; failing that, take the next prefix (over the
   budget) and drop its lowest-ranked channels whose removal does not undershoot the floor (fine-grained channels,
   e.g. of a linear layer, absorb the jump of a coarse conv channel).
If nothing lands in the window, ``TargetError`` says which reductions are reachable around the target.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from ...cost.base import CostModel
from ..target import DEFAULT_TOLERANCE, Target
from ._free import default_free, restore_free
from .result import Selection


def _forced_count(width: int, min_fraction: float) -> int:
    """How many channels of a group of ``width`` every selection keeps: one, and at least ceil(min_fraction·width)."""
    return max(1, math.ceil(min_fraction * width - 1e-9))


def autobot_floor(width: int, round_to: int = 1, min_fraction: float = 0.0) -> int:
    """The fewest channels the threshold search leaves a group of ``width``: its forced channels rounded up to a
    multiple of ``round_to`` (at least ``round_to``), at most the width."""
    return min(width, max(round_to, math.ceil(_forced_count(width, min_fraction) / round_to) * round_to))


def floor_text(min_fraction: float = 0.0, round_to: int = 1) -> str:
    """The floor in words, for the reachability error: what every group keeps."""
    text = f"min_fraction={min_fraction:g} of every prunable group" if min_fraction > 0 else \
        "one channel per prunable group"
    return text + (f", round_to={round_to}" if round_to > 1 else "")


def floor_selection(widths: Mapping[str, int], round_to: int = 1,
                    min_fraction: float = 0.0) -> tuple[dict[str, list[int]], str]:
    """Every group at the floor (its first ``autobot_floor`` channels), and the floor in words: the smallest
    selection the threshold search can reach, for checking a target before any bottleneck training."""
    kept = {g: list(range(autobot_floor(w, round_to, min_fraction))) for g, w in widths.items()}
    return kept, floor_text(min_fraction, round_to)


def _forced(scores: Mapping[str, torch.Tensor], alphas: Mapping[str, torch.Tensor],
            min_fraction: float = 0.0) -> dict[str, list[int]]:
    """Per group the channels every selection keeps: its best ``_forced_count`` (by α, then index)."""
    out = {}
    for g in scores:
        a = alphas[g]
        out[g] = sorted(sorted(range(len(a)), key=lambda i: (-float(a[i]), i))[:_forced_count(len(a), min_fraction)])
    return out


def kept_at(scores: Mapping[str, torch.Tensor], threshold: float,
            forced: Mapping[str, int | list[int]]) -> dict[str, list[int]]:
    """Channels with λ > θ, plus each group's forced channels (its best one, or a list)."""
    out = {}
    for g, s in scores.items():
        idx = set(torch.nonzero(s > threshold).flatten().tolist())
        f = forced[g]
        idx.update([f] if isinstance(f, int) else f)
        out[g] = sorted(idx)
    return out


def search_threshold(
    scores: Mapping[str, torch.Tensor], cost: CostModel, reduction: float | Target, *,
    tolerance: float = DEFAULT_TOLERANCE, alphas: Mapping[str, torch.Tensor] | None = None, max_iter: int = 50,
    round_to: int = 1, min_fraction: float = 0.0, free: float = 0.0,
) -> Selection:
    """Kept channels per group whose exact reduction of ``cost`` lies in ``[R, R + tolerance]`` (``reduction``
    is R, or a ``Target``). ``round_to`` K > 1: a group that loses channels keeps a multiple of K, its best-scored
    ones (the count a threshold leaves rounded to the nearest multiple, at least K); step 3 then grows groups by
    K channels at a time (best-scored steps first) instead of one. ``min_fraction``: every group keeps at least
    that fraction of its channels (its best by α). ``free`` > 0: keep the channels that cost at most this
    fraction of their group's mean channel (``_free``; default 0: off, the paper's selection; MACs, linear in each
    width, have nothing free anyway)."""
    if not (0.0 <= min_fraction < 1.0) or math.isnan(min_fraction):
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction!r}")
    target = reduction if isinstance(reduction, Target) else Target(reduction, tolerance)
    scores = {g: s.detach().double().cpu() for g, s in scores.items()}
    alphas = alphas if alphas is not None else {g: torch.logit(s) for g, s in scores.items()}
    alphas = {g: a.detach().double().cpu() for g, a in alphas.items()}
    dense = cost.dense
    lo, hi = target.floor(dense), target.budget(dense)  # the cost window
    forced = _forced(scores, alphas, min_fraction)
    snap = plain = _snapper(scores, alphas, forced, int(round_to))
    free = default_free(free, cost.unit)  # checked in [0, 1)
    freed = _keeping_free(plain, scores, alphas, forced, int(round_to), cost, free) if free > 0 else None
    if freed is not None and cost.exact(freed({g: list(f) for g, f in forced.items()})) <= hi:
        snap = freed  # steps 1 and 2 keep free channels (unless that puts even the smallest selection over budget)

    def measure(kept) -> float:
        return cost.exact(snap(kept))

    def result(kept, c, method, iterations, theta=None) -> Selection:
        kept = snap(kept)
        if freed is not None and snap is plain:  # step 3 stops mid-stair: keep what is free there if in the window
            more = freed(kept)
            if lo <= cost.exact(more) <= hi:
                kept, c = more, cost.exact(more)
        kept = {g: sorted(v) for g, v in kept.items()}
        return Selection(kept, c, dense, target, method, {g: len(v) for g, v in kept.items()}, theta, iterations)

    target.check_reachable(cost, plain({g: list(f) for g, f in forced.items()}), floor_text(min_fraction, round_to))

    # 1. binary search on θ
    theta, step = 0.5, 0.25
    for it in range(1, max_iter + 1):
        kept = kept_at(scores, theta, forced)
        macs = measure(kept)
        if lo <= macs <= hi:
            return result(kept, macs, "threshold", it, theta)
        theta = theta + step if macs > hi else theta - step
        step /= 2

    # 2. the same search at one-channel resolution over the global ranking
    ranked = sorted(((float(scores[g][i]), float(alphas[g][i]), g, i) for g in scores
                     for i in range(len(scores[g])) if i not in forced[g]), key=lambda r: (-r[0], -r[1], r[2], r[3]))

    def prefix(k: int) -> dict[str, list[int]]:
        kept = {g: list(f) for g, f in forced.items()}
        for _, _, g, i in ranked[:k]:
            kept[g].append(i)
        return kept

    a, b = 0, len(ranked)  # invariant: prefix(a) fits under hi; find the largest such a
    if measure(prefix(b)) <= hi:
        a = b
    while b - a > 1:
        mid = (a + b) // 2
        if measure(prefix(mid)) <= hi:
            a = mid
        else:
            b = mid
    kept = prefix(a)
    macs = measure(kept)
    iterations = max_iter
    if macs >= lo:
        return result(kept, macs, "ranked", iterations)
    snap = plain  # 3. below: the greedy repairs move single channels (or round_to steps) without the free pass
    macs = measure(kept)
    if round_to > 1:
        grown = _grow_in_steps(snap(kept), scores, alphas, forced, int(round_to), measure, lo, hi)
        if grown is not None:
            return result(grown[0], grown[1], "greedy", iterations)
        above = measure(prefix(a + 1)) if a < len(ranked) else macs
        raise target.error(
            f"no selection with round_to={round_to} reaches a reduction in [{target.reduction:.4f}, "
            f"{target.reduction + target.tolerance:.4f}]: the nearest in score order reach {1 - macs / dense:.4f} "
            f"and {1 - above / dense:.4f}; choose a reduction near one of them, a larger tolerance or a smaller "
            "round_to")

    # 3. greedy repair: fill up from below with lower-ranked channels that fit, else come down from above by
    #    dropping the lowest-ranked kept channels whose removal does not undershoot the window
    below = macs
    for _, _, g, i in ranked[a + 1:]:
        kept[g].append(i)
        m = measure(kept)
        if m > hi:
            kept[g].pop()
            continue
        if m >= lo:
            return result(kept, m, "greedy", iterations)
    if a < len(ranked):
        kept = prefix(a + 1)
        above = measure(kept)
        for _, _, g, i in reversed(ranked[:a + 1]):
            kept[g].remove(i)
            m = measure(kept)
            if m < lo:
                kept[g].append(i)
                continue
            if m <= hi:
                return result(kept, m, "greedy", iterations)
    else:
        above = below
    raise target.error(
        f"no selection reaches a reduction in [{target.reduction:.4f}, {target.reduction + target.tolerance:.4f}]: "
        f"in score order the nearest reachable reductions are {1 - below / dense:.4f} and {1 - above / dense:.4f} "
        f"(single channels move the {cost.unit} by more than the tolerance in this network); choose a reduction "
        "near one of them or a larger tolerance")


def _snapper(scores, alphas, forced, round_to: int):
    """``kept -> kept`` with every group that loses channels keeping a multiple of ``round_to`` (at least
    ``round_to`` and never fewer than its forced channels: the multiple at or above their count), its best
    channels in (forced first, score, α, index) order; the identity for 1."""
    if round_to == 1:
        return lambda kept: kept
    order = {g: sorted(range(len(s)), key=lambda i: (i not in forced[g], -float(s[i]), -float(alphas[g][i]), i))
             for g, s in scores.items()}

    def snap(kept):
        out = {}
        for g, idx in kept.items():
            w = len(order[g])
            k = max(round_to, int(round(len(idx) / round_to)) * round_to,
                    math.ceil(len(forced[g]) / round_to) * round_to)
            out[g] = list(range(w)) if len(idx) >= w or k >= w else sorted(order[g][:k])
        return out

    return snap


def _keeping_free(snap, scores, alphas, forced, round_to: int, cost: CostModel, free: float):
    """``snap`` followed by keeping each group's free channels (``_free``: best-scored first, in steps of
    ``round_to``)."""
    groups = list(scores)
    smallest = snap({g: list(f) for g, f in forced.items()})
    order = {g: sorted(range(len(s)), key=lambda i: (i not in forced[g], -float(s[i]), -float(alphas[g][i]), i))
             for g, s in scores.items()}

    def kept_free(kept):
        base = snap(kept)
        rest = {g: [i for i in order[g] if i not in set(base[g])] for g in groups}

        def at(counts):  # below the current count (the range's low end only): the smallest selection's channels
            return {g: sorted(base[g] + rest[g][:c - len(base[g])]) if c >= len(base[g]) else smallest[g]
                    for g, c in zip(groups, counts)}

        allowed = [[len(smallest[g])] + [c for c in range(len(base[g]) + 1, len(scores[g]) + 1)
                                         if c % round_to == 0 or c == len(scores[g])] for g in groups]
        return at(restore_free([len(base[g]) for g in groups], allowed, lambda cs: cost.exact(at(cs)), free))

    return kept_free


def _grow_in_steps(kept, scores, alphas, forced, k: int, measure, lo: float, hi: float):
    """From ``kept`` (within the budget, below the window's floor: too much removed) add ``k`` channels at a time to
    one group, the step with the best mean score first, while the cost stays within the budget; (kept, cost) once
    it reaches the floor, else ``None``."""
    kept = {g: list(v) for g, v in kept.items()}
    while True:
        steps = []
        for g, s in scores.items():
            w = len(s)
            if len(kept[g]) >= w:
                continue
            rest = sorted((i for i in range(w) if i not in set(kept[g])),
                          key=lambda i: (-float(s[i]), -float(alphas[g][i]), i))
            step = rest[:k] if len(kept[g]) + k < w else rest
            steps.append((-sum(float(s[i]) for i in step) / len(step), g, step))
        for _, g, step in sorted(steps):
            trial = {**kept, g: sorted(kept[g] + step)}
            c = measure(trial)
            if c <= hi:
                kept = trial
                if c >= lo:
                    return kept, c
                break
        else:
            return None
