"""Detect coupling the tracer got wrong by doing the pruning: cut a copy, gate the original, compare.

The comparison runs in float64 on copies in eval mode, so any difference above round-off is a real error: a channel
mixed by an op the tracer thinks is channel-preserving (a mean over channels, a softmax over channels), a pad or
split whose sizes are written in forward code, or an index mapping gone wrong. Such groups are marked unprunable
with the error instead of being pruned wrongly later.
"""
from __future__ import annotations

import copy
import random
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from ._tp_adapter import as_tuple
from .gates import ChannelGate
from .groups import ChannelGraph, _block
from .surgery import remove_channels

REL_TOL = 1e-9  # float64: exact up to round-off


def _flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    return []


def _double(x: Any) -> Any:
    return x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def masked_vs_pruned(
    model: nn.Module, graph: ChannelGraph, removed: Mapping[str, Sequence[int]], example_inputs: Any,
    *, pruned: nn.Module | None = None, dtype: torch.dtype = torch.float64,
) -> float:
    """Max abs difference between ``model`` with ``removed`` channels gated to zero and its physically pruned copy
    (``pruned`` if already cut), both in eval mode and ``dtype``. Raises whatever the pruned forward raises."""
    inputs = tuple(_double(x) if dtype == torch.float64 else x for x in as_tuple(example_inputs))
    ref = copy.deepcopy(model).to(dtype).eval()
    masks = {}
    for gid, chans in removed.items():
        m = torch.ones(graph[gid].width, dtype=dtype)
        m[list(chans)] = 0
        masks[gid] = m
    with torch.no_grad(), ChannelGate(ref, graph, masks):
        want = _flat(ref(*inputs))
    cut = copy.deepcopy(pruned) if pruned is not None else remove_channels(copy.deepcopy(model), graph, removed)
    cut = cut.to(dtype).eval()
    with torch.no_grad():
        got = _flat(cut(*inputs))
    if len(got) != len(want) or any(a.shape != b.shape for a, b in zip(got, want)):
        raise RuntimeError(f"output shapes changed: {[tuple(t.shape) for t in want]} -> {[tuple(t.shape) for t in got]}")
    return max((float((a - b).abs().max()) for a, b in zip(got, want) if a.numel()), default=0.0)


def _scale(model: nn.Module, example_inputs: Any) -> float:
    ref = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        outs = _flat(ref(*(_double(x) for x in as_tuple(example_inputs))))
    return max([1.0] + [float(o.abs().max()) for o in outs if o.numel()])


def verify_graph(model: nn.Module, graph: ChannelGraph, example_inputs: Any, seed: int = 0) -> None:
    """Mark unprunable (with the failure) every prunable group whose removal is not equivalent to gating."""
    rng = random.Random(seed)
    removed = {
        g.id: sorted(rng.sample(range(g.width), max(1, g.width // 2)))
        for g in graph.prunable_groups() if g.width > 1
    }
    if not removed:
        return
    tol = REL_TOL * _scale(model, example_inputs)

    def failure(subset) -> str | None:
        try:
            diff = masked_vs_pruned(model, graph, subset, example_inputs)
        except Exception as e:  # noqa: BLE001 — any failure of the pruned copy is the finding
            return f"pruning it breaks the forward pass ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        if diff > tol:
            return (f"pruning it changes the output vs zeroing its channels (max diff {diff:.3g}): an op between "
                    "producer and consumers mixes channels or has sizes fixed in code")
        return None

    if failure(removed) is None:
        return
    for gid in list(removed):
        why = failure({gid: removed[gid]})
        if why is not None:
            _block(graph[gid], why)
            removed.pop(gid)
    if removed and failure(removed) is not None:
        for gid in removed:
            _block(graph[gid], "pruning it together with the other groups fails verification")
