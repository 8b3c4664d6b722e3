"""The one timing utility: interleaving, alternating order, blocks, budget, threads restored, setting recorded.
No timing of this machine is asserted (a shared machine): where a test needs durations, the timed callables
advance a fake clock that replaces ``time.perf_counter`` inside ``secateurs.timing``, so the values follow from the
structure of the measurement alone."""
import math
import types

import pytest
import torch
from torch import nn

import secateurs.timing as timing
from secateurs.timing import Timing, interleaved, time_models


@pytest.fixture
def clock(monkeypatch):
    """``clock.advance(s)`` moves the fake clock of ``secateurs.timing`` on by ``s`` seconds."""
    state = types.SimpleNamespace(now=1000.0)

    def advance(s):
        state.now += s

    state.advance = advance
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: state.now))
    return state


def _recorder():
    calls = []

    def make(tag):
        return lambda: calls.append(tag)

    return calls, make


def test_rounds_alternate_order_and_run_blocks():
    calls, make = _recorder()
    t = interleaved([make("a"), make("b")], warmup=1, min_rounds=4, max_rounds=4, budget_s=0.0,
                    min_block_s=0.0, sub_blocks=1)
    # warm-up round (a b), one call each to size the blocks (a, b), then a b | b a | a b | b a
    assert calls == ["a", "b", "a", "b"] + ["a", "b", "b", "a"] * 2
    assert t.rounds == 4 and t.calls_per_block == [1, 1]
    assert len(t.ms) == len(t.best_ms) == len(t.ratios) == 2
    assert t.ratios[0] == pytest.approx(1.0) and all(b <= m for b, m in zip(t.best_ms, t.ms))


def test_blocks_are_sized_by_min_block_time_and_capped():
    calls, make = _recorder()
    t = interleaved([make("x")], warmup=0, min_rounds=2, max_rounds=2, budget_s=0.0, min_block_s=1.0,
                    max_block=7)
    assert t.calls_per_block == [7] and calls.count("x") == 1 + 2 * 3 * 7  # 3 sub-blocks per round


def test_a_round_counts_its_fastest_sub_block(clock):
    """A preempted block (here: a slow first call in every round) does not count for the round."""
    n = [0]

    def f():
        n[0] += 1
        clock.advance(0.001 + (0.02 if n[0] % 3 == 2 else 0.0))  # the first of the 3 sub-blocks of each round

    t = interleaved([f], warmup=0, min_rounds=3, max_rounds=3, min_block_s=0.0, sub_blocks=3)
    assert t.calls_per_block == [1] and t.rounds == 3
    assert t.ms[0] == pytest.approx(1.0) and t.best_ms[0] == pytest.approx(1.0)  # the 20 ms never counts


def test_budget_adds_rounds_up_to_max(clock):
    t = interleaved([lambda: clock.advance(0.001)], warmup=0, min_rounds=1, max_rounds=1000, budget_s=0.05,
                    min_block_s=0.0)
    # the sizing call (1 ms), then rounds of 3 sub-blocks (3 ms) while less than 50 ms have passed
    assert t.rounds == math.ceil((0.05 - 0.001) / 0.003)
    t = interleaved([lambda: clock.advance(0.001)], warmup=0, min_rounds=3, max_rounds=5, budget_s=60.0,
                    min_block_s=0.0)
    assert t.rounds == 5  # the budget is not spent: max_rounds stops it


def test_threads_are_pinned_and_restored_and_setting_recorded():
    before = torch.get_num_threads()
    seen = []
    t = interleaved([lambda: seen.append(torch.get_num_threads())], warmup=0, min_rounds=1, max_rounds=1,
                    threads=before + 1, min_block_s=0.0)
    assert set(seen) == {before + 1} and t.threads == before + 1
    assert torch.get_num_threads() == before
    s = t.setting(batch_size=3)
    assert s["batch_size"] == 3 and s["threads"] == before + 1 and "loadavg_before" in s and "loadavg_after" in s
    assert isinstance(Timing(**t.to_dict()), Timing)


