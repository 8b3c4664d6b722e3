import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from secateurs.cli import main

TRAIN = ["train", "--model", "mlp", "--data", "digits", "--epochs", "2", "--lr", "0.05", "--batch-size", "64",
         "--no-augment", "--quiet", "--threads", "1"]


def test_train_then_info(tmp_path, capsys):
    assert main(TRAIN + ["--out", str(tmp_path / "m")]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert {"accuracy", "params", "macs", "epochs", "elapsed_s"} <= set(summary)
    assert 0.8 < summary["accuracy"] <= 1 and summary["epochs"] == pytest.approx(2)
    assert summary["params"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    capsys.readouterr()
    assert main(["info", "--checkpoint", str(tmp_path / "m"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == summary["params"] and info["macs"] == summary["macs"] == 64 * 300 + 300 * 100 + 1000


def test_info_model_on_shape_and_dataset(capsys):
    assert main(["info", "--model", "resnet56", "--input-shape", "3,32,32", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["macs"] == 125_747_840  # 125.49 M of option-A ResNet-56 + two 1x1 projection shortcuts
    assert main(["info", "--model", "mlp", "--data", "digits"]) == 0
    assert "total" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # 5x5 convs cannot run on 8x8 digits: a clear error, not a traceback
        main(["info", "--model", "lenet5", "--data", "digits"])
    assert exc.value.code == 2
    assert "--model: 'lenet5' cannot run on digits inputs of shape 1x8x8" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "nope", "--data", "digits", "--out", "X"], "--model: unknown model 'nope'"),
    (["train", "--model", "mlp", "--data", "nope", "--out", "X"], "--data: unknown dataset 'nope'"),
    (["train", "--model", "mlp", "--data", "digits", "--epochs", "-2", "--out", "X"], "--epochs must be > 0, got -2"),
    (["train", "--model", "mlp", "--data", "digits", "--data-dir", "/no/such/dir", "--out", "X"],
     "--data-dir: directory '/no/such/dir' does not exist"),
    (["info", "--checkpoint", "/no/such/ckpt"], "--checkpoint: directory '/no/such/ckpt' does not exist"),
    (["info", "--model", "mlp"], "exactly one of --data or --input-shape"),
    (["info", "--model", "mlp", "--input-shape", "3,x"], "--input-shape must be comma-separated"),
    (["train", "--model", "nomodule_xyz:make", "--data", "digits", "--out", "X"], "--model: cannot build"),
])
def test_bad_values_exit_2_with_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_existing_out_is_refused(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    with pytest.raises(SystemExit):
        main(TRAIN + ["--out", str(tmp_path / "m")])
    assert "--out" in capsys.readouterr().err


def test_user_factory_checkpoint_records_it(tmp_path):
    assert main(["train", "--model", "fixtures.user_models:tiny", "--data", "digits", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "u")]) == 0
    spec = json.loads((tmp_path / "u" / "model.json").read_text())
    assert spec["name"] == "fixtures.user_models:tiny" and spec["kwargs"] == {"num_classes": 10, "in_channels": 1}


def test_console_script_help_and_error_exit_code():
    env = {**os.environ, "PYTHONPATH": ""}
    for args in (["--help"], ["train", "--help"], ["info", "--help"]):
        out = subprocess.run([sys.executable, "-m", "secateurs.cli", *args], capture_output=True, text=True, env=env)
        assert out.returncode == 0 and "usage" in out.stdout
    out = subprocess.run([sys.executable, "-m", "secateurs.cli", "train", "--model", "mlp"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "--data" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_torchrun_two_cpu_ranks_match_single_process(tmp_path):
    """DDP with 2 gloo ranks x 32 images == one process with the same global batch of 64."""
    assert main(TRAIN + ["--out", str(tmp_path / "single")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "secateurs.cli", *TRAIN, "--out", str(tmp_path / "ddp")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    single = load_file(str(tmp_path / "single" / "model.safetensors"))
    ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    assert single.keys() == ddp.keys()
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=0, atol=2e-5)
    s1 = json.loads((tmp_path / "single" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert s2["world_size"] == 2 and s1["world_size"] == 1
    assert abs(s1["accuracy"] - s2["accuracy"]) <= 1 / 360 + 1e-9


def test_report_compares_checkpoints(tmp_path, capsys):
    assert main(TRAIN + ["--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "a"), "--names", "x", "y", "--repeats", "2",
                 "--json", "--out", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["x", "y"]
    assert rows[0]["params"] == rows[0]["nonzero_params"] > 0 and rows[0]["latency_ms_b1"] > 0
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "a"), "--names", "x", "y"])
    assert "--names: got 2 names for 1 checkpoints" in capsys.readouterr().err


def test_batch_larger_than_training_set_is_a_flag_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "mlp", "--data", "digits", "--train-subset", "50", "--batch-size", "64",
              "--out", "unused"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("secateurs train: error: --batch-size 64:") and "Traceback" not in err
