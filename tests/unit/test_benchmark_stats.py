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
    # more values of the same spread: a narrower interval
    _, lo10, hi10 = _common.mean_ci95([1.0, 2.0, 3.0] * 4)
    assert hi10 - lo10 < hi - lo
    assert _common.mean_ci95([0.5]) == (0.5, 0.5, 0.5)


def _protocol_file(tmp_path, stem, seeds, dense=0.9, cpu="cpu A", shift=0.0):
    rows = []
    for seed in seeds:
        rows.append({"setting": "d", "method": "GMP", "sparsity": 0.9, "seed": seed, "accuracy": 0.8})
        rows.append({"setting": "d", "method": "cyclical", "sparsity": 0.9, "seed": seed,
                     "accuracy": 0.8 + 0.001 * (seed + 1) + shift})
    payload = {"environment": {"cpu": cpu, "torch": "x", "torch_threads": 1, "loadavg_start": [1.0, 1.0, 1.0]},
               "study": "protocol", "setup": "mlp", "recipe": {"model": "mlp"}, "sparsities": [0.9],
               "seeds": seeds, "dense_accuracy": {"d": dense}, "partial": False, "rows": rows}
    (tmp_path / f"{stem}.json").write_text(json.dumps(payload))


def test_protocol_merge_pairs_by_seed_across_files(bench):
    _, cp, tmp = bench
    _protocol_file(tmp, "a", [0, 1])
    _protocol_file(tmp, "b", [2, 3])
    md = cp.merge(["a", "b"], "ab")
    merged = json.loads((tmp / "ab.json").read_text())
    assert merged["seeds"] == [0, 1, 2, 3] and len(merged["rows"]) == 8
    # differences 0.1, 0.2, 0.3, 0.4 points: mean +0.25, all four seeds ahead
    assert "| +0.25 ± 0.13 |" in md and "| 4 / 0 / 0 | 4 |" in md


@pytest.mark.parametrize("change", ["dense", "cpu", "same seed"])
def test_protocol_merge_refuses_runs_that_do_not_pair(bench, change):
    _, cp, tmp = bench
    _protocol_file(tmp, "a", [0, 1])
    _protocol_file(tmp, "b", [1] if change == "same seed" else [2],
                   dense=0.91 if change == "dense" else 0.9, cpu="cpu B" if change == "cpu" else "cpu A")
    with pytest.raises(SystemExit, match="--merge"):
        cp.merge(["a", "b"], "ab")
    assert not (tmp / "ab.json").exists()
