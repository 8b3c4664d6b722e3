"""Sparsity schedules: exact values at boundaries, GMP ≡ cyclical(C=1), serialisation, table and plot."""
from __future__ import annotations

import random

import pytest

from secateurs.schedules import GMP, Cyclical, OneShot, Schedule, make_schedule, schedule_from_dict


@pytest.mark.parametrize("kw", [
    dict(final_sparsity=0.9, total_steps=1000),
    dict(final_sparsity=0.98, total_steps=777, ramp=0.6, initial_sparsity=0.2),
    dict(final_sparsity=0.5, total_steps=101, ramp=1.0, begin_step=17),
    dict(final_sparsity=0.95, total_steps=3, ramp=0.3),
])
def test_cyclical_with_one_cycle_is_gmp_exactly(kw):
    gmp, cyc = GMP(**kw), Cyclical(cycles=1, restart_sparsity=0.3, **kw)
    for t in range(-3, kw["total_steps"] + 5):
        assert gmp.sparsity_at(t) == cyc.sparsity_at(t), t
    assert gmp.boundaries() == cyc.boundaries()
    assert gmp.freeze_step == cyc.freeze_step


def test_gmp_is_the_zhu_gupta_cubic():
    s = GMP(0.8, 1000, ramp=0.5)  # ramp over 500 steps
    assert s.sparsity_at(0) == 0.0
    assert s.sparsity_at(250) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert s.sparsity_at(499) < 0.8
    assert s.sparsity_at(500) == 0.8 and s.sparsity_at(1000) == 0.8 and s.freeze_step == 500
    values = [s.sparsity_at(t) for t in range(1001)]
    assert values == sorted(values)  # monotone


def test_cyclical_boundaries_and_values():
    s = Cyclical(0.9, 1000, cycles=3, ramp=0.75, initial_sparsity=0.1, restart_sparsity=0.2)
    starts = [s.cycle_start(c) for c in range(4)]
    assert starts == [0, 333, 666, 1000]  # t_c = floor(c*T/C): lengths 333, 333, 334
    assert [s.hold_start(c) for c in range(3)] == [250, 583, 917]  # t_c + ceil(0.75*T_c)
    assert s.sparsity_at(0) == 0.1
    assert s.sparsity_at(333) == 0.2 and s.sparsity_at(666) == 0.2  # restarts
    for c in range(3):
        h = s.hold_start(c)
        assert s.sparsity_at(h - 1) < 0.9 and s.sparsity_at(h) == 0.9
        assert all(s.sparsity_at(t) == 0.9 for t in range(h, starts[c + 1]))
        ramp = [s.sparsity_at(t) for t in range(starts[c], h + 1)]
        assert ramp == sorted(ramp)
    assert s.sparsity_at(999) == 0.9 and s.sparsity_at(1000) == 0.9 and s.sparsity_at(5000) == 0.9
    assert s.freeze_step == 917
    assert s.boundaries() == [0, 250, 333, 583, 666, 917]


def test_cycle_split_with_begin_step_and_remainder():
    s = Cyclical(0.9, 1003, cycles=4, begin_step=10)
    lengths = [s.cycle_start(c + 1) - s.cycle_start(c) for c in range(4)]
    assert sum(lengths) == 993 and max(lengths) - min(lengths) <= 1
    assert all(s.sparsity_at(t) == 0.0 for t in range(10))
    for t in range(1003):
        c = s.cycle_of(t)
        assert s.cycle_start(c) <= max(t, 10) < s.cycle_start(c + 1)


def test_oneshot():
    s = OneShot(0.95, 100, prune_step=10)
    assert [s.sparsity_at(t) for t in (0, 9, 10, 11, 100)] == [0, 0, 0.95, 0.95, 0.95]
    assert s.freeze_step == 10 and s.boundaries() == [10]


def test_pure_function_of_the_step():
    s = Cyclical(0.9, 500, cycles=4, restart_sparsity=0.4)
    steps = list(range(500))
    ref = [s.sparsity_at(t) for t in steps]
    random.Random(0).shuffle(steps)
    assert {t: s.sparsity_at(t) for t in steps} == dict(enumerate(ref))


@pytest.mark.parametrize("sched", [OneShot(0.9, 10, 3), GMP(0.9, 100, 0.1, 0.5, 5),
                                   Cyclical(0.99, 1000, 5, 0.6, 0.1, 0.3, 20)])
def test_dict_round_trip(sched):
    d = sched.to_dict()
    assert d["kind"] == sched.kind
    again = schedule_from_dict(d)
    assert again == sched and Schedule.from_dict(d) == sched
    assert make_schedule(**{k: v for k, v in d.items()}) == sched