def test_paired_ratio_reflects_relative_cost(clock):
    slow = lambda: clock.advance(0.004)  # noqa: E731
    fast = lambda: clock.advance(0.001)  # noqa: E731
    t = interleaved([slow, fast], warmup=0, min_rounds=3, max_rounds=3, min_block_s=0.0)
    assert t.ratios == pytest.approx([1.0, 0.25]) and t.ms == pytest.approx([4.0, 1.0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="nothing to time"):
        interleaved([])
    with pytest.raises(ValueError, match="sub_blocks"):
        interleaved([lambda: None], sub_blocks=0)
    with pytest.raises(ValueError, match="min_rounds"):
        interleaved([lambda: None], min_rounds=3, max_rounds=2)
    with pytest.raises(ValueError, match="2 inputs for 1 models"):
        time_models([nn.Linear(2, 2)], [torch.zeros(1, 2)] * 2)


def test_time_models_uses_eval_mode_and_restores_it():
    modes = []

    class M(nn.Module):
        def forward(self, x):
            modes.append((self.training, torch.is_inference_mode_enabled()))
            return x

    m = M().train()
    time_models([m], torch.zeros(1), warmup=1, min_rounds=1, max_rounds=1, min_block_s=0.0)
    assert set(modes) == {(False, True)} and m.training


def test_long_calls_run_one_block_per_round(clock):
    calls, make = _recorder()
    record = make("fast")

    def fast():
        record()
        clock.advance(0.001)

    def slow():
        calls.append("slow")
        clock.advance(0.06)  # longer than sub_block_max_s

    t = interleaved([fast, slow], warmup=0, min_rounds=2, max_rounds=2, min_block_s=0.0, sub_blocks=3)
    assert calls.count("fast") == 1 + 2 * 3  # sizing call, then 3 sub-blocks per round
    assert calls.count("slow") == 1 + 2  # sizing call, then one block per round
    assert t.sub_blocks == 3


_PROBE = """
import resource, sys, warnings
import torch
from secateurs.timing import interleaved, steady_allocator
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    t = interleaved([lambda: None], warmup=0, min_rounds=1, max_rounds=1, min_block_s=0.0)
print(t.allocator)
print(steady_allocator())
print(len(caught))
conv, x = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), torch.randn(64, 16, 32, 32)
with torch.inference_mode():
    for _ in range(10):
        conv(x)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):
        conv(x)  # a fresh 4 MiB output (1,024 pages) every call
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _probe(**env_values):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("SECATEURS_ALLOCATOR", "LD_PRELOAD", "GLIBC_TUNABLES") and not k.startswith("MALLOC_")}
    env.update(env_values)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    label, took, warned, faults = out.stdout.splitlines()
    return label, took == "True", int(warned), int(faults)


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_timing_runs_with_a_steady_allocator_and_records_it():
    # fresh processes: the first interleaved() call decides the regime. Steady, the conv's 4 MiB output reuses
    # the heap: a few heap growths at most (1,024 faults each), where glibc as found faulted 2,000-3,000 pages in
    # per call on this project's machine (benchmarks/results/latency_model.md, "The allocator")
    label, took, warned, steady = _probe()
    assert (label, took, warned) == ("glibc steady", True, 0)
    assert steady <= 4 * 1024
    # the opt-out leaves the allocator as found and says so; where that regime faults per call, as it did on
    # every process measured here, the steady one is at least 10x fewer
    label, took, warned, found = _probe(SECATEURS_ALLOCATOR="as-found")
    assert (label, took, warned) == ("as found", False, 0)
    if found > 20 * 1024:
        assert steady * 10 < found
    # the user's own glibc settings are left alone; an unknown value warns and counts as steady
    assert _probe(MALLOC_MMAP_THRESHOLD_="1048576")[:3] == ("as found", False, 0)
    assert _probe(SECATEURS_ALLOCATOR="off")[:3] == ("glibc steady", True, 1)
