"""One way to time things on a shared CPU: interleaved blocks, medians, paired ratios, the setting recorded.

Why each piece (a 2-core machine shared with other jobs is the normal case, not the exception):

* **Interleaved rounds.** Every round runs each callable once in turn, so load that drifts over seconds (another
  job starting, the clock frequency changing) slows all of them alike. The order alternates every round
  (A B, B A, …): a fixed order gives the second callable a warmer cache or a later slice of the scheduler's quantum.
* **Blocks, the fastest of a few per round.** A call shorter than the scheduler's time slice is either untouched
  or preempted for milliseconds; timing one call at a time makes the median flip between the two regimes (this
  is how a summary's batch-1 latency came out 20× the ``report``'s). Each callable therefore runs in blocks of
  repeated calls lasting at least ``min_block_s``, ``sub_blocks`` of them back to back in every round, and its
  time in the round is the fastest block's mean per call. On a machine with more runnable jobs than cores most
  blocks are preempted, and with a fixed pattern of blocks per round the preemptions can lock onto positions in
  the round (the same model slow in every round): the per-round minimum removes that, the median over rounds
  then removes the rest.
* **Medians and paired ratios.** The figure per callable is the median over rounds; the ratio of callable i to the
  first one is the median over rounds of the *per-round* ratio, which cancels load that is constant within a
  round. ``best_ms`` (the fastest round) is kept for callers that want a second, differently disturbed estimate.
* **A time budget.** Rounds continue until at least ``min_rounds`` are done and then until ``budget_s`` is spent
  (or ``max_rounds``), so a fast model gets many rounds and a slow one is not timed for minutes.
* **The setting.** Threads are pinned for the measurement and restored; the load average before and after is
  recorded next to the numbers, because a figure measured at load 3 on 2 cores means something else.
* **A steady allocator.** glibc's malloc can fault a large output's pages in afresh on every call, which doubles
  a big conv's time in some processes and not in others; :func:`allocator` sets it steady once per process and
  every :class:`Timing` records which regime it ran under.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch

__all__ = ["Timing", "allocator", "cuda_sync", "interleaved", "loadavg", "steady_allocator", "time_models"]


def loadavg() -> list[float] | None:
    """The 1 / 5 / 15-minute load average, rounded, or ``None`` where the platform has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


_STEADY_MMAP, _STEADY_TRIM = 32 << 20, 64 << 20  # glibc's ceiling for its dynamic mmap threshold, and 2x it
_USER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
STEADY, AS_FOUND = "glibc steady", "as found"  # the two regimes allocator() reports
_allocator: str | None = None  # the regime, decided on the first call: see allocator()