@pytest.mark.parametrize("cls,kw,match", [
    (Cyclical, dict(final_sparsity=1.0, total_steps=10), "final_sparsity"),
    (Cyclical, dict(final_sparsity=-0.1, total_steps=10), "final_sparsity"),
    (Cyclical, dict(final_sparsity=0.9, total_steps=10, cycles=0), "cycles"),
    (Cyclical, dict(final_sparsity=0.9, total_steps=10, cycles=11), "cycles"),
    (Cyclical, dict(final_sparsity=0.9, total_steps=10, ramp=0.0), "ramp"),
    (Cyclical, dict(final_sparsity=0.9, total_steps=10, restart_sparsity=1.5), "restart_sparsity"),
    (GMP, dict(final_sparsity=0.9, total_steps=0), "total_steps"),
    (GMP, dict(final_sparsity=0.9, total_steps=10, begin_step=10), "begin_step"),
    (OneShot, dict(final_sparsity=0.9, total_steps=10, prune_step=11), "prune_step"),
])
def test_invalid_arguments_name_the_field(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


def test_from_dict_rejects_unknown():
    with pytest.raises(ValueError, match="kind"):
        schedule_from_dict({"kind": "linear", "final_sparsity": 0.5, "total_steps": 10})
    with pytest.raises(ValueError, match="cycels"):
        schedule_from_dict({"kind": "gmp", "final_sparsity": 0.5, "total_steps": 10, "cycels": 2})


def test_table_lists_boundaries():
    s = Cyclical(0.9, 1000, cycles=3)
    text = s.table(5)
    rows = {int(line.split()[0]): line for line in text.splitlines()[3:]}
    assert set(s.boundaries()) <= set(rows)
    assert "0.9000" in rows[917] and "mask frozen" in rows[917]
    assert rows[333].split()[1] == "0.0000"


def test_plot_writes_png_atomically(tmp_path):
    out = tmp_path / "sub" / "s.png"
    Cyclical(0.9, 200).plot(out, realised=[(0, 0.0), (50, 0.5), (100, 0.9)], update_every=10)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["s.png"]


def test_default_cycles_is_the_measured_choice():
    """The default follows benchmarks/results/cyclical_grid.md (C = 2); the CLI shows the same default."""
    from secateurs.schedules import DEFAULT_CYCLES

    assert Cyclical(0.9, 100).cycles == DEFAULT_CYCLES == 2
    assert Cyclical(0.9, 100).boundaries() == [0, 38, 50, 88]


def test_peak_sparsity_covers_restarts_above_the_final_sparsity():
    assert Cyclical(0.9, 100, cycles=3).peak_sparsity() == 0.9
    assert Cyclical(0.5, 100, cycles=3, restart_sparsity=0.7).peak_sparsity() == 0.7
    assert OneShot(0.8, 10, prune_step=3).peak_sparsity() == 0.8


def test_last_cycle_gives_the_kept_mask_a_longer_cycle():
    s = Cyclical(0.9, 1000, cycles=3, last_cycle=0.5)
    assert [s.cycle_start(c) for c in range(4)] == [0, 250, 500, 1000]  # the first two share the other half
    assert [s.hold_start(c) for c in range(3)] == [188, 438, 875]
    for t in range(1000):
        c = s.cycle_of(t)
        assert s.cycle_start(c) <= t < s.cycle_start(c + 1)
    assert s.sparsity_at(250) == 0.0 and s.sparsity_at(500) == 0.0 and s.sparsity_at(874) < 0.9
    assert s.freeze_step == 875 and s.sparsity_at(875) == 0.9
    # None is the equal split exactly, and the field survives the state round trip
    assert Cyclical(0.9, 1003, cycles=4, last_cycle=None) == Cyclical(0.9, 1003, cycles=4)
    assert schedule_from_dict(s.to_dict()) == s
    # 1 - 0.9 is 0.0999... in binary: the split must still be the documented floor(c (1 - f) T' / (C - 1))
    assert [Cyclical(0.9, 100, cycles=2, last_cycle=0.9).cycle_start(c) for c in range(3)] == [0, 10, 100]
    assert [Cyclical(0.9, 10, cycles=2, last_cycle=0.9).cycle_start(c) for c in range(3)] == [0, 1, 10]
    b = Cyclical(0.9, 110, cycles=3, begin_step=10, last_cycle=0.5)
    assert [b.cycle_start(c) for c in range(4)] == [10, 35, 60, 110] and b.sparsity_at(9) == 0.0


@pytest.mark.parametrize("kw,match", [
    (dict(last_cycle=1.0), "last_cycle"), (dict(last_cycle=0.0), "last_cycle"), (dict(last_cycle=True), "last_cycle"),
    (dict(last_cycle=float("nan")), "last_cycle"), (dict(cycles=1, last_cycle=0.5), "cycles >= 2"),
    (dict(total_steps=4, cycles=3, last_cycle=0.9), "without steps"),
])
def test_last_cycle_refusals_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        Cyclical(**{"final_sparsity": 0.9, "total_steps": 100, **kw})
