"""The result of every selection strategy: which channels each group keeps, what they cost, how it was found."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plan import PruningPlan
    from ..target import Target


@dataclass
class Selection:
    """``kept``: channel indices per group that loses channels (groups not listed keep all); ``cost``: exact cost
    of that selection in the target's unit; ``dense``: the unpruned cost. ``method`` says which strategy (and
    which of its stages) produced it: ``global`` / ``local`` (ranking), ``threshold`` / ``ranked`` / ``greedy``
    (AutoBot's threshold search); ``threshold`` is θ when a single threshold hit the window. ``widths``: kept width
    of every group the strategy saw. ``plan``: the selection as a ``PruningPlan`` when the strategy had the graph."""

    kept: dict[str, list[int]]
    cost: float
    dense: float
    target: "Target"
    method: str
    widths: dict[str, int] = field(default_factory=dict)
    threshold: float | None = None
    iterations: int = 0
    plan: "PruningPlan | None" = None

    @property
    def reduction(self) -> float:
        """Achieved reduction ``1 - cost / dense``."""
        return 1 - self.cost / self.dense if self.dense > 0 else 0.0  # latency in ms may be < 1

    @property
    def macs(self) -> float:  # the MACs target's names
        return self.cost

    @property
    def macs_dense(self) -> float:
        return self.dense
