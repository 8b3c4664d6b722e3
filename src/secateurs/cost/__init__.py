"""Cost models: the price of a network as a function of the channels its prunable groups keep.

``CostModel`` (``cost.base``) is the interface that selection, AutoBot's loss, ``explain`` and the reports use;
``MacsModel`` (``cost.macs``) prices multiply-accumulates, ``LatencyModel`` (``cost.latency``) milliseconds on a
measured device (``cost.latency_profile``; docs/latency.md). ``cost_model(kind, graph)`` builds one by name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import CostModel

if TYPE_CHECKING:
    from ..graph.groups import ChannelGraph

__all__ = ["COST_MODELS", "CostModel", "MacsModel", "LatencyModel", "cost_model"]

COST_MODELS = ("macs", "latency")


def cost_model(kind: str, graph: "ChannelGraph", **kw) -> CostModel:
    """The cost model called ``kind`` (one of ``COST_MODELS``) of ``graph`` (``latency`` needs ``profile=``, a
    ``LatencyProfile`` of the graph's architecture)."""
    if kind == "macs":
        from .macs import MacsModel

        return MacsModel(graph, **kw)
    if kind == "latency":
        from .latency import LatencyModel

        return LatencyModel(graph, **kw)
    raise ValueError(f"unknown cost model {kind!r}; known: {', '.join(COST_MODELS)}")


def __getattr__(name: str):
    if name == "MacsModel":
        from .macs import MacsModel

        return MacsModel
    if name == "LatencyModel":
        from .latency import LatencyModel

        return LatencyModel
    raise AttributeError(f"module 'secateurs.cost' has no attribute {name!r}")
