"""The cost-model interface: what selection, AutoBot's loss, ``explain`` and the reports ask of a cost.

A cost model prices a network as a function of how many channels each prunable coupled group keeps. It is built
from a ``ChannelGraph`` (``graph.prunable_groups()`` gives ``widths``) and answers three questions:

* ``exact(kept)`` -- the cost after keeping these channel indices (groups not listed keep all);
* ``soft(gates)`` -- a differentiable 0-d tensor of the cost at soft widths (per-channel gate vectors of length
  ``width``, or 0-d soft counts; groups not given are at full width), so ``soft(all ones) == exact({}) == dense``;
* ``per_channel()`` -- the gradient of ``soft`` per channel of each group at full width (for MACs the marginal cost
  of a channel; for latency the slope of the tables' secants, ``cost.latency``).

``constant`` is the part of ``dense`` no prunable group controls. MACs (``cost.macs.MacsModel``) is the first
implementation. Importing this module imports nothing heavy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import torch

__all__ = ["CostModel"]


class CostModel:
    """Abstract base; see the module docstring. Subclasses set ``name``, ``unit``, ``widths``, ``dense`` and
    ``constant`` and implement ``soft`` and ``exact``; ``per_channel`` follows from ``soft``."""

    name: str  # "macs" | "latency"
    unit: str  # "MACs" | "ms"
    widths: dict[str, int]  # prunable group id -> full width
    dense: float  # cost of the unpruned model
    constant: float  # the part no prunable group controls

    def soft(self, gates: Mapping[str, "torch.Tensor"] | None = None) -> "torch.Tensor":
        raise NotImplementedError

    def exact(self, kept: Mapping[str, Sequence[int]]) -> float:
        raise NotImplementedError

    def per_channel(self) -> dict[str, float]:
        """The cost one channel of each group is worth at full width: the mean over its channels of the gradient
        of ``soft`` at all-ones gates."""
        import torch

        gates = {g: torch.ones(w, dtype=torch.float64, requires_grad=True) for g, w in self.widths.items()}
        if not gates:
            return {}
        self.soft(gates).backward()
        return {g: float(v.grad.mean()) for g, v in gates.items()}

    @property
    def quantity(self) -> str:
        """What the cost counts, in words for messages: "MACs", or the model's name ("latency")."""
        return "MACs" if self.unit == "MACs" else self.name

    def reduction(self, kept: Mapping[str, Sequence[int]]) -> float:
        """The fraction of ``dense`` that keeping ``kept`` removes: ``1 - exact(kept) / dense``."""
        return 1 - self.exact(kept) / self.dense if self.dense > 0 else 0.0

    def __call__(self, gates: Mapping[str, "torch.Tensor"] | None = None) -> "torch.Tensor":
        return self.soft(gates)
