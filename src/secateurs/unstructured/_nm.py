"""N:M semi-structured masks: at most N non-zeros in every M consecutive weights along a row's input dimension.

A weight is viewed as ``rows × K`` (``Linear``: out × in; conv: out_channels × in·kh·kw, flattened per output
channel in PyTorch's memory order). Each row is cut into groups of M consecutive entries; a pattern row keeps the
N largest-magnitude entries of every group. When K is not a multiple of M the last, short group of r entries keeps
min(N, r) (as if padded with zeros to M: the kernels pad the same way), so such a tensor is slightly denser than
1 − N/M.

How a schedule maps onto a pattern (the design, also in docs/cyclical.md): the schedule's value s(t) sets the
*fraction of rows* under the pattern, f(t) = s(t) / (1 − N/M); the other rows stay dense. In each tensor the
``floor(f·rows + ½)`` rows whose pattern removes the least magnitude (sum of |w| pruned) go under the pattern.
So one-shot patterns every row at its prune step, GMP ramps the patterned fraction cubically, and a cyclical
restart to s = 0 makes every row dense again (weights pruned by mistake can return); at the final sparsity,
which must be the pattern's 1 − N/M, every row is N:M. With ``forced`` (cumulative pruning) rows that were
patterned stay patterned and pruned entries are ranked first within their group, so masks only shrink.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ._masks import num_pruned

__all__ = ["Pattern", "nm_keep", "nm_masks", "is_nm"]


@dataclass(frozen=True)
class Pattern:
    """``n`` of every ``m`` consecutive weights kept (1 ≤ n < m)."""

    n: int
    m: int

    def __post_init__(self):
        if not (isinstance(self.n, int) and isinstance(self.m, int) and 1 <= self.n < self.m <= 1024):
            raise ValueError(f"pattern {self.n}:{self.m}: need integers 1 <= N < M <= 1024")

    @classmethod
    def parse(cls, value: "str | Pattern") -> "Pattern":
        if isinstance(value, Pattern):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(value))
        if not match:
            raise ValueError(f"pattern {value!r} is not of the form N:M (e.g. 2:4)")
        return cls(int(match[1]), int(match[2]))

    @property
    def sparsity(self) -> float:
        """The sparsity the pattern gives a tensor whose rows are a multiple of M long: 1 − N/M."""
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1) if t.dim() >= 2 else t.reshape(1, -1)


def nm_keep(score: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """Keep-mask (shape of ``score``) with the N highest scores of every M consecutive entries of each row."""
    s = _rows(score).float()
    rows, k = s.shape
    pad = (-k) % pattern.m
    if pad:  # padding ranks below everything, so a short group keeps min(N, r) real entries
        s = torch.cat([s, s.new_full((rows, pad), -math.inf)], 1)
    groups = s.view(rows, -1, pattern.m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, torch.topk(groups, pattern.n, dim=2, sorted=False).indices, True)
    return keep.view(rows, -1)[:, :k].reshape(score.shape)


def nm_masks(scores: dict[str, torch.Tensor], sparsity: float, pattern: Pattern,
             forced: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Keep-masks putting the fraction ``sparsity / pattern.sparsity`` of each tensor's rows under ``pattern``.

    ``scores`` are magnitudes (≥ 0). ``forced`` (True = must stay pruned) keeps earlier pruning (cumulative).
    A ``sparsity`` above the pattern's raises ``ValueError``.
    """
    if sparsity > pattern.sparsity + 1e-12:
        raise ValueError(f"sparsity {sparsity:g} is more than pattern {pattern} gives ({pattern.sparsity:g})")
    fraction = min(max(sparsity, 0.0) / pattern.sparsity, 1.0)
    out = {}
    for name, score in scores.items():
        s = score.float()
        must = forced[name] if forced else None
        if must is not None:
            s = s.masked_fill(must, -1.0)  # below every magnitude: pruned first within its group
        keep = _rows(nm_keep(s, pattern))
        cost = (_rows(score).float() * ~keep).sum(1)  # magnitude the pattern would remove from each row
        rows = cost.numel()
        count = num_pruned(fraction, rows)
        if must is not None:
            stuck = _rows(must).any(1)
            cost = cost.masked_fill(stuck, -math.inf)  # patterned before: stays patterned
            count = max(count, int(stuck.sum()))
        mask = torch.ones_like(keep)
        if count:
            chosen = torch.topk(cost, count, largest=False, sorted=False).indices
            mask[chosen] = keep[chosen]
        if must is not None:
            mask &= ~_rows(must)
        out[name] = mask.view(score.shape)
    return out


def is_nm(weight: torch.Tensor, pattern: Pattern) -> bool:
    """Whether every row of ``weight`` has at most N non-zeros in every M consecutive entries (short group: N)."""
    w = _rows(weight) != 0
    rows, k = w.shape
    pad = (-k) % pattern.m
    if pad:
        w = torch.cat([w, w.new_zeros(rows, pad)], 1)
    return bool((w.view(rows, -1, pattern.m).sum(2) <= pattern.n).all())
