"""Per-group channel gates applied at the *inputs of the layers that read a group* (its consumers).

Why consumer inputs. Removing channel ``c`` of a group deletes the producer's filter ``c``, the norm statistics of
``c`` and the input slice ``c`` of every consumer. Multiplying the producer's conv output by 0 is *not* equivalent:
a BatchNorm after it still adds ``beta - gamma*mean/std`` and the activation passes that on. But every path from the
group's channels to the rest of the network ends at a consumer (a conv/linear that reads them, or a depthwise conv,
whose output channels belong to the same group and are read again by the next consumer), and the only thing a
consumer does with input channel ``c`` is multiply it by weights that removal deletes. So zeroing ``c`` at every
consumer input is exactly removal, whatever sits between producer and consumer (norms, activations, residual adds,
pooling, concatenations). This is also where AutoBot's bottleneck scores go: for a plain conv-BN-ReLU-conv chain the
consumer input *is* "after the producer's norm and activation"; after a residual add the gate is applied where the
sum is read, which is the same for hard 0/1 masks. A concatenation needs no gate of its own: its consumer sees
several groups at offsets and multiplies each slice by that group's vector (``GatePoint.positions``).

Attention heads (``_attention.py``) are gated where their result is read: the head's columns of the output
projection, which ``nn.MultiheadAttention`` applies functionally, so there the gate scales those weight columns for
the duration of the call instead of an input.

A consumer's gate vector is assembled per call from the current group vectors, so gates can be live tensors
(``sigmoid(alpha)``) that receive gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Union

import torch
import torch.nn as nn

from . import _attention
from .types import ChannelGraph

GateSource = Union[Mapping[str, torch.Tensor], Callable[[], Mapping[str, torch.Tensor]]]


@dataclass(frozen=True)
class GatePoint:
    """Group ``group`` is read by ``module``'s input channels ``positions``; position k carries group channel
    ``channels[k]``. ``dim`` is the channel dimension of the module input (1 for convs, -1 for linears)."""

    module: str
    group: str
    positions: tuple[int, ...]
    channels: tuple[int, ...]
    dim: int


def gate_points(graph: ChannelGraph, *, include_unprunable: bool = False) -> dict[str, list[GatePoint]]:
    """Module name -> the gate points on its input, for every (prunable) group. A module reading a concatenation
    has one point per group in it."""
    out: dict[str, list[GatePoint]] = {}
    linear = {c.module for c in graph.layers if c.op == "linear"}
    for g in graph.groups:
        if not (g.prunable or include_unprunable):
            continue
        for m in g.consumers():
            dim = -1 if m.module in linear else 1
            out.setdefault(m.module, []).append(GatePoint(m.module, g.id, m.indices, m.channels, dim))
    return out


class ChannelGate:
    """Multiply every consumer input by its groups' gate vectors (forward pre-hooks; the model code is untouched).

    ``gates``: group id -> vector of length ``width`` (float, or bool masks), or a zero-argument callable returning
    such a mapping (evaluated on every forward, e.g. ``lambda: {g: a.sigmoid() for g, a in alphas.items()}``).
    Groups missing from the mapping are not gated. Use as a context manager or call ``remove()``.
    """

    def __init__(self, model: nn.Module, graph: ChannelGraph, gates: GateSource):
        self._source = gates
        self._points = gate_points(graph)
        self._index_cache: dict[tuple[str, str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles = []
        for name, points in self._points.items():
            module = model.get_submodule(name)
            if _attention.is_packed(module):
                self._handles += _attention.gate_hooks(module, points, self._gates)
            else:
                self._handles.append(module.register_forward_pre_hook(self._hook(points)))

    def _gates(self) -> Mapping[str, torch.Tensor]:
        return self._source() if callable(self._source) else self._source

    def _hook(self, points: list[GatePoint]):
        def pre_hook(module, args):
            x = args[0]
            gates = self._gates()
            active = [p for p in points if p.group in gates]
            if not active:
                return None
            dim = active[0].dim % x.dim()
            vec = torch.ones(x.shape[dim], dtype=x.dtype, device=x.device)
            for p in active:
                pos, ch = self._indices(p, x.device)
                # gates may live elsewhere (masks are built on the CPU): follow the activation's device and dtype
                vec = vec.index_copy(0, pos, gates[p.group].to(device=x.device, dtype=x.dtype)[ch])
            shape = [1] * x.dim()
            shape[dim] = -1
            return (x * vec.view(shape),) + tuple(args[1:])

        return pre_hook

    def _indices(self, p: GatePoint, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (p.module, p.group, device)
        if key not in self._index_cache:
            self._index_cache[key] = (
                torch.tensor(p.positions, dtype=torch.long, device=device),
                torch.tensor(p.channels, dtype=torch.long, device=device),
            )
        return self._index_cache[key]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "ChannelGate":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
