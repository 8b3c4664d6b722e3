"""Physical channel removal for a set of groups.

All indices are collected per (module, side) over *all* groups before anything is cut: a consumer of a
concatenation belongs to several groups, and cutting one group's slice first would shift the offsets of the next.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from . import _attention, _tp_adapter
from ._layers import is_depthwise
from .types import ChannelGraph


def removal_indices(graph: ChannelGraph, removed: Mapping[str, Iterable[int]]) -> dict[tuple[str, str], list[int]]:
    """(module, side) -> sorted indices to cut, for ``removed``: group id -> group channels to remove."""
    per: dict[tuple[str, str], set[int]] = {}
    for gid, chans in removed.items():
        group = graph[gid]
        drop = {int(c) for c in chans}
        if not drop:
            continue
        if not group.prunable:
            raise ValueError(f"group {gid} is not prunable: {group.reason}")
        bad = [c for c in drop if not 0 <= c < group.width]
        if bad:
            raise ValueError(f"group {gid} has {group.width} channels; cannot remove {sorted(bad)}")
        if len(drop) >= group.width:
            raise ValueError(f"group {gid}: removing all {group.width} channels would disconnect the network")
        for m in group.members:
            idx = {i for i, c in zip(m.indices, m.channels) if c in drop}
            per.setdefault((m.module, m.side), set()).update(idx)
    return {k: sorted(v) for k, v in per.items() if v}


def remove_channels(model: nn.Module, graph: ChannelGraph, removed: Mapping[str, Iterable[int]]) -> nn.Module:
    """Cut the channels ``removed`` (group id -> group channels) out of ``model`` in place; returns ``model``."""
    cuts = removal_indices(graph, removed)
    for (name, side), idxs in cuts.items():
        if side == "heads":
            continue  # after the projections: replacing a module must not hide its Linears from the cuts above
        module = model.get_submodule(name)
        if side == "in" and isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 \
                and not is_depthwise(module):
            _prune_grouped_conv_inputs(module, idxs)
        else:
            _tp_adapter.prune_module(module, side, idxs)
    for (name, side), idxs in cuts.items():
        if side == "heads":
            _attention.remove_heads(model, name, idxs)
    return model


def _prune_grouped_conv_inputs(conv: nn.modules.conv._ConvNd, idxs: Sequence[int]) -> None:
    """Remove input channels ``idxs`` of a grouped conv: conv group ``b`` (its rows of the weight) keeps the columns
    of its own kept inputs. Every conv group must lose equally many (the graph ties them so)."""
    g, size = conv.groups, conv.in_channels // conv.groups
    drop = set(int(i) for i in idxs)
    keep = [[i - b * size for i in range(b * size, (b + 1) * size) if i not in drop] for b in range(g)]
    if len({len(k) for k in keep}) != 1 or not keep[0]:
        raise ValueError(f"grouped conv: removing inputs {sorted(drop)} leaves unequal conv groups {keep}")
    rows = conv.out_channels // g
    w = conv.weight.data
    parts = [w[b * rows:(b + 1) * rows][:, torch.tensor(keep[b], dtype=torch.long, device=w.device)] for b in range(g)]
    conv.weight = nn.Parameter(torch.cat(parts, 0).contiguous(), requires_grad=conv.weight.requires_grad)
    conv.in_channels = g * len(keep[0])
