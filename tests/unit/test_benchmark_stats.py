"""The benchmarks' paired statistics: the 95 % interval of a mean, and merging protocol runs made at different times."""
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import _common
    import cyclical_protocol

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    monkeypatch.setattr(cyclical_protocol, "RESULTS", tmp_path)
    return _common, cyclical_protocol, tmp_path


def test_mean_ci95_is_students_t(bench):
    _common, _, _ = bench
    m, lo, hi = _common.mean_ci95([1.0, 2.0, 3.0])
    # mean 2, sample std 1, t(0.975, df=2) = 4.303: half-width 4.303 / sqrt(3)
    assert m == pytest.approx(2.0)
    assert hi - m == pytest.approx(4.303 / 3 ** 0.5, rel=1e-6)
    assert m - lo == pytest.approx(hi - m)
    # more values of the same spread: a narrower interval; NaNs are left out
    _, lo10, hi10 = _common.mean_ci95([1.0, 2.0, 3.0] * 4 + [float("nan")])
    assert hi10 - lo10 < hi - lo
    m1, lo1, hi1 = _common.mean_ci95([0.5])
    assert m1 == 0.5 and lo1 != lo1 and hi1 != hi1  # one value: no interval


@pytest.mark.parametrize("df, exact", [(30, 2.042), (31, 2.040), (60, 2.000), (120, 1.980), (1000, 1.962)])
def test_t975_beyond_the_table(bench, df, exact):
    _common, _, _ = bench
    assert _common.t975(df) == pytest.approx(exact, abs=1.5e-3)


def _protocol_file(tmp_path, stem, seeds, dense=0.9, cpu="cpu A", torch_version="x", diffs=None):
    """A protocol results file: GMP's accuracy varies by seed, cyclical's is GMP's plus ``diffs[seed]``."""
    rows = []
    for seed in seeds:
        gmp = 0.8 + 0.01 * seed
        rows.append({"setting": "d", "method": "GMP", "sparsity": 0.9, "seed": seed, "accuracy": gmp})
        rows.append({"setting": "d", "method": "cyclical", "sparsity": 0.9, "seed": seed,
                     "accuracy": gmp + (diffs or {}).get(seed, 0.001 * (seed + 1))})
    payload = {"environment": {"cpu": cpu, "torch": torch_version, "secateurs": "0", "torch_threads": 1,
                               "loadavg_start": [1.0, 1.0, 1.0]},
               "study": "protocol", "setup": "mlp", "recipe": {"model": "mlp"}, "sparsities": [0.9],
               "seeds": seeds, "dense_accuracy": {"d": dense}, "partial": False, "rows": rows}
    (tmp_path / f"{stem}.json").write_text(json.dumps(payload))


def test_protocol_merge_pairs_by_seed_across_files(bench):
    _, cp, tmp = bench
    _protocol_file(tmp, "a", [0, 1])
    _protocol_file(tmp, "b", [2, 3, 4], diffs={4: 0.0})
    md = cp.merge(["a", "b"], "ab")
    merged = json.loads((tmp / "ab.json").read_text())
    assert merged["seeds"] == [0, 1, 2, 3, 4] and len(merged["rows"]) == 10
    # GMP differs by seed, so only pairing by seed gives the differences 0.1, 0.2, 0.3, 0.4 and 0 points:
    # mean +0.20, std 0.16, t(0.975, 4) = 2.776 -> [+0.00, +0.40]; four seeds ahead, one tied
    assert "| +0.20 ± 0.16 | [+0.00, +0.40] | 4 / 1 / 0 | 5 |" in md


@pytest.mark.parametrize("change, message", [("dense", "differ in dense_accuracy"),
                                             ("cpu", "environment's cpu"),
                                             ("torch", "environment's torch"),
                                             ("same seed", "hold the same run"),
                                             ("out is an input", "is one of the inputs")])
def test_protocol_merge_refuses_runs_that_do_not_pair(bench, change, message):
    _, cp, tmp = bench
    _protocol_file(tmp, "a", [0, 1])
    _protocol_file(tmp, "b", [1] if change == "same seed" else [2], dense=0.91 if change == "dense" else 0.9,
                   cpu="cpu B" if change == "cpu" else "cpu A", torch_version="y" if change == "torch" else "x")
    before = (tmp / "a.json").read_text()
    out = "a" if change == "out is an input" else "ab"
    with pytest.raises(SystemExit, match=message):
        cp.merge(["a", "b"], out)
    assert not (tmp / "ab.json").exists() and (tmp / "a.json").read_text() == before
