"""Physical channel removal for a set of groups.

All indices are collected per (module, side) over *all* groups before anything is cut: a consumer of a
concatenation belongs to several groups, and cutting one group's slice first would shift the offsets of the next.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch.nn as nn

from . import _tp_adapter
from .groups import ChannelGraph


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
    for (name, side), idxs in removal_indices(graph, removed).items():
        _tp_adapter.prune_module(model.get_submodule(name), side, idxs)
    return model
