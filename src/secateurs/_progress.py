"""Progress of one long stage (training epochs, AutoBot bottleneck steps, BatchNorm passes, latency timing).

On a terminal a tqdm bar; without one (a log file, CI, ``nohup``) a plain line on stderr at least every ``every``
of the stage (10%) or every ``interval`` seconds (30 s), whichever comes first — a long run is never silent, and a
log is not flooded with carriage returns. ``progress`` follows the library's convention everywhere:
``None`` = bar on a terminal, lines otherwise; ``True`` = always the bar; ``False`` = silent.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

__all__ = ["Progress", "progress_mode", "progress_iter"]

_monotonic = time.monotonic  # the default clock (a module attribute, so tests can replace it)


def progress_mode(progress: bool | None, stream: TextIO | None = None) -> str:
    """``"bar"``, ``"lines"`` or ``"off"`` for a ``progress`` argument (see the module docstring)."""
    if progress is False:
        return "off"
    if progress is True:
        return "bar"
    stream = stream if stream is not None else sys.stderr
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or odd stream
        return "lines"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


class Progress:
    """Counts ``update()`` calls towards ``total`` and shows them as a bar or as occasional lines.

    ``every``: in line mode, log when this fraction of ``total`` has passed since the last line (``None``: by time
    only, for a caller that logs its own milestones, e.g. one line per epoch). ``interval``: log at least this often
    (seconds); fraction lines are skipped when the last line is under ``min_interval`` seconds old (a stage of a
    second needs no ten lines). ``clock`` is injectable for tests. The last step logs a line (with the elapsed time) unless
    ``log_done=False`` (the caller prints its own summary line).
    """

    def __init__(self, total: int, desc: str, mode: str = "lines", *, every: float | None = 0.1,
                 interval: float = 30.0, min_interval: float = 1.0, log_done: bool = True, file: TextIO | None = None,
                 clock: Callable[[], float] | None = None):
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"mode must be 'bar', 'lines' or 'off', got {mode!r}")
        self.total, self.desc, self.mode = max(0, int(total)), desc, mode
        self.every, self.interval, self.log_done = every, float(interval), log_done
        self.min_interval = float(min_interval)
        self.file = file
        self.clock = clock if clock is not None else _monotonic
        self.n = 0
        self.lines = 0
        self._start = self._last_t = self.clock()
        self._last_n = 0
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, leave=False, file=file or sys.stderr, dynamic_ncols=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **postfix) -> None:
        """Advance by ``n``; ``postfix`` (name=value, values pre-formatted or numbers) goes on the bar or line."""
        self.n += n
        if self._bar is not None:
            if postfix:  # drawn at once on the first and the last step, else at tqdm's own pace
                self._bar.set_postfix(postfix, refresh=self.n == n or self.n >= self.total)
            self._bar.update(n)
            return
        if self.mode != "lines":
            return
        now = self.clock()
        done = self.total > 0 and self.n >= self.total
        if done and not self.log_done:
            return
        by_fraction = (self.every is not None and self.total > 0 and now - self._last_t >= self.min_interval
                       and (self.n - self._last_n) >= self.every * self.total)
        if done or by_fraction or now - self._last_t >= self.interval:
            self._line(now, postfix)

    def _line(self, now: float, postfix: dict) -> None:
        elapsed = now - self._start
        parts = [f"{self.desc}: {self.n}/{self.total}" if self.total else f"{self.desc}: {self.n}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in postfix.items()]
        timing = f"{_duration(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total:
            timing += f", ~{_duration(elapsed * (self.total - self.n) / self.n)} left"
        print(", ".join(parts) + f" [{timing}]", file=self.file or sys.stderr, flush=True)
        self.lines += 1
        self._last_t, self._last_n = now, self.n

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_iter(items: Iterable[T], total: int, desc: str, mode: str, **kw) -> Iterator[T]:
    """Yield ``items``, advancing a :class:`Progress` of ``total`` after each one."""
    with Progress(total, desc, mode, **kw) as bar:
        for item in items:
            yield item
            bar.update(1)
