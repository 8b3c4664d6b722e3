"""Sparsity schedules: pure functions of an explicit optimizer step.

A schedule answers one question — *what fraction of the prunable weights should be zero after ``step``
optimizer steps?* — and never holds a counter: the caller (the sparsifier, a training loop, a plot) owns the
step, so resuming is exact and ``state_dict`` is just the constructor arguments (``to_dict``).

Three schedules:

* :class:`OneShot` — dense before ``prune_step``, ``final_sparsity`` from then on.
* :class:`GMP` — Zhu & Gupta (2017) cubic ramp from ``initial_sparsity`` to ``final_sparsity`` over the first
  ``ramp`` fraction of the steps after ``begin_step``, then a hold.
* :class:`Cyclical` — Srinivas et al. (2022): ``cycles`` cubic ramps. Cycle ``c`` starts at ``t_c``, ramps over
  ``ramp · T_c`` steps to ``final_sparsity`` then holds; the first cycle starts from ``initial_sparsity``, later
  cycles from ``restart_sparsity`` (0 = dense again). ``Cyclical(cycles=1)`` equals :class:`GMP` exactly.

Cycle boundaries: the ``T' = total_steps − begin_step`` steps are split as ``t_c = begin_step + floor(c · T' / C)``,
so cycle lengths differ by at most one step and the longer cycles come last. With ``last_cycle = f`` the last cycle
gets the fraction ``f`` of ``T'`` and the earlier ones share the rest equally:
``t_c = begin_step + floor(c · (1 − f) · T' / (C − 1))`` for ``c < C``.

Every schedule also tells the sparsifier where the mask must be refreshed regardless of ``update_every``
(:meth:`Schedule.boundaries`: cycle starts and hold starts) and from which step the mask is final
(:attr:`Schedule.freeze_step`: the hold of the last cycle, where the schedule sits at exactly ``final_sparsity``).
"""
from __future__ import annotations

import math
import os
import textwrap
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

# Two cycles: under the efficacy protocol (LeNet-300-100, Fashion-MNIST, docs/cyclical.md "Defaults") C = 2 was the
# most accurate and by far the most stable setting at 99 % and 99.5 % sparsity; C = 3 (the first default) and C = 4
# varied several times more across seeds.
DEFAULT_CYCLES = 2

__all__ = ["DEFAULT_CYCLES", "Schedule", "OneShot", "GMP", "Cyclical", "schedule_from_dict", "make_schedule"]


