"""``explain(model, example_inputs)``: what can be pruned, how much each group is worth, what cannot and why.

It sits above both the channel graph and the cost models it reads. The MACs columns come from the same cost model
AutoBot optimises and selection prices with (``secateurs.cost.macs.MacsModel``), so the numbers a user reads are
the numbers the search uses: ``macs_all`` is what removing the whole group would save
(every other group at full width), ``macs_per_channel`` the average saving of one channel (dF/dλ at full width).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from .graph.groups import ChannelGraph, build_channel_graph


@dataclass
class GroupInfo:
    id: str
    width: int
    members: int  # layers (incl. norms) touched by the group
    macs_all: int  # MACs saved if every channel went (0 for unprunable groups)
    macs_share: float  # macs_all / total MACs
    macs_per_channel: float
    prunable: bool
    reason: str | None


@dataclass
class Explanation:
    graph: ChannelGraph
    total_macs: int
    groups: list[GroupInfo]
    unprunable: list[tuple[str, str]]

    def table(self) -> str:
        head = f"{'group':<34} {'width':>5} {'layers':>6} {'MACs(all)':>12} {'share':>7} {'MACs/ch':>10}  status"
        lines = [f"total MACs: {self.total_macs:,}", head, "-" * len(head)]
        for g in self.groups:
            status = "prunable" if g.prunable else f"fixed: {g.reason}"
            lines.append(
                f"{g.id:<34} {g.width:>5} {g.members:>6} {g.macs_all:>12,} {g.macs_share:>7.1%} "
                f"{g.macs_per_channel:>10,.0f}  {status}"
            )
        n = sum(g.prunable for g in self.groups)
        lines.append(f"{n}/{len(self.groups)} groups prunable (a layer between two groups counts in both)")
        if self.unprunable:
            lines.append("")
            lines.append("cannot be pruned:")
            lines += [f"  {name}: {why}" for name, why in self.unprunable]
        return "\n".join(lines)


def explain(model: nn.Module, example_inputs: Any, *, graph: ChannelGraph | None = None, **build_kw) -> Explanation:
    """Describe the channel groups of ``model`` (see module docstring). ``build_kw`` go to ``build_channel_graph``."""
    import torch

    from .cost.macs import MacsModel

    graph = graph if graph is not None else build_channel_graph(model, example_inputs, **build_kw)
    soft = MacsModel(graph)
    per_channel = soft.per_channel()
    infos = []
    for g in graph.groups:
        saved = 0
        if g.prunable:
            saved = soft.dense - int(round(float(soft({g.id: torch.zeros(g.width, dtype=torch.float64)}))))
        infos.append(GroupInfo(
            g.id, g.width, len(g.modules()), saved, saved / max(soft.dense, 1), per_channel.get(g.id, 0.0),
            g.prunable, g.reason,
        ))
    return Explanation(graph, soft.dense, infos, list(graph.unprunable))
