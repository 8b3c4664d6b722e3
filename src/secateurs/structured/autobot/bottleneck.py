"""AutoBot's bottlenecks: one trainable score vector per prunable coupled-channel group, λ = sigmoid(α).

Placement. The paper multiplies the activation by λ "after the last channel-preserving op" of each group and gates a
concatenation by the concatenation of its inputs' vectors. We multiply at the *inputs of the layers that read the
group* (``secateurs.graph.ChannelGate``): for a conv-BN-ReLU-conv chain that is the same tensor (after the producer's
norm and activation); after a residual add it is where the sum is read, and a concatenation needs no gate of its own
because its consumer applies each group's vector to that group's slice. This is the one place where multiplying a
channel by 0 is exactly removing it (docs/structured.md), so the hard-masked network *is* the pruned network.

The gates are forward pre-hooks only while the context is open: nothing is added to the model's modules, parameters
or state dict, and ``detach()`` leaves no hook behind.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn as nn

from ...graph.gates import ChannelGate
from ...graph.groups import ChannelGraph


class Bottlenecks:
    """The score parameters ``alphas[group] (width,)`` of every prunable group, and the gates that apply them.

    ``init`` is the initial score λ (the paper's 0.9); α is stored in float32 on ``device``.
    """

    def __init__(self, graph: ChannelGraph, init: float = 0.9, device: torch.device | str | None = None):
        if not 0 < init < 1:
            raise ValueError(f"initial score must be in (0, 1), got {init}")
        self.graph = graph
        alpha0 = math.log(init / (1 - init))
        self.alphas: dict[str, torch.Tensor] = {
            g.id: torch.full((g.width,), alpha0, dtype=torch.float32, device=device, requires_grad=True)
            for g in graph.prunable_groups()
        }
        self._gate: ChannelGate | None = None
        self._current: dict[str, torch.Tensor] | None = None

    def parameters(self) -> list[torch.Tensor]:
        return list(self.alphas.values())

    def scores(self) -> dict[str, torch.Tensor]:
        """Live λ = sigmoid(α) per group (differentiable)."""
        return {g: a.sigmoid() for g, a in self.alphas.items()}

    def refresh(self) -> dict[str, torch.Tensor]:
        """Compute λ once for the next forward (the gates read these tensors) and return them, so the loss terms and
        every consumer share one autograd node per group."""
        self._current = self.scores()
        return self._current

    def _live(self) -> dict[str, torch.Tensor]:
        return self._current if self._current is not None else self.scores()

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Detached float64 copy of the current scores (computed from α in float64, so they do not saturate at 1)."""
        return {g: a.detach().double().sigmoid().cpu() for g, a in self.alphas.items()}

    def attach(self, model: nn.Module) -> "Bottlenecks":
        """Start gating ``model``'s consumer inputs with the live scores; use as a context manager."""
        if self._gate is not None:
            raise RuntimeError("bottlenecks are already attached")
        self._gate = ChannelGate(model, self.graph, self._live)
        return self

    def detach(self) -> None:
        if self._gate is not None:
            self._gate.remove()
            self._gate = None
        self._current = None

    def __enter__(self) -> "Bottlenecks":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()


def n_scores(scores: Mapping[str, torch.Tensor]) -> int:
    return sum(int(v.numel()) for v in scores.values())
