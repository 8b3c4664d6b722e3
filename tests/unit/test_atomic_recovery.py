"""Killed writers leave nothing that lasts: the next write restores or cleans up (at every kill point), two runs
never write one path at once, and outputs follow the umask."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from secateurs.cli import main
from secateurs.io import ModelSpec, load_checkpoint, output_lock, recover, save
from secateurs.models import create_model

SRC = Path(__file__).resolve().parents[2] / "src"
KW = {"num_classes": 10, "in_channels": 1, "input_size": 8}
SPEC = ModelSpec(name="mlp", kwargs=KW, input_shape=[1, 8, 8], num_classes=10, dataset="digits")

# save() with overwrite calls os.replace for model.json (1), summary.json (2), old -> aside (3), new -> out (4);
# kill point 0 is inside the weight write, before any rename.
KILLER = textwrap.dedent("""
    import os, sys
    import safetensors.torch as st
    import secateurs.io as io
    from secateurs.models import create_model
    out, point = sys.argv[1], int(sys.argv[2])
    calls = [0]
    real = os.replace
    def replace(a, b):
        real(a, b)
        calls[0] += 1
        if calls[0] == point:
            os._exit(137)
    def save_file(*a, **k):
        st.save_file(*a, **k)
        if point == 0:
            os._exit(137)
    io.os.replace = replace
    io.save_file = save_file
    kw = {"num_classes": 10, "in_channels": 1, "input_size": 8}
    spec = io.ModelSpec(name="mlp", kwargs=kw, input_shape=[1, 8, 8], num_classes=10)
    io.save(out, create_model("mlp", **kw), spec, {"v": 2}, overwrite=True)
""")


def _kill_during_replace(out: Path, point: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", KILLER, str(out), str(point)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == (137 if point <= 4 else 0), r.stderr


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


@pytest.mark.parametrize("point,expect", [(0, 1), (1, 1), (2, 1), (3, 1), (4, 2)])
def test_every_kill_point_is_recovered(point, expect, tmp_path):
    out = tmp_path / "ckpt"
    save(out, create_model("mlp", **KW), SPEC, {"v": 1})
    _kill_during_replace(out, point)
    assert _siblings(out), "the kill left no debris: the kill point was not reached"
    if point == 3:
        assert not out.exists()  # the swap window: no checkpoint at the final path until recovery
    with output_lock(out):  # as every writer does: the killed run's stale lock file goes with ours
        notes = recover(out)
    assert notes and _siblings(out) == []
    if point == 3:
        assert any("restored" in n for n in notes)
    assert json.loads((out / "summary.json").read_text()) == {"v": expect}
    assert load_checkpoint(out).model is not None


def test_next_cli_run_recovers_and_says_so(tmp_path, capsys):
    out = tmp_path / "ckpt"
    save(out, create_model("mlp", **KW), SPEC, {"v": 1})
    _kill_during_replace(out, 3)
    assert not out.exists()
    with pytest.raises(SystemExit):  # the restored checkpoint exists, so without --overwrite the run stops
        main(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert "restored" in err and _siblings(out) == [] and out.is_dir()


def _hold_lock(path: Path):
    code = ("import sys, time\nfrom secateurs.io import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("flag", ["--out", "--save-state"])
def test_a_second_run_on_one_path_fails_before_any_work(flag, tmp_path, capsys):
    target = tmp_path / ("o" if flag == "--out" else "state.pt")
    holder = _hold_lock(target)
    try:
        argv = ["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--quiet",
                "--out", str(tmp_path / "o"), "--save-state", str(tmp_path / "state.pt")]
        start = time.perf_counter()
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and flag in err and "another secateurs run" in err
        assert time.perf_counter() - start < 5 and not (tmp_path / "o").exists()
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_reentrant_in_one_process_and_leaves_nothing(tmp_path):
    with output_lock(tmp_path / "x"):
        with output_lock(tmp_path / "x"):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask,dir_mode,file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600),
                                                      (0o002, 0o775, 0o664)])
def test_outputs_follow_the_umask(umask, dir_mode, file_mode, tmp_path):
    old = os.umask(umask)
    try:
        out = save(tmp_path / "c", create_model("mlp", **KW), SPEC, {"v": 1})
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == dir_mode
    for f in ("model.json", "summary.json", "model.safetensors"):
        assert (out / f).stat().st_mode & 0o777 == file_mode, f
