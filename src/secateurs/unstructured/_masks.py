"""Magnitude masks with an exact pruned count, per layer or global.

Count rule (documented, used everywhere, including ``finalize``): a tensor with ``n`` entries pruned at sparsity
``s`` loses exactly ``k = floor(s·n + 1/2)`` entries (round half up) — per tensor for ``scope="layer"``, over the
concatenation of all prunable tensors for ``scope="global"``. Ties in magnitude are broken by
``torch.topk``, which is deterministic on a given device; under DDP the sparsifier broadcasts rank 0's masks.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch

__all__ = ["num_pruned", "magnitude_mask", "magnitude_masks"]


def num_pruned(sparsity: float, n: int) -> int:
    """How many of ``n`` entries are pruned at ``sparsity``: ``floor(s·n + 1/2)``, clamped to ``[0, n]``."""
    return min(max(int(math.floor(sparsity * n + 0.5)), 0), n)


def magnitude_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean keep-mask (same shape as ``score``) with the ``k`` lowest scores set to False."""
    flat = score.reshape(-1)
    n = flat.numel()
    if k <= 0:
        return torch.ones_like(flat, dtype=torch.bool).view_as(score)
    if k >= n:
        return torch.zeros_like(flat, dtype=torch.bool).view_as(score)
    if k <= n - k:
        mask = torch.ones_like(flat, dtype=torch.bool)
        mask[torch.topk(flat, k, largest=False, sorted=False).indices] = False
    else:
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[torch.topk(flat, n - k, largest=True, sorted=False).indices] = True
    return mask.view_as(score)


def magnitude_masks(scores: dict[str, torch.Tensor], sparsity: float, scope: str = "layer",
                    forced: dict[str, torch.Tensor] | None = None,
                    min_kept: dict[str, int] | None = None,
                    live_rows: Mapping[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Keep-masks pruning the lowest ``scores`` at ``sparsity``.

    ``forced`` (name → bool tensor, True = must stay pruned) implements cumulative pruning: those entries are
    ranked below everything and the pruned count never drops below their number (masks only shrink).
    ``min_kept`` (name → count): each tensor keeps at least its that many largest entries; they are ranked above
    everything, so the pruned count stays exact. A count the sparsity cannot leave room for raises ``ValueError``.
    ``live_rows`` (name → the dimension indexing the tensor's outputs): in each of these tensors every output
    (a ``Linear`` row, a conv's output channel) keeps its largest entry. Those entries are ranked above all
    others, and among themselves by score. When a tensor keeps fewer entries than it has outputs, the outputs
    with the largest such entries are the ones kept. The pruned count stays exact.
    """
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if forced:
        scores = {k: v.float().masked_fill(forced[k], -math.inf) for k, v in scores.items()}
    if live_rows:
        # per layer, each tensor is ranked alone: only a guarded tensor's own spread matters for its offset
        scores = _protect_rows(scores, live_rows, spread_of=live_rows if scope == "layer" else None)
    if min_kept:
        scores = {k: _protect_top(v, min_kept.get(k, 0)) for k, v in scores.items()}
    if scope == "layer":
        out = {}
        for name, sc in scores.items():
            k = num_pruned(sparsity, sc.numel())
            if forced:
                k = max(k, int(forced[name].sum()))
            m = min_kept.get(name, 0) if min_kept else 0
            if sc.numel() - k < m:
                raise ValueError(f"{name}: sparsity {sparsity:g} keeps {sc.numel() - k} entries, fewer than the "
                                 f"required minimum of {m}")
            out[name] = magnitude_mask(sc, k)
        return out
    names = list(scores)
    dtype = torch.float64 if any(scores[n].dtype == torch.float64 for n in names) else torch.float32
    flat = torch.cat([scores[n].reshape(-1).to(dtype) for n in names])
    k = num_pruned(sparsity, flat.numel())
    if forced:
        k = max(k, sum(int(forced[n].sum()) for n in names))
    protected = sum(min(min_kept.get(n, 0), scores[n].numel()) for n in names) if min_kept else 0
    if flat.numel() - k < protected:
        raise ValueError(f"sparsity {sparsity:g} keeps {flat.numel() - k} entries, fewer than the {protected} the "
                         "per-tensor minimums require")
    return split_like(magnitude_mask(flat, k), {n: scores[n] for n in names})


def _protect_rows(scores: dict[str, torch.Tensor], rows: Mapping[str, int], *,
                  spread_of: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """``scores`` with each row's largest entry of the tensors in ``rows`` raised above every other score.

    ``rows`` maps a tensor's name to the dimension that indexes its outputs (0 for ``Linear`` / conv weights, 1
    for a transposed conv's). The raise is one offset, larger than the spread of all finite scores, so the
    raised entries keep their order among themselves (when a tensor keeps fewer entries than it has rows, the
    strongest rows win) and rank above every unraised entry of the tensors named in ``spread_of`` (default
    all: what global scope ranks together). The raised tensors are float64 so the offset does not swallow
    their differences. Entries at ``-inf`` (forced pruned) are never raised: a row whose entries are all forced
    stays empty."""
    hi = lo = None
    names = scores if spread_of is None else spread_of
    for v in (scores[n] for n in names):  # per tensor: no concatenated copy of every score
        finite = torch.isfinite(v)
        if bool(finite.any()):
            t_hi = float(v.masked_fill(~finite, -math.inf).amax())
            t_lo = float(v.masked_fill(~finite, math.inf).amin())
            hi = t_hi if hi is None else max(hi, t_hi)
            lo = t_lo if lo is None else min(lo, t_lo)
    offset = (hi - lo) + 1.0 if hi is not None else 1.0
    out = dict(scores)
    for name, dim in rows.items():
        sc = scores[name]
        if sc.dim() <= dim or sc.numel() == 0:
            continue
        moved = sc.double().movedim(dim, 0)
        flat = moved.reshape(moved.shape[0], -1).clone()
        top = flat.argmax(dim=1, keepdim=True)
        best = flat.gather(1, top)
        flat.scatter_(1, top, torch.where(torch.isfinite(best), best + offset, best))
        out[name] = flat.view(moved.shape).movedim(0, dim)
    return out


def _protect_top(score: torch.Tensor, m: int) -> torch.Tensor:
    """``score`` with its ``m`` largest entries raised to +inf (ranked above everything else)."""
    if m <= 0:
        return score
    flat = score.reshape(-1).to(torch.promote_types(score.dtype, torch.float32)).clone()
    flat[torch.topk(flat, min(m, flat.numel())).indices] = math.inf
    return flat.view_as(score)


def split_like(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut a flat tensor (the concatenation of ``like``'s tensors, in order) back into views of their shapes."""
    out, i = {}, 0
    for name, ref in like.items():
        n = ref.numel()
        out[name] = flat[i:i + n].view_as(ref)
        i += n
    return out
