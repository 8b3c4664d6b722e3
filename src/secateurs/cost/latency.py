"""Latency as a cost model: predicted milliseconds of a forward pass as a function of the widths of the prunable
groups, on the device, batch size, thread count, dtype and runtime its profile was measured for
(:mod:`secateurs.cost.latency_profile`; measured by :mod:`secateurs.cost.profiling`).

For every conv/linear call l of the channel graph, with soft channel counts ĉ_in, ĉ_out (the same counts as the
MACs model: a group's channels weighted by how many of the layer's indices carry them)

    latency = constant + β · Σ_l T_l(ĉ_in, ĉ_out) + α · Σ_l rows_l · ĉ_out

where T_l is the measured table of the layer's signature, interpolated bilinearly (piecewise-linear in each width,
monotone by construction), and β, α, constant come from timing whole pruned models.

``exact`` (selections, targets, reports) reads every grid point, steps included. ``soft`` (AutoBot's loss, the
per-channel worth) reads each table's corners only (its smallest grid width -- one channel, a grouped conv's
smallest multiple -- and full width, per side: :func:`_secant`), i.e. the secant of the staircase: per layer,
between those corners, a bilinear function of (ĉ_in, ĉ_out) with the device's measured slopes (held below the
smallest width and extrapolated above full width, as for ``exact``).
The staircase's own gradient is zero on the flats and a spike at each step (a batch-64 conv on 16x16 maps: 2 ms
for its 17th channel, nothing for the next fifteen), and any finer piecewise-linear read still has flat segments
wherever its points fall on one stair (the quarters of a 32-wide group at batch 64: 24 and 32 cost the same).
A gate at full width then sees no price, and AutoBot's loss shut the groups it did see instead
(``benchmarks/results/latency_target_b64_free.md``, ``latency_target_b64_steady.md``). The two agree at the
corners, full width included (``dense``).

Attention heads (``graph.attention``): the matmuls no layer call covers (QKᵀ and AV; the functional projections
of ``nn.MultiheadAttention``) have no table of their own. Each is one more summand of Σ, linear in the soft count ĥ
of kept heads: ``r · coef · ĥ`` with coef its MACs per head (the MACs model's term) and r the layer tables' mean
ms per MAC at full width. It is scaled by β with the tables, so the whole-model fit (which times copies with heads
removed too) calibrates it like the rest. The interpolation is written
in torch, so ``soft`` is differentiable in per-channel gates or soft counts (AutoBot's loss); ``exact`` evaluates
it at hard 0/1 selections: a *predicted* latency, which the caller checks by timing the pruned model.
"""
from __future__ import annotations

import bisect
from typing import Mapping, Sequence

import torch

from ..graph.groups import ChannelGraph
from .base import CostModel
from .macs import MacsModel
from .latency_profile import LatencyProfile, LayerTable

__all__ = ["LatencyModel"]


