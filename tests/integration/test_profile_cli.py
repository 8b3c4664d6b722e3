"""``secateurs profile``: writes a valid profile and the cache, prints the held-out error; bad input is one line
with exit status 2 and writes nothing. Timings are not asserted (shared machine)."""
import json

import pytest

from fixtures.cli import fails as _fails
from secateurs.cli import main
from secateurs.cost.latency_profile import LatencyProfile

QUICK = ["--model", "lenet5", "--input-shape", "1,28,28", "--latency-batch-size", "2", "--threads", "1",
         "--time-budget", "0", "--held-out", "1"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SECATEURS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "latency"


def test_profile_writes_out_and_cache_and_prints_the_error(tmp_path, cache, capsys):
    out = tmp_path / "lat.json"
    assert main(["profile", *QUICK, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out error: mean" in text and "predicted" in text and "load average" in text
    prof = LatencyProfile.load(out)
    assert prof.key["batch_size"] == 2 and prof.key["threads"] == 1 and prof.key["runtime"] == "torch"
    assert len(prof.validation["held_out"]) == 1
    cached = list(cache.glob("*.json"))
    assert len(cached) == 1 and LatencyProfile.load(cached[0]).key == prof.key
    _fails(["profile", *QUICK, "--out", str(out)], capsys, "--out", "already exists", "--overwrite")
    assert main(["profile", *QUICK, "--out", str(out), "--overwrite", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    from secateurs.timing import allocator as regime

    allocator = regime()  # the regime every timing here ran under
    assert summary["setting"] == {"batch_size": 2, "threads": 1, "dtype": "float32", "runtime": "torch",
                                  "allocator": allocator}
    assert prof.key["allocator"] == allocator and f"allocator {allocator}" in text
    assert prof.timing["allocator"] == prof.key["allocator"]  # the key says the regime it was really timed under
    assert summary["layer_calls"] == len(prof.calls) and summary["out"] == str(out)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_profile_in_float16(runtime, tmp_path, cache, capsys):
    """float16, the dtype a GPU user times in, is profiled like the others (on this CPU too); the key says so."""
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    out = tmp_path / "lat.json"
    assert main(["profile", *QUICK, "--dtype", "float16", "--runtime", runtime, "--out", str(out)]) == 0
    prof = LatencyProfile.load(out)
    assert prof.key["dtype"] == "float16" and prof.key["runtime"] == runtime
    assert prof.dense_ms > 0 and len(prof.validation["held_out"]) == 1


@pytest.mark.parametrize("flag, value, needle", [
    ("--latency-batch-size", "0", "--latency-batch-size"), ("--threads", "-1", "--threads"),
    ("--runtime", "tvm", "--runtime"), ("--time-budget", "nan", "--time-budget"), ("--dtype", "int8", "--dtype"),
])
def test_bad_flags(flag, value, needle, tmp_path, capsys):
    _fails(["profile", *QUICK, flag, value, "--out", str(tmp_path / "x.json")], capsys, needle)
    assert not (tmp_path / "x.json").exists()


def test_missing_onnxruntime_is_one_line(monkeypatch, tmp_path, capsys):
    import secateurs.cost.latency_profile as lp

    def missing():
        raise ImportError("onnxruntime is not installed (pip install onnxruntime)")

    monkeypatch.setattr(lp, "require_onnxruntime", missing)
    _fails(["profile", *QUICK, "--runtime", "onnxruntime", "--out", str(tmp_path / "x.json")], capsys,
           "--runtime onnxruntime: onnxruntime is not installed")
    assert not (tmp_path / "x.json").exists()


def test_out_must_not_be_the_checkpoint(tmp_path, capsys):
    from secateurs.io import ModelSpec, save
    from secateurs.models import create_model

    spec = ModelSpec(name="lenet5", kwargs={"num_classes": 10, "in_channels": 1}, input_shape=[1, 28, 28],
                     num_classes=10)
    save(tmp_path / "c", create_model("lenet5", num_classes=10, in_channels=1), spec)
    _fails(["profile", "--checkpoint", str(tmp_path / "c"), "--out", str(tmp_path / "c" / "model.json"),
            "--overwrite"], capsys, "--out", "the --checkpoint input")  # the flag, not the argument's name


def test_onnxruntime_with_bfloat16_is_refused(tmp_path, capsys):
    """onnxruntime is fed numpy arrays (no bfloat16): refused before any timing, whether installed or not."""
    _fails(["profile", *QUICK, "--runtime", "onnxruntime", "--dtype", "bfloat16", "--out", str(tmp_path / "x.json")],
           capsys, "--dtype bfloat16", "--runtime onnxruntime")
    assert not (tmp_path / "x.json").exists()
