"""The records of the channel graph: ``Member``, ``ChannelGroup``, ``ChannelGraph``, ``AttentionCall``.

Plain data, no tracing: the builder (``groups.py``), the verification (``_verify.py``), gates, surgery, the cost
models, criteria and plans all read these, so keeping them apart from the builder is what lets the builder import
the verification without an import circle. The meaning of groups and members is documented in ``groups.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from ._layers import LayerCall

#: member kinds. 'out'/'in': output/input channels of a conv or linear; 'dw': depthwise conv (input and output
#: channel removed together); 'norm': per-channel norm; 'prelu'; 'param': a bare nn.Parameter; 'other': any other
#: module Torch-Pruning would touch; 'mha': the heads of an ``nn.MultiheadAttention`` (indices: its in-projection
#: rows; removed inside the module, which both produces and reads them); 'heads': the ``num_heads`` bookkeeping of
#: attention written with Linears (indices: head numbers; see ``_attention.py``).
KINDS = ("out", "in", "dw", "norm", "prelu", "param", "other", "mha", "heads")
PER_CHANNEL_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
CROSS_CHANNEL_NORMS = (nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Member:
    module: str
    kind: str
    indices: tuple[int, ...]  # channel indices in the member's own coordinates
    channels: tuple[int, ...]  # group channel of each index (same length)

    @property
    def side(self) -> str:
        """Which pruning function removes these indices: 'in' for consumers, 'heads' for attention heads, 'out' for
        everything else."""
        return "in" if self.kind == "in" else "heads" if self.kind in ("mha", "heads") else "out"


@dataclass
class ChannelGroup:
    id: str  # "<root module>:out": stable for an architecture, so plans apply to fresh copies
    width: int
    members: list[Member]
    prunable: bool = True
    reason: str | None = None

    def consumers(self) -> list[Member]:
        """Members that *read* the group's channels: where removing a channel equals zeroing it (gate points)."""
        return [m for m in self.members if m.kind in ("in", "dw", "mha")]

    def producers(self) -> list[Member]:
        return [m for m in self.members if m.kind in ("out", "dw", "mha")]

    def modules(self) -> list[str]:
        return list(dict.fromkeys(m.module for m in self.members))


@dataclass(frozen=True)
class AttentionCall:
    """The MACs of an attention module that scale with its heads and no Linear layer call covers (QKᵀ and AV;
    for ``nn.MultiheadAttention`` its functional projections too), per example, at full width."""

    module: str
    group: str  # id of its head group
    heads: int
    head_dim: int
    macs: int


@dataclass
class ChannelGraph:
    groups: list[ChannelGroup]
    unprunable: list[tuple[str, str]]  # (layer or op, why it cannot be pruned)
    layers: list[LayerCall] = field(default_factory=list)  # conv/linear calls of the example forward
    total_macs: int = 0  # exact MACs of the example forward (all ops the counter knows)
    output_layers: list[str] = field(default_factory=list)  # layers whose output is a model output (probe points)
    attention: list[AttentionCall] = field(default_factory=list)  # attention modules with a head group

    def __getitem__(self, group_id: str) -> ChannelGroup:
        for g in self.groups:
            if g.id == group_id:
                return g
        raise KeyError(f"no channel group {group_id!r}; known: {', '.join(g.id for g in self.groups)}")

    def __contains__(self, group_id: str) -> bool:
        return any(g.id == group_id for g in self.groups)

    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def widths(self) -> dict[str, int]:
        return {g.id: g.width for g in self.groups}



def block(group: ChannelGroup, reason: str) -> None:
    """Mark ``group`` unprunable, adding ``reason`` (once) to its reasons."""
    if reason not in (group.reason or ""):
        group.reason = f"{group.reason}; {reason}" if group.reason else reason
    group.prunable = False
