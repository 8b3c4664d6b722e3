"""What a structured pruning call aims at: a reduction of one cost, as a budget.

``Target(reduction=R, tolerance=t, cost="macs")`` asks for a selection that removes **at least R and at most
R + t** of the dense cost (a budget window ``[R, R + t]``; default t = 1 point). Every selection strategy
(``structured.select``: global and local ranking, AutoBot's threshold search) lands in this one window or raises
``TargetError``. A budget, not ``R ± t/2``: "half the MACs" is a ceiling the pruned network must not exceed (a
deployment constraint), and a window that lets it keep more than asked would silently miss it.

``TargetError`` carries the argument that set the target (``flops_reduction``), its value, the reason and, where
known, the largest reachable reduction; the command line maps it to its flag by type. ``target_from_keywords``
turns the front door's keywords into a ``Target`` in one place, so another target keyword (a latency reduction)
is one more branch there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from ..errors import ArgumentError, UnreachableTargetError

if TYPE_CHECKING:
    from ..cost.base import CostModel
    from ..graph.groups import ChannelGraph

__all__ = ["DEFAULT_TOLERANCE", "Target", "TargetError", "target_from_keywords"]

DEFAULT_TOLERANCE = 0.01

# target keyword -> the cost model it reduces
_KEYWORDS = {"flops_reduction": "macs"}


class TargetError(ArgumentError, UnreachableTargetError):
    """No selection reaches the target: ``argument`` (e.g. ``flops_reduction``) = ``value``; ``reason`` says why
    and ``reachable`` is the largest reachable reduction when the target is beyond it (else ``None``)."""

    def __init__(self, argument: str, value, reason: str, reachable: float | None = None):
        self.reachable = reachable
        super().__init__(argument, value, reason)


@dataclass(frozen=True)
class Target:
    """Remove between ``reduction`` and ``reduction + tolerance`` of the dense ``cost`` (see the module
    docstring). ``argument`` names the keyword (or flag) that asked, for errors."""

    reduction: float
    tolerance: float = DEFAULT_TOLERANCE
    cost: str = "macs"
    argument: str = "flops_reduction"

    def __post_init__(self) -> None:
        r, t = self.reduction, self.tolerance
        if not (isinstance(r, (int, float)) and math.isfinite(r) and 0 <= r < 1):
            raise ValueError(f"{self.argument} must be in [0, 1), got {r!r}")
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
            raise ValueError(f"tolerance must be >= 0, got {t!r}")

    def budget(self, dense: float) -> float:
        """The most cost a selection may keep: ``(1 - R) * dense``."""
        return (1 - self.reduction) * dense

    def floor(self, dense: float) -> float:
        """The least cost a selection may keep: ``(1 - R - tolerance) * dense``."""
        return (1 - self.reduction - self.tolerance) * dense

    def contains(self, cost: float, dense: float) -> bool:
        """Whether a selection of this exact ``cost`` lands in the window (with a float slack of 1e-9 of dense)."""
        eps = 1e-9 * dense
        return self.floor(dense) - eps <= cost <= self.budget(dense) + eps

    def cost_model(self, graph: "ChannelGraph") -> "CostModel":
        """The cost model this target reduces, built from ``graph``."""
        from ..cost import cost_model

        return cost_model(self.cost, graph)

    def check_reachable(self, cost: "CostModel", smallest: Mapping[str, Sequence[int]], constraint: str) -> None:
        """Raise ``TargetError`` if even ``smallest`` (the strategy's smallest selection, e.g. every group at its
        minimum width) keeps more than the budget. ``constraint`` says what made it the smallest."""
        least = cost.exact(smallest)
        if least <= self.budget(cost.dense) + 1e-9 * cost.dense:
            return
        best = 1 - least / cost.dense if cost.dense > 0 else 0.0
        dense = f"{cost.dense:,}" if isinstance(cost.dense, int) else f"{cost.dense:.4g}"
        if best < 5e-5:  # "at most 0.00%": say what it means (seen on a GPU, where small models are launch-bound)
            raise self.error(
                f"a {self.reduction:.1%} {cost.quantity} reduction is out of reach: with {len(cost.widths)} "
                f"prunable groups at their minimum widths ({constraint}) the {cost.quantity} model predicts no "
                f"reduction of the {dense} {cost.unit} at all; in this setting the {cost.quantity} does not "
                "depend on the widths (see `secateurs explain`)", reachable=max(best, 0.0))
        raise self.error(
            f"a {self.reduction:.1%} {cost.quantity} reduction is beyond what "
            f"{constraint} allows: at most {best:.2%} "
            f"(out of reach: {len(cost.widths)} prunable groups at their minimum widths; the rest of the "
            f"{dense} {cost.unit} cannot be removed, see `secateurs explain`)", reachable=best)

    def error(self, reason: str, reachable: float | None = None) -> TargetError:
        return TargetError(self.argument, self.reduction, reason, reachable)


def target_from_keywords(*, flops_reduction: float | None = None, tolerance: float | None = None) -> Target:
    """The ``Target`` of the front door's target keywords: exactly one must be given."""
    given = {k: v for k, v in {"flops_reduction": flops_reduction}.items() if v is not None}
    if len(given) != 1:
        raise TypeError(f"give exactly one target ({', '.join(_KEYWORDS)}); got {sorted(given) or 'none'}")
    (argument, value), = given.items()
    return Target(float(value), DEFAULT_TOLERANCE if tolerance is None else float(tolerance), _KEYWORDS[argument],
                  argument)