class LatencyModel(CostModel):
    """The latency cost model of ``graph`` under ``profile`` (``dense``, ``constant`` and costs in ms)."""

    name = "latency"
    unit = "ms"

    def __init__(self, graph: ChannelGraph, profile: LatencyProfile):
        if len(profile.calls) != len(graph.layers) or any(
                c["module"] != l.module or c["in_channels"] != l.in_channels or c["out_channels"] != l.out_channels
                for c, l in zip(profile.calls, graph.layers)):
            raise ValueError("the latency profile was measured on another architecture (its layer calls differ "
                             "from the channel graph's)")
        self.profile = profile
        self._counts = MacsModel(graph)  # the soft channel counts per layer side: one definition with MACs
        self.widths = dict(self._counts.widths)
        self._tables: list[LayerTable] = [profile.tables[c["table"]] for c in profile.calls]
        secants = [_secant(t) for t in profile.tables]
        self._soft_tables: list[LayerTable] = [secants[c["table"]] for c in profile.calls]
        self._rows = [float(c["rows"]) for c in profile.calls]
        n = len(self._tables)  # the MACs terms: one per layer call, then one per attention module
        self._layers, self._heads = self._counts.terms[:n], self._counts.terms[n:]
        self._depthwise = [t.inp is None for t in self._layers]
        layer_macs = sum(t.macs for t in self._layers)
        self.ms_per_mac = 0.0  # r of the module docstring: the dense layer tables' ms over the layers' MACs
        if self._heads and layer_macs > 0:
            self.ms_per_mac = sum(ms for _, ms in self.layer_ms()[:n]) / layer_macs
        self._lists, self._full = {}, {}  # per (group, count vector): the vector as floats, and its sum
        for term in self._counts.terms:
            for side in (term.out, term.inp):
                for gid, a, _ in (side.groups if side is not None else ()):
                    self._lists[(gid, id(a))], self._full[(gid, id(a))] = a.tolist(), float(a.sum())
        self.beta, self.alpha = profile.beta, profile.alpha
        self.constant = float(profile.constant_ms)
        self.dense = float(self.soft({}))

    # -- the cost-model interface --------------------------------------------------------------------------------
    def soft(self, gates: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Predicted ms (0-d tensor) at soft widths, on the tables' secants (module docstring): ``gates[group]`` a
        per-channel vector or a 0-d soft count; groups not given are at full width."""
        s, e = self._sums(gates or {}, self._soft_tables)
        return self.constant + self.beta * s + self.alpha * e

    def exact(self, kept: Mapping[str, Sequence[int]]) -> float:
        """Predicted ms after keeping channels ``kept[group]`` (groups not listed keep all), on every grid point of
        the tables (``soft`` reads their corners: module docstring), in plain floats: selection strategies call
        it hundreds of times."""
        unknown = set(kept) - set(self.widths)
        if unknown:
            raise KeyError(f"not prunable groups: {sorted(unknown)}")
        cache: dict = {}

        def count(side) -> float:
            c = float(side.const)
            for gid, a, m in side.groups:
                key = (gid, id(a))
                if key not in cache:
                    if gid not in kept:
                        cache[key] = self._full[key]
                    elif m is not None:
                        cache[key] = m * len(kept[gid])
                    else:
                        lst = self._lists[key]
                        cache[key] = sum(lst[i] for i in kept[gid])
                c += cache[key]
            return c

        s = e = 0.0
        for i, term in enumerate(self._layers):
            c_out = count(term.out)
            c_in = c_out if term.inp is None else count(term.inp)
            s += _interp2(self._tables[i], c_in, c_out, self._depthwise[i])
            e += self._rows[i] * c_out
        for term in self._heads:
            s += self.ms_per_mac * term.coef * count(term.out)
        return self.constant + self.beta * s + self.alpha * e

    # -- parts ---------------------------------------------------------------------------------------------------
    def features(self, kept: Mapping[str, Sequence[int]]) -> tuple[float, float]:
        """(Σ layer-table ms, Σ output elements) at a hard selection: what the profile's fit regresses on."""
        s, e = self._sums(self._hard(kept), self._tables)
        return float(s), float(e)

    def layer_ms(self, kept: Mapping[str, Sequence[int]] | None = None) -> list[tuple[str, float]]:
        """Per layer call, its interpolated table ms (before β) at a hard selection (``None``: dense); then per
        attention module, its heads' estimated ms (module docstring)."""
        gates = self._hard(kept or {})
        cache: dict = {}
        out = []
        for i, term in enumerate(self._layers):
            c_out = self._counts._count(term.out, gates, cache)
            c_in = c_out if term.inp is None else self._counts._count(term.inp, gates, cache)
            out.append((term.module, float(_interp2(self._tables[i], c_in, c_out, self._depthwise[i]))))
        for term in self._heads:
            out.append((term.module, float(self.ms_per_mac * term.coef * self._counts._count(term.out, gates, cache))))
        return out

    def _hard(self, kept: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
        unknown = set(kept) - set(self.widths)
        if unknown:
            raise KeyError(f"not prunable groups: {sorted(unknown)}")
        gates = {}
        for gid, idx in kept.items():
            v = torch.zeros(self.widths[gid], dtype=torch.float64)
            v[list(idx)] = 1.0
            gates[gid] = v
        return gates

    def _sums(self, gates: Mapping[str, torch.Tensor], tables: Sequence[LayerTable]):
        unknown = set(gates) - set(self.widths)
        if unknown:
            raise KeyError(f"not prunable groups: {sorted(unknown)}; prunable: {sorted(self.widths)}")
        ref = next(iter(gates.values()), None)
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float64
        zero = torch.zeros((), dtype=dtype, device=ref.device if ref is not None else None)
        s, e = zero, zero
        cache: dict = {}
        for i, term in enumerate(self._layers):
            c_out = self._counts._count(term.out, gates, cache)
            c_in = c_out if term.inp is None else self._counts._count(term.inp, gates, cache)
            s = s + _interp2(tables[i], c_in, c_out, self._depthwise[i])
            e = e + self._rows[i] * c_out
        for term in self._heads:
            s = s + self.ms_per_mac * term.coef * self._counts._count(term.out, gates, cache)
        return s, e


def _secant(table: LayerTable) -> LayerTable:
    """``table`` at its corners only: the first and last point of each grid (the smallest width and full width)."""
    ki = sorted({0, len(table.in_grid) - 1})
    ko = sorted({0, len(table.out_grid) - 1})
    return LayerTable(table.signature, [table.in_grid[k] for k in ki], [table.out_grid[k] for k in ko],
                      [[table.ms[i][j] for j in ko] for i in ki])


def _weights(grid: Sequence[int], c) -> list[tuple[int, object]]:
    """Piecewise-linear interpolation weights of ``c`` (float or tensor) on ``grid``: [(index, weight)]; below the
    smallest grid width the value is held at the smallest point (extrapolating there could reach negative ms for
    soft counts < 1), above the largest it extrapolates the last segment."""
    if len(grid) == 1:
        return [(0, 1.0)]
    v = float(c.detach()) if isinstance(c, torch.Tensor) else float(c)
    if v <= grid[0]:
        return [(0, 1.0)]
    i = min(max(bisect.bisect_right(grid, v) - 1, 0), len(grid) - 2)
    u = (c - grid[i]) / (grid[i + 1] - grid[i])
    return [(i, 1 - u), (i + 1, u)]


def _interp2(table: LayerTable, c_in, c_out, depthwise: bool):
    """The table's ms at (c_in, c_out), bilinear between grid points (a depthwise table varies c_in only)."""
    wi = _weights(table.in_grid, c_in)
    wo = [(0, 1.0)] if depthwise else _weights(table.out_grid, c_out)
    return sum(a * b * table.ms[i][j] for i, a in wi for j, b in wo)
