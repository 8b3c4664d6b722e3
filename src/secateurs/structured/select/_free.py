"""Keeping the channels a cost model says are free.

Used by the criteria's ranking (``ranking.select_channels``), and by AutoBot's threshold search only when asked
(``AutoBotConfig.free`` > 0; default off). A latency table is a staircase in a layer's widths
(kernels work in blocks of the vector length; see ``cost.latency_profile._grid``): cutting a 32-channel conv to
17 channels saves almost nothing, to 16 most of its time. A selection that stops mid-stair pays the accuracy of
the channels it removed and gets no speed for them. So every group is raised to the widest allowed width whose
extra cost averages at most ``free`` times the group's own mean cost per channel (its whole removable range
priced at the other groups' current widths) per restored channel. Relative to the group's own mean, a cost that
is linear in the group's width (MACs, or a table without steps) never has a free channel; only a stair does. The
ranking searches with this pass inside its cost function, so the target window is met by the selection as
returned (and it falls back to the plain search when that finds nothing).

Off by default in AutoBot's threshold search: its pruned channels are the ones its gates learned to close, and
putting them back changes the function the kept channels were trained to compute around. (A batch-64 run with the pass in
both strategies, ``benchmarks/results/latency_target_b64_free_both.md``, had AutoBot-latency at chance before
fine-tuning, 10.1 / 8.3 % on resnet20; but the run without it in AutoBot, ``latency_target_b64_free.md``, was at
18.7 / 9.8 % too, from the staircase in its loss (``cost.latency``), so that run does not separate the two.)

Default ``free``: ``FREE_FRACTION`` for latency, 0 (off) for MACs, which are linear in each group's width.
"""
from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["FREE_FRACTION", "default_free", "restore_free"]

FREE_FRACTION = 0.1


def default_free(free: float | None, unit: str) -> float:
    """``free`` as given, else the default for a cost counted in ``unit``; checked in [0, 1) (at 1 a cost linear in
    the width would be "free" up to rounding)."""
    if free is None:
        free = 0.0 if unit == "MACs" else FREE_FRACTION
    if not (0.0 <= free < 1.0):
        raise ValueError(f"free must be in [0, 1), got {free!r}")
    return float(free)


def restore_free(widths: Sequence[int], allowed: Sequence[Sequence[int]], cost: Callable[[list[int]], float],
                 free: float) -> list[int]:
    """Each group ``i`` in turn raised from ``widths[i]`` to the widest of ``allowed[i]`` (ascending: the group's
    smallest to its full width) whose extra ``cost`` is at most ``free`` x the group's mean cost per channel per
    channel restored; the other groups as they stand. Cost models never decrease as a width grows, so the scan
    stops once the extra cost is beyond what even the full width would be allowed."""
    widths = list(widths)
    if free <= 0:
        return widths
    for i, w in enumerate(widths):
        ups = [a for a in allowed[i] if a > w]
        if not ups or allowed[i][-1] <= allowed[i][0]:
            continue
        at = lambda a: widths[:i] + [a] + widths[i + 1:]  # noqa: E731
        per_channel = free * (cost(at(allowed[i][-1])) - cost(at(allowed[i][0]))) / (allowed[i][-1] - allowed[i][0])
        if per_channel <= 0:
            continue
        base, best = cost(widths), w
        for a in ups:
            extra = cost(at(a)) - base
            if extra <= per_channel * (a - w):
                best = a
            elif extra > per_channel * (ups[-1] - w):
                break
        widths[i] = best
    return widths