def allocator() -> str:
    """Stop glibc's ``malloc`` from handing every large tensor fresh pages, once per process; returns the regime
    every timing then runs under: ``"glibc steady"`` (set here), ``"as found"`` (left alone: opted out, not
    glibc, another allocator preloaded, or the user's own glibc settings in the environment).

    With glibc's defaults, a buffer of a few MiB (a conv's output at batch 64) can be mapped for one call and
    unmapped at its free, so every call page-faults its whole output in again. Timed alone in a fresh process, the
    3x3 conv on ResNet-56's 32x32 maps at batch 64 then takes 2,000-3,000 minor faults per call and runs about
    twice as slow as without them (``benchmarks/latency_model.py --allocator``); whether a process falls into that
    regime depends on its history, so isolated layer tables disagreed with the whole networks they came from
    (tables-only error above 100 % on ResNet-56 at batch 64). This sets ``M_MMAP_THRESHOLD`` to 32 MiB and
    ``M_TRIM_THRESHOLD`` to 64 MiB: the ceiling glibc's own dynamic rule climbs to once a program frees a 32 MiB
    block, which it then keeps. glibc cannot go back to its dynamic rule, so this is decided on the first call
    and left for the process (set ``SECATEURS_ALLOCATOR`` before it); allocations below 32 MiB then reuse the
    heap, at the price of up to 64 MiB of freed memory kept at the top of each malloc arena.

    ``SECATEURS_ALLOCATOR=as-found`` leaves the allocator alone (``steady``, the default, or unset: as above; any
    other value warns and counts as ``steady``). Left alone too: a process whose ``malloc`` is not glibc's (musl,
    macOS, Windows, jemalloc or tcmalloc in ``LD_PRELOAD``) and one with ``MALLOC_*_`` variables or
    ``glibc.malloc`` tunables in its environment, which are the user's choice. :func:`interleaved` calls this, so
    every timing in secateurs records its regime in ``Timing.allocator``."""
    global _allocator
    if _allocator is None:
        _allocator = AS_FOUND
        want = os.environ.get("SECATEURS_ALLOCATOR", "steady")
        if want not in ("steady", "as-found"):
            import warnings

            warnings.warn(f"SECATEURS_ALLOCATOR={want!r} is not 'steady' or 'as-found'; using 'steady'",
                          stacklevel=2)
        if want == "as-found" or any(k in os.environ for k in _USER_MALLOC_ENV) \
                or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
            return _allocator
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            mallopt = libc.mallopt
            # the malloc this process calls must be glibc's own (not a preloaded jemalloc / tcmalloc)
            if ctypes.cast(ctypes.CDLL(None).malloc, ctypes.c_void_p).value != \
                    ctypes.cast(libc.malloc, ctypes.c_void_p).value:
                return _allocator
        except (ImportError, OSError, AttributeError):
            return _allocator
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        # M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1 (malloc.h); mallopt returns 1 on success
        if mallopt(-3, _STEADY_MMAP) and mallopt(-1, _STEADY_TRIM):
            _allocator = STEADY
    return _allocator


def steady_allocator() -> bool:
    """:func:`allocator`, as a flag: True where the steady thresholds are in effect."""
    return allocator() == STEADY


@dataclass(frozen=True)
class Timing:
    """Result of :func:`interleaved`: per callable the median and best ms per call, the paired ratio to the first
    callable, and the setting they were measured under."""

    ms: list[float]
    best_ms: list[float]
    ratios: list[float]  # median over rounds of (time of i) / (time of callable 0) in the same round
    rounds: int
    calls_per_block: list[int]
    threads: int
    loadavg_before: list[float] | None
    loadavg_after: list[float] | None
    elapsed_s: float
    sub_blocks: int = 1
    allocator: str = AS_FOUND  # the malloc regime, secateurs.timing.allocator()

    def setting(self, **extra: Any) -> dict:
        """What the figures were measured under, for a results file (``extra``: e.g. batch size, runtime)."""
        return {**extra, "threads": self.threads, "rounds": self.rounds, "calls_per_block": self.calls_per_block,
                "statistic": f"median over interleaved rounds (order alternating) of the fastest of {self.sub_blocks} "
                             "blocks per round",
                "loadavg_before": self.loadavg_before, "loadavg_after": self.loadavg_after,
                "allocator": self.allocator, "cpus": os.cpu_count(), "elapsed_s": round(self.elapsed_s, 3)}

    def to_dict(self) -> dict:
        return asdict(self)


