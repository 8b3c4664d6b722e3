"""Coupled channel groups (mechanism), gates at consumer inputs and physical channel removal.

Public surface::

    graph = build_channel_graph(model, example_inputs)      # ChannelGraph: groups, unprunable layers, layer calls
    with ChannelGate(model, graph, {group_id: vector}): ...  # multiply consumer inputs by per-group vectors
    remove_channels(model, graph, {group_id: [channels]})   # physical surgery (in place)
    explain(model, example_inputs).table()

Criteria (channel scores) and policies (selection) live in ``secateurs.structured``; only ``_tp_adapter`` imports
Torch-Pruning.
"""
from ._layers import LayerCall
from ._tp_adapter import GraphLimits
from .explain import Explanation, GroupInfo, explain
from .gates import ChannelGate, GatePoint, gate_points
from .groups import build_channel_graph
from .types import ChannelGraph, ChannelGroup, Member
from .surgery import remove_channels, removal_indices

__all__ = [
    "ChannelGate", "ChannelGraph", "ChannelGroup", "Explanation", "GatePoint", "GraphLimits", "GroupInfo", "LayerCall", "Member",
    "build_channel_graph", "explain", "gate_points", "removal_indices", "remove_channels",
]
