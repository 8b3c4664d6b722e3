"""Differentiable MACs of a network as a function of soft channel counts per coupled group (AutoBot's F(λ)).

Built once from a ``ChannelGraph``: every conv/linear *call* becomes one term

    MACs = coef · ĉ_in · ĉ_out          (ordinary conv / linear; coef = rows · kernel / groups)
    MACs = coef · ĉ_out                 (depthwise conv: in and out are the same channels; coef = rows · kernel)

where ĉ_in (ĉ_out) = constant channels + Σ_groups a_g · λ_g. ``a_g`` counts, for each channel of group g, how many of
the layer's input (output) indices carry it: 1 normally, H·W for a map flattened into a linear, and 0 for channels a
split sends elsewhere. A layer reading a concatenation therefore sums the ĉ of its groups, and a layer whose input
and output are both pruned is bilinear in two score vectors. MACs of anything no group controls (unprunable
layers, matmuls of the exact counter) are a constant, so F(λ = 1) equals the exact count by construction and
F(hard 0/1 selection) equals the exact count of the physically pruned network (tested).

Attention heads (``graph.attention``): the MACs of an attention module that no layer call covers (QKᵀ and AV, and
for ``nn.MultiheadAttention`` its functional projections) are one term ``coef · ĥ`` in the soft count ĥ of kept
heads (coef = MACs per head at full width), so heads trade against every other group's channels.

Gates may be per-channel vectors (length = group width; ĉ = a·λ) or 0-d soft counts ĉ = Σλ; a scalar is only
accepted for groups that every layer reads uniformly (not through a split), where a·λ = m·Σλ.
MACs (not FLOPs = 2·MACs) for the example batch the graph was built with (docs/design.md). ``MacsModel`` is the
first implementation of ``cost.base.CostModel``: ``soft`` is F, ``exact`` evaluates F at a hard 0/1 selection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch

from ..graph.groups import ChannelGraph
from .base import CostModel


@dataclass
class _Side:
    const: int  # channels no prunable group controls
    groups: list[tuple[str, torch.Tensor, float | None]]  # (group id, counts per channel, uniform count or None)


@dataclass
class _Term:
    module: str
    coef: float
    inp: _Side | None  # None: input channel count does not scale (depthwise)
    out: _Side
    macs: int  # at full width


class MacsModel(CostModel):
    """``F(gates) -> 0-d tensor`` of MACs; see the module docstring. ``constant`` is the part no group controls."""

    name = "macs"
    unit = "MACs"

    def __init__(self, graph: ChannelGraph):
        self.widths = {g.id: g.width for g in graph.prunable_groups()}
        counts = _member_counts(graph)
        self.terms: list[_Term] = []
        for call in graph.layers:
            out = _side(counts, call.module, "out", call.out_channels)
            if call.depthwise:
                term = _Term(call.module, float(call.rows * call.kernel), None, out, call.macs)
            else:
                inp = _side(counts, call.module, "in", call.in_channels)
                term = _Term(call.module, call.rows * call.kernel / call.groups, inp, out, call.macs)
            self.terms.append(term)
        for att in graph.attention:  # heads: linear in the kept count (module docstring)
            self.terms.append(_Term(att.module, att.macs / att.heads, None,
                                    _side(counts, att.module, "heads", att.heads), att.macs))
        self.dense = int(graph.total_macs)
        self.constant = self.dense - sum(t.macs for t in self.terms)

    def soft(self, gates: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        gates = gates or {}
        unknown = set(gates) - set(self.widths)
        if unknown:
            raise KeyError(f"not prunable groups: {sorted(unknown)}; prunable: {sorted(self.widths)}")
        ref = next(iter(gates.values()), None)
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float64
        total = torch.tensor(float(self.constant), dtype=dtype, device=ref.device if ref is not None else None)
        cache: dict[tuple[str, int], torch.Tensor] = {}
        for t in self.terms:
            c_out = self._count(t.out, gates, cache)
            total = total + t.coef * (c_out if t.inp is None else self._count(t.inp, gates, cache) * c_out)
        return total

    def _count(self, side: _Side, gates, cache) -> torch.Tensor | float:
        c: torch.Tensor | float = float(side.const)
        for gid, a, m in side.groups:
            if gid not in gates:
                c = c + float(a.sum())
                continue
            key = (gid, id(a))
            if key not in cache:
                cache[key] = self._dot(gid, a, m, gates[gid])
            c = c + cache[key]
        return c

    def _dot(self, gid: str, a: torch.Tensor, m: float | None, g: torch.Tensor) -> torch.Tensor:
        if g.dim() == 0:
            if m is None:
                raise ValueError(f"group {gid} is read unevenly (through a split); pass a per-channel vector")
            return m * g
        if g.shape != (self.widths[gid],):
            raise ValueError(f"gate of group {gid} has shape {tuple(g.shape)}; expected ({self.widths[gid]},)")
        return (a.to(device=g.device, dtype=g.dtype if g.is_floating_point() else torch.float64) * g).sum()

    def exact(self, kept: Mapping[str, Sequence[int]]) -> int:
        """Exact MACs after keeping only channels ``kept[group]`` (groups not listed keep all)."""
        gates = {}
        for gid, idx in kept.items():
            v = torch.zeros(self.widths[gid], dtype=torch.float64)
            v[list(idx)] = 1.0
            gates[gid] = v
        return int(round(float(self.soft(gates))))




def _member_counts(graph: ChannelGraph) -> dict[tuple[str, str], list[tuple[str, torch.Tensor, float | None]]]:
    """(module, side) -> [(group id, counts per group channel)] over prunable groups."""
    out: dict[tuple[str, str], list[tuple[str, torch.Tensor]]] = {}
    for g in graph.prunable_groups():
        for m in g.members:
            sides: Iterable[str] = ("in", "out") if m.kind == "dw" else (m.kind,) if m.kind in ("in", "out") else ()
            if m.side == "heads":  # one count per kept head, whatever the member's indices are
                a = torch.zeros(g.width, dtype=torch.float64)
                a[sorted(set(m.channels))] = 1.0
                out.setdefault((m.module, "heads"), []).append((g.id, a, 1.0 if bool((a == 1).all()) else None))
            for side in sides:
                a = torch.zeros(g.width, dtype=torch.float64)
                a.index_add_(0, torch.tensor(m.channels, dtype=torch.long), torch.ones(len(m.channels), dtype=torch.float64))
                uniform = float(a[0]) if bool((a == a[0]).all()) else None
                out.setdefault((m.module, side), []).append((g.id, a, uniform))
    return out


def _side(counts, module: str, side: str, channels: int) -> _Side:
    groups = counts.get((module, side), [])
    covered = sum(int(a.sum()) for _, a, _ in groups)
    return _Side(channels - covered, groups)