def interleaved(fns: Sequence[Callable[[], Any]], *, warmup: int = 2, min_rounds: int = 5, max_rounds: int = 200,
                budget_s: float = 1.0, min_block_s: float = 0.002, max_block: int = 1000, sub_blocks: int = 3,
                sub_block_max_s: float = 0.05, threads: int | None = None,
                sync: Callable[[], None] | None = None, on_round: Callable[[int], None] | None = None) -> Timing:
    """Time the zero-argument callables ``fns`` in interleaved rounds (see the module docstring).

    ``warmup`` untimed rounds first (one call each); then the calls per block of each callable are set from one
    timed call so a block lasts about ``min_block_s`` (at most ``max_block`` calls). In every round each callable
    whose block is shorter than ``sub_block_max_s`` runs ``sub_blocks`` consecutive blocks and its time for the
    round is the fastest of them (see the module docstring: a block that was preempted says nothing about the
    callable; a call far longer than a time slice is slowed in proportion instead, and one block suffices); then
    rounds until
    ``min_rounds`` are done and ``budget_s`` seconds have passed, or ``max_rounds``. ``threads`` pins
    ``torch.set_num_threads`` for the measurement (restored after); ``sync`` (e.g. ``torch.cuda.synchronize``) runs
    around every block; ``on_round(rounds_done)`` after every round (progress display).
    """
    if not fns:
        raise ValueError("interleaved: nothing to time")
    if sub_blocks < 1:
        raise ValueError(f"interleaved: sub_blocks must be >= 1, got {sub_blocks}")
    if min_rounds < 1 or max_rounds < min_rounds:
        raise ValueError(f"interleaved: need 1 <= min_rounds <= max_rounds, got {min_rounds}, {max_rounds}")
    sync = sync or (lambda: None)
    regime = allocator()
    old_threads = torch.get_num_threads()
    before = loadavg()
    start = time.perf_counter()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        for _ in range(warmup):
            for f in fns:
                f()
        sized = [_block_size(f, sync, min_block_s, max_block) for f in fns]
        reps = [n for n, _ in sized]
        subs = [sub_blocks if n * per < sub_block_max_s else 1 for n, per in sized]
        times: list[list[float]] = [[] for _ in fns]
        order = list(range(len(fns)))
        rounds = 0
        while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - start < budget_s):
            for i in (order if rounds % 2 == 0 else order[::-1]):
                f, n = fns[i], reps[i]
                fastest = float("inf")
                for _ in range(subs[i]):
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(n):
                        f()
                    sync()
                    fastest = min(fastest, (time.perf_counter() - t0) / n)
                times[i].append(fastest)
            rounds += 1
            if on_round is not None:
                on_round(rounds)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    ratios = [statistics.median(t / t0 for t, t0 in zip(ti, times[0])) for ti in times]
    return Timing(ms=[1e3 * statistics.median(t) for t in times], best_ms=[1e3 * min(t) for t in times],
                  ratios=ratios, rounds=rounds, calls_per_block=reps, threads=used_threads,
                  loadavg_before=before, loadavg_after=loadavg(), elapsed_s=time.perf_counter() - start,
                  sub_blocks=max(subs), allocator=regime)


def _block_size(f: Callable[[], Any], sync, min_block_s: float, max_block: int) -> tuple[int, float]:
    """(calls per block, seconds of the one sizing call)."""
    sync()
    t0 = time.perf_counter()
    f()
    sync()
    per = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(max_block, int(min_block_s / per))), per


def cuda_sync(devices) -> Callable[[], None]:
    """A ``sync`` for :func:`interleaved` that waits for every CUDA device in ``devices`` (a bare
    ``torch.cuda.synchronize()`` waits for the current device only: a model on ``cuda:1`` would be timed
    unsynchronised)."""
    devs = sorted({torch.device(d) for d in devices if torch.device(d).type == "cuda"}, key=str)

    def sync() -> None:
        for d in devs:
            torch.cuda.synchronize(d)
    return sync


def time_models(models: Sequence[torch.nn.Module], inputs: torch.Tensor | Sequence[torch.Tensor], **kw) -> Timing:
    """:func:`interleaved` over forward passes of ``models`` in eval mode under ``torch.inference_mode`` (modes
    restored after). ``inputs``: one batch for every model, or one per model (e.g. on different devices)."""
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs] * len(models)
    if len(inputs) != len(models):
        raise ValueError(f"time_models: {len(inputs)} inputs for {len(models)} models")
    modes = [m.training for m in models]
    if "sync" not in kw and any(x.is_cuda for x in inputs):
        kw["sync"] = cuda_sync(x.device for x in inputs)

    def call(m, x):
        def run():
            with torch.inference_mode():
                m(x)
        return run

    try:
        for m in models:
            m.eval()
        return interleaved([call(m, x) for m, x in zip(models, inputs)], **kw)
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
