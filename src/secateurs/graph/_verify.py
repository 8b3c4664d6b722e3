"""Detect coupling the tracer got wrong by doing the pruning: cut a copy, gate the original, compare.

The comparison runs in float64 on copies in eval mode, so any difference above round-off is a real error: a channel
mixed by an op the tracer thinks is channel-preserving (a mean over channels, a softmax over channels), a pad or
split whose sizes are written in forward code, or an index mapping gone wrong. Such groups are marked unprunable
with the error instead of being pruned wrongly later.
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from ._tp_adapter import as_tuple
from .gates import ChannelGate
from .types import ChannelGraph, block as _block
from .surgery import removal_indices, remove_channels

REL_TOL = 1e-9  # float64: exact up to round-off


@dataclass
class Equivalence:
    """Masked original vs physically pruned copy. ``max_rel_diff``: the largest difference at any probe relative to
    that probe's magnitude (``nan`` when every probe is all zeros: nothing could be compared). ``max_abs_diff``: the
    largest absolute difference of the model outputs."""

    max_abs_diff: float
    max_rel_diff: float
    probes: int  # probes compared (non-zero reference)
    degenerate: int  # probes whose reference is all zeros (skipped unless the pruned one is not)
    output_scale: float = 0.0  # the largest magnitude of the reference outputs (what max_abs_diff is against)


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


def _converted_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``deepcopy(model).to(dtype).eval()`` converting each tensor once (deepcopy would clone it first)."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point() and id(t) not in memo:
            new = t.detach().to(dtype, copy=True)
            memo[id(t)] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
    return copy.deepcopy(model, memo).eval()


def _capture(model: nn.Module, names: Sequence[str], store: dict[str, list[torch.Tensor]]) -> list:
    def hook(name):
        def pre(_m, args):
            if args and isinstance(args[0], torch.Tensor):
                store.setdefault(name, []).append(args[0].detach())
        return pre

    return [model.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]


def _largest(t: torch.Tensor) -> float:
    """``max |t|``, infinite where ``t`` holds a nan or an inf (``max`` over floats would drop a nan, and a
    comparison with nan is never "too far": a pruned model that outputs nan must fail the check, not pass it)."""
    m = float(t.abs().max())
    return m if math.isfinite(m) else math.inf


def equivalence(
    model: nn.Module, graph: ChannelGraph, removed: Mapping[str, Sequence[int]], example_inputs: Any,
    *, pruned: nn.Module | None = None, dtype: torch.dtype = torch.float64,
) -> Equivalence:
    """Compare ``model`` with ``removed`` channels gated to zero and its physically pruned copy (``pruned`` if
    already cut), both in eval mode and ``dtype``, *relative to the magnitude* of what is compared.

    Probes: every model output, and the input of every layer that produces a model output (the features the head
    reads, with the removed input channels dropped from the reference). The second probe is what keeps the check
    meaningful when the outputs are degenerate: a zero-initialised head outputs exact zeros whatever was pruned, and
    random-init deep nets can output 1e-12, where any absolute tolerance passes. Raises whatever the pruned forward
    raises."""
    inputs = tuple(_double(x) if dtype == torch.float64 else x for x in as_tuple(example_inputs))
    ref = _converted_copy(model, dtype)
    masks = {}
    for gid, chans in removed.items():
        m = torch.ones(graph[gid].width, dtype=dtype)
        m[list(chans)] = 0
        masks[gid] = m
    heads = [n for n in graph.output_layers if isinstance(ref.get_submodule(n), (nn.Linear, nn.modules.conv._ConvNd))]
    want_in: dict[str, list[torch.Tensor]] = {}
    got_in: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad(), ChannelGate(ref, graph, masks):
        handles = _capture(ref, heads, want_in)
        try:
            want = _flat(ref(*inputs))
        finally:
            for h in handles:
                h.remove()
    # one converted copy serves both passes: the reference runs first, then the same copy is cut in place
    cut = _converted_copy(pruned, dtype) if pruned is not None else remove_channels(ref, graph, removed)
    handles = _capture(cut, heads, got_in)
    try:
        with torch.no_grad():
            got = _flat(cut(*inputs))
    finally:
        for h in handles:
            h.remove()
    if len(got) != len(want) or any(a.shape != b.shape for a, b in zip(got, want)):
        raise RuntimeError(f"output shapes changed: {[tuple(t.shape) for t in want]} -> {[tuple(t.shape) for t in got]}")
    pairs = list(zip(want, got))
    cut_idx = removal_indices(graph, removed)
    for name in heads:
        module = ref.get_submodule(name)
        dim = -1 if isinstance(module, nn.Linear) else 1
        drop = set(cut_idx.get((name, "in"), ()))
        for a, b in zip(want_in.get(name, []), got_in.get(name, [])):
            keep = torch.tensor([i for i in range(a.shape[dim]) if i not in drop], dtype=torch.long, device=a.device)
            a = a.index_select(dim, keep)
            if a.shape != b.shape:
                raise RuntimeError(f"input of {name} changed shape: {tuple(a.shape)} -> {tuple(b.shape)}")
            pairs.append((a, b))
    abs_diff = max((_largest(a - b) for a, b in zip(want, got) if a.numel()), default=0.0)
    out_scale = max((_largest(a) for a in want if a.numel()), default=0.0)
    rel, probes, degenerate = 0.0, 0, 0
    for a, b in pairs:
        if not a.numel():
            continue
        scale, diff = _largest(a), _largest(a - b)
        if scale == 0.0:
            degenerate += 1
            if diff > 0:
                rel = math.inf
            continue
        probes += 1
        rel = max(rel, diff / scale if math.isfinite(scale) else math.inf)  # a non-finite reference: not verified
    return Equivalence(abs_diff, rel if probes or rel == math.inf else math.nan, probes, degenerate, out_scale)


def masked_vs_pruned(
    model: nn.Module, graph: ChannelGraph, removed: Mapping[str, Sequence[int]], example_inputs: Any,
    *, pruned: nn.Module | None = None, dtype: torch.dtype = torch.float64,
) -> float:
    """Max abs difference of the outputs of the masked and the pruned model (see ``equivalence``)."""
    return equivalence(model, graph, removed, example_inputs, pruned=pruned, dtype=dtype).max_abs_diff


def verify_graph(model: nn.Module, graph: ChannelGraph, example_inputs: Any, seed: int = 0) -> None:
    """Mark unprunable (with the failure) every prunable group whose removal is not equivalent to gating."""
    rng = random.Random(seed)
    removed = {
        g.id: sorted(rng.sample(range(g.width), max(1, g.width // 2)))
        for g in graph.prunable_groups() if g.width > 1
    }
    if not removed:
        return

    def failure(subset) -> str | None:
        try:
            eq = equivalence(model, graph, subset, example_inputs)
        except Exception as e:  # noqa: BLE001 — any failure of the pruned copy is the finding
            return f"pruning it breaks the forward pass ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        if eq.max_rel_diff > REL_TOL:  # nan (all probes zero) compares False: nothing to judge by
            return (f"pruning it changes the output vs zeroing its channels (relative diff {eq.max_rel_diff:.3g}): "
                    "an op between producer and consumers mixes channels or has sizes fixed in code")
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
