"""Scores -> kept channels: one global threshold θ such that the *exact* MACs of the hard selection meet the target.

Every group keeps its highest-scoring channel whatever θ is (a group cannot vanish). MACs of a hard 0/1 selection
are exact from ``SoftMacsModel.macs_at`` (the structured core proves it against the counter), so no candidate
network is ever built.

1. Binary search on θ (papers.md: start 0.5, step 0.25, halving, at most 50 iterations) until the achieved reduction
   is within ``tolerance`` (absolute, e.g. 0.005 = ±0.5 point) of the requested one.
2. Binarised scores are often tied or so close that θ cannot separate them, and one channel can move MACs by more
   than the tolerance. Then: rank every channel globally (score, then α, then group and index: deterministic), and
   binary-search the longest prefix of that ranking whose MACs stay at or under the upper bound — this is the
   threshold search at one-channel resolution.
3. If that prefix is still short of the lower bound (a big channel just above it jumps past the window), repair
   greedily: add lower-ranked channels that fit, in rank order; failing that, take the next prefix (over the window)
   and drop its lowest-ranked channels whose removal does not undershoot it (fine-grained channels, e.g. of a linear
   layer, absorb the jump of a coarse conv channel).
If nothing lands in the window, ``ValueError`` says which reductions are reachable around the target.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ...errors import UnreachableTargetError
from ...soft_flops import SoftMacsModel


@dataclass
class Selection:
    kept: dict[str, list[int]]
    threshold: float | None  # θ when the binary search hit the target, else None
    macs: int
    reduction: float
    method: str  # "threshold" | "ranked" | "greedy"
    iterations: int


def _forced(scores: Mapping[str, torch.Tensor], alphas: Mapping[str, torch.Tensor]) -> dict[str, int]:
    return {g: int(torch.argmax(alphas[g])) for g in scores}


def kept_at(scores: Mapping[str, torch.Tensor], threshold: float, forced: Mapping[str, int]) -> dict[str, list[int]]:
    """Channels with λ > θ, plus each group's best channel."""
    out = {}
    for g, s in scores.items():
        idx = set(torch.nonzero(s > threshold).flatten().tolist())
        idx.add(forced[g])
        out[g] = sorted(idx)
    return out


def search_threshold(
    scores: Mapping[str, torch.Tensor], soft: SoftMacsModel, reduction: float, *, tolerance: float = 0.005,
    alphas: Mapping[str, torch.Tensor] | None = None, max_iter: int = 50,
) -> Selection:
    """Kept channels per group whose exact MACs reduction is within ``tolerance`` of ``reduction``."""
    if not 0 < reduction < 1:
        raise ValueError(f"flops reduction must be in (0, 1), got {reduction}")
    scores = {g: s.detach().double().cpu() for g, s in scores.items()}
    alphas = alphas if alphas is not None else {g: torch.logit(s) for g, s in scores.items()}
    alphas = {g: a.detach().double().cpu() for g, a in alphas.items()}
    dense = soft.total
    lo, hi = (1 - reduction - tolerance) * dense, (1 - reduction + tolerance) * dense  # MACs window
    forced = _forced(scores, alphas)

    def measure(kept) -> int:
        return soft.macs_at(kept)

    floor = measure({g: [i] for g, i in forced.items()})
    if floor > hi:
        raise UnreachableTargetError(
            f"flops reduction {reduction:.4f} is out of reach: keeping one channel per prunable group leaves "
            f"{floor:,} of {dense:,} MACs (a reduction of {1 - floor / dense:.4f}); the rest is in layers that "
            "cannot be pruned (see `secateurs explain`)")

    # 1. binary search on θ
    theta, step = 0.5, 0.25
    for it in range(1, max_iter + 1):
        kept = kept_at(scores, theta, forced)
        macs = measure(kept)
        if lo <= macs <= hi:
            return Selection(kept, theta, macs, 1 - macs / dense, "threshold", it)
        theta = theta + step if macs > hi else theta - step
        step /= 2

    # 2. the same search at one-channel resolution over the global ranking
    ranked = sorted(((float(scores[g][i]), float(alphas[g][i]), g, i) for g in scores
                     for i in range(len(scores[g])) if i != forced[g]), key=lambda r: (-r[0], -r[1], r[2], r[3]))

    def prefix(k: int) -> dict[str, list[int]]:
        kept = {g: [i] for g, i in forced.items()}
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
        return Selection({g: sorted(v) for g, v in kept.items()}, None, macs, 1 - macs / dense, "ranked", iterations)

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
            return Selection({g: sorted(v) for g, v in kept.items()}, None, m, 1 - m / dense, "greedy", iterations)
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
                return Selection({g: sorted(v) for g, v in kept.items()}, None, m, 1 - m / dense, "greedy",
                                 iterations)
    else:
        above = below
    raise UnreachableTargetError(
        f"no selection reaches a flops reduction of {reduction:.4f} ± {tolerance:.4f}: in score order the nearest "
        f"reachable reductions are {1 - below / dense:.4f} and {1 - above / dense:.4f} (single channels move MACs by "
        f"more than the tolerance in this network); choose a reduction near one of them or a larger tolerance")