def _check_sparsity(name: str, value: float) -> None:
    if not (0.0 <= value < 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def _check_steps(total_steps: int, begin_step: int) -> None:
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    if int(begin_step) != begin_step or not (0 <= begin_step < total_steps):
        raise ValueError(f"begin_step must be an integer in [0, total_steps={total_steps}), got {begin_step!r}")


def _hold_start(start: int, ramp_len: float, tau) -> int:
    """First integer step ``t >= start`` with ``tau(t) >= 1`` (computed with the very same float expression)."""
    t = start + math.ceil(ramp_len)
    while t - 1 >= start and tau(t - 1) >= 1.0:  # float rounding can reach 1 one step early
        t -= 1
    return t


@dataclass(frozen=True)
class Schedule:
    """Base class. Subclasses implement :meth:`sparsity_at`, :meth:`boundaries` and :attr:`freeze_step`."""

    kind: ClassVar[str] = ""

    # -- the schedule itself ---------------------------------------------------------------------------------
    def sparsity_at(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def boundaries(self) -> list[int]:  # pragma: no cover - abstract
        """Steps at which a mask update is mandatory (cycle starts and hold starts), ascending."""
        raise NotImplementedError

    @property
    def freeze_step(self) -> int:  # pragma: no cover - abstract
        """From this step on the schedule is at ``final_sparsity`` for good and the mask is frozen."""
        raise NotImplementedError

    def peak_sparsity(self) -> float:
        """The highest sparsity the schedule reaches. Ramps are monotone between boundaries, so step 0, the
        boundaries and the freeze step cover it (a higher initial or restart sparsity included)."""
        steps = {0, int(self.freeze_step), *(int(b) for b in self.boundaries())}
        return max(float(self.sparsity_at(t)) for t in steps)

    def ramps(self) -> list[tuple[int, int]]:  # pragma: no cover - abstract
        """``(first step, hold start)`` of every ramp, in order (empty for a one-shot schedule)."""
        raise NotImplementedError

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schedule":
        return schedule_from_dict(d)

    # -- presentation ----------------------------------------------------------------------------------------
    def table(self, n_rows: int = 11) -> str:
        """A plain-text table of the planned schedule: evenly spaced steps plus every boundary step."""
        T = self.total_steps  # type: ignore[attr-defined]
        n_rows = max(2, int(n_rows))
        steps = {round(i * T / (n_rows - 1)) for i in range(n_rows)} | set(self.boundaries())
        notes: dict[int, list[str]] = {}
        for s in self.boundaries():
            notes.setdefault(s, []).append("boundary")
        notes.setdefault(self.freeze_step, []).append("mask frozen")
        lines = [repr(self), f"{'step':>10}  {'sparsity':>9}  note", f"{'-' * 10}  {'-' * 9}  ----"]
        for s in sorted(x for x in steps if 0 <= x <= T):
            lines.append(f"{s:>10d}  {self.sparsity_at(s):>9.4f}  {', '.join(notes.get(s, []))}".rstrip())
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike, *, realised: list[tuple[int, float]] | None = None,
             update_every: int | None = None, title: str | None = None) -> None:
        """Write a PNG of the planned schedule (and, if given, realised ``(step, sparsity)`` points).

        ``update_every`` draws the piecewise-constant sparsity the mask actually follows. The file is written
        atomically (temporary file in the same directory, then renamed).
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        T = self.total_steps  # type: ignore[attr-defined]
        xs = list(range(T + 1))
        fig, ax = plt.subplots(figsize=(7.5, 4))
        ax.plot(xs, [self.sparsity_at(t) for t in xs], label="planned s(t)", lw=1.5)
        if update_every:
            pts = sorted(set(range(0, T + 1, update_every)) | set(self.boundaries()))
            pts = [p for p in pts if p <= self.freeze_step] + [T]
            ax.step(pts, [self.sparsity_at(p) for p in pts], where="post", lw=1, ls="--",
                    label=f"mask target (update every {update_every})")
        if realised:
            rx, ry = zip(*realised)
            ax.step(rx, ry, where="post", lw=1, color="C3", label="realised")
        for b in self.boundaries():
            ax.axvline(b, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("sparsity")
        ax.set_ylim(-0.02, 1.0)
        ax.set_title(title or textwrap.fill(repr(self), 90), fontsize=9)
        # the legend goes below the axes: inside, it covers a cycle whatever corner it takes
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
        fig.tight_layout()
        from ._atomic import atomic_path

        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=110, format="png")
        finally:
            plt.close(fig)


@dataclass(frozen=True)
class OneShot(Schedule):
    """Dense before ``prune_step``; ``final_sparsity`` from ``prune_step`` on (prune once, then retrain)."""

    final_sparsity: float
    total_steps: int
    prune_step: int = 0
    kind: ClassVar[str] = "oneshot"

    def __post_init__(self) -> None:
        _check_sparsity("final_sparsity", self.final_sparsity)
        _check_steps(self.total_steps, 0)
        if int(self.prune_step) != self.prune_step or not (0 <= self.prune_step <= self.total_steps):
            raise ValueError(f"prune_step must be an integer in [0, total_steps={self.total_steps}], "
                             f"got {self.prune_step!r}")

    def sparsity_at(self, step: int) -> float:
        return 0.0 if step < self.prune_step else self.final_sparsity

    def boundaries(self) -> list[int]:
        return [self.prune_step]

    def ramps(self) -> list[tuple[int, int]]:
        return []

    @property
    def freeze_step(self) -> int:
        return self.prune_step


@dataclass(frozen=True)
class GMP(Schedule):
    """Zhu & Gupta gradual magnitude pruning: ``s(t) = s_f + (s_i − s_f)(1 − τ)^3``,
    ``τ = clip((t − begin_step) / (ramp · (total_steps − begin_step)), 0, 1)``; dense before ``begin_step``."""

    final_sparsity: float
    total_steps: int
    initial_sparsity: float = 0.0
    ramp: float = 0.75
    begin_step: int = 0
    kind: ClassVar[str] = "gmp"

    def __post_init__(self) -> None:
        _check_sparsity("final_sparsity", self.final_sparsity)
        _check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_steps(self.total_steps, self.begin_step)
        if not (0.0 < self.ramp <= 1.0):
            raise ValueError(f"ramp must be in (0, 1], got {self.ramp!r}")

    def _tau(self, step: int) -> float:
        return min(max((step - self.begin_step) / (self.ramp * (self.total_steps - self.begin_step)), 0.0), 1.0)

    def sparsity_at(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        tau = self._tau(step)
        if tau >= 1.0:  # exactly s_f in the hold
            return self.final_sparsity
        # s_i + (s_f − s_i)(1 − (1 − τ)^3) ≡ Zhu & Gupta's s_f + (s_i − s_f)(1 − τ)^3, exactly s_i at τ = 0
        return self.initial_sparsity + (self.final_sparsity - self.initial_sparsity) * (1.0 - (1.0 - tau) ** 3)

    def boundaries(self) -> list[int]:
        return [self.begin_step, self.freeze_step]

    def ramps(self) -> list[tuple[int, int]]:
        return [(self.begin_step, self.freeze_step)]

    @property
    def freeze_step(self) -> int:
        return _hold_start(self.begin_step, self.ramp * (self.total_steps - self.begin_step), self._tau)


@dataclass(frozen=True)
class Cyclical(Schedule):
    """Cyclical pruning: ``cycles`` cubic ramps to ``final_sparsity``, each over ``ramp`` of its cycle, then a hold.

    The first cycle starts at ``initial_sparsity``; every later cycle restarts at ``restart_sparsity``
    (0 = dense again, letting weights pruned in one cycle return in the next). Dense before ``begin_step``.
    ``last_cycle`` (``None`` = equal cycles) is the fraction of the steps the last cycle gets: the last cycle is the
    one whose mask is kept, so a longer one gives it a slower ramp and a longer recovery.
    """

    final_sparsity: float
    total_steps: int
    cycles: int = DEFAULT_CYCLES
    ramp: float = 0.75
    initial_sparsity: float = 0.0
    restart_sparsity: float = 0.0
    begin_step: int = 0
    last_cycle: float | None = None
    kind: ClassVar[str] = "cyclical"

    def __post_init__(self) -> None:
        _check_sparsity("final_sparsity", self.final_sparsity)
        _check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_sparsity("restart_sparsity", self.restart_sparsity)
        _check_steps(self.total_steps, self.begin_step)
        if int(self.cycles) != self.cycles or self.cycles < 1:
            raise ValueError(f"cycles must be an integer >= 1, got {self.cycles!r}")
        if self.cycles > self.total_steps - self.begin_step:
            raise ValueError(f"cycles={self.cycles} exceeds the {self.total_steps - self.begin_step} steps "
                             "available after begin_step")
        if not (0.0 < self.ramp <= 1.0):
            raise ValueError(f"ramp must be in (0, 1], got {self.ramp!r}")
        if self.last_cycle is not None:
            f = self.last_cycle
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0.0 < f < 1.0) or math.isnan(f):
                raise ValueError(f"last_cycle must be in (0, 1) or None, got {f!r}")
            if self.cycles == 1:
                raise ValueError("last_cycle needs cycles >= 2 (a single cycle is all the steps)")
            if any(self.cycle_start(c + 1) <= self.cycle_start(c) for c in range(self.cycles)):
                raise ValueError(f"last_cycle={f!r} leaves one of the {self.cycles} cycles without steps "
                                 f"({self.total_steps - self.begin_step} steps after begin_step)")

    def cycle_start(self, c: int) -> int:
        """First step of cycle ``c`` (``c = cycles`` gives ``total_steps``)."""
        span = self.total_steps - self.begin_step
        if self.last_cycle is None or c >= self.cycles:
            return self.begin_step + (c * span) // self.cycles
        # + 1e-9: (1 - f) is inexact in binary (1 - 0.9 = 0.09999...), and the floor must not lose a step to it
        return self.begin_step + math.floor(c * (1.0 - self.last_cycle) * span / (self.cycles - 1) + 1e-9)

    def cycle_of(self, step: int) -> int:
        """Index of the cycle containing ``step`` (clamped to ``[0, cycles − 1]``)."""
        if self.last_cycle is not None:
            return max([0] + [c for c in range(self.cycles) if step >= self.cycle_start(c)])
        c = ((step - self.begin_step) * self.cycles) // (self.total_steps - self.begin_step)
        c = min(max(c, 0), self.cycles - 1)
        # floor division of the inverse map can be off by one at boundaries: settle it exactly
        while c > 0 and step < self.cycle_start(c):
            c -= 1
        while c < self.cycles - 1 and step >= self.cycle_start(c + 1):
            c += 1
        return c

    def _tau(self, c: int, step: int) -> float:
        t_c = self.cycle_start(c)
        return min(max((step - t_c) / (self.ramp * (self.cycle_start(c + 1) - t_c)), 0.0), 1.0)

    def sparsity_at(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        c = self.cycle_of(step)
        start = self.initial_sparsity if c == 0 else self.restart_sparsity
        tau = self._tau(c, step)
        if tau >= 1.0:
            return self.final_sparsity
        return start + (self.final_sparsity - start) * (1.0 - (1.0 - tau) ** 3)

    def hold_start(self, c: int) -> int:
        t_c = self.cycle_start(c)
        return _hold_start(t_c, self.ramp * (self.cycle_start(c + 1) - t_c), lambda t: self._tau(c, t))

    def boundaries(self) -> list[int]:
        out: set[int] = set()
        for c in range(self.cycles):
            out.add(self.cycle_start(c))
            out.add(self.hold_start(c))
        return sorted(out)

    @property
    def freeze_step(self) -> int:
        return self.hold_start(self.cycles - 1)

    def ramps(self) -> list[tuple[int, int]]:
        return [(self.cycle_start(c), self.hold_start(c)) for c in range(self.cycles)]


_KINDS: dict[str, type[Schedule]] = {k.kind: k for k in (OneShot, GMP, Cyclical)}


def schedule_from_dict(d: dict[str, Any]) -> Schedule:
    """Inverse of :meth:`Schedule.to_dict`."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"unknown schedule kind {kind!r}; expected one of {sorted(_KINDS)}")
    cls = _KINDS[kind]
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {kind} schedule field(s): {sorted(unknown)}")
    return cls(**d)


def make_schedule(kind: str, final_sparsity: float, total_steps: int, **kw: Any) -> Schedule:
    """Build a schedule by name (``oneshot``, ``gmp``, ``cyclical``); ``kw`` are that schedule's fields."""
    return schedule_from_dict({"kind": kind, "final_sparsity": final_sparsity, "total_steps": total_steps, **kw})
