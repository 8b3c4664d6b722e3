"""`secateurs sparsify` end to end on a tiny dataset, and the trainer callback."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from secateurs.cli import main
from secateurs.data import get_dataset
from secateurs.io import load_checkpoint
from secateurs.models import create_model
from secateurs.schedules import Cyclical
from secateurs.train import Callback, TrainConfig, fit
from secateurs.unstructured import CyclicalSparsifier, SparsifierCallback, num_pruned

torch.set_num_threads(1)

COMMON = ["--data", "digits", "--batch-size", "64", "--no-augment", "--quiet", "--threads", "1"]


def test_train_then_cyclical_sparsify(tmp_path):
    dense = tmp_path / "dense"
    assert main(["train", "--model", "mlp", "--epochs", "2", "--lr", "0.05", *COMMON, "--out", str(dense)]) == 0
    out = tmp_path / "sparse"
    argv = ["sparsify", "--checkpoint", str(dense), "--sparsity", "0.9", "--schedule", "cyclical", "--cycles", "2",
            "--ramp", "0.5", "--update-every", "5", "--scope", "global", "--min-density", "0.02", "--epochs", "2",
            "--lr", "0.02",
            *COMMON, "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"accuracy", "sparsity", "sparsity_per_layer", "recovered_fraction", "schedule", "elapsed_s"} <= set(summary)
    sched = summary["schedule"]
    assert sched["kind"] == "cyclical" and sched["cycles"] == 2 and sched["ramp"] == 0.5
    assert sched["total_steps"] == 2 * (1293 // 64) and sched["scope"] == "global"
    # exact sparsity, measured independently on the saved tensors
    state = load_file(str(out / "model.safetensors"))
    weights = [state[n] for n in sched["tensors"]]
    n_all = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == num_pruned(0.9, n_all) and summary["sparsity"] == zeros / n_all
    assert all(int((w != 0).sum()) >= 0.02 * w.numel() for w in weights)  # --min-density
    assert summary["accuracy"] > 0.5
    assert 0 <= summary["recovered_fraction"] <= 1
    assert (out / "sparsity.png").read_bytes()[:4] == b"\x89PNG"
    assert "mask frozen" in (out / "schedule.txt").read_text()
    history = json.loads((out / "history.json").read_text())
    assert history[0]["step"] == 0 and history[-1]["planned"] == 0.9
    # the checkpoint reloads as a plain model with the same zeros
    ckpt = load_checkpoint(out)
    assert ckpt.spec.sparsity["method"] == "cyclical"
    assert sum(int((p == 0).sum()) for n, p in ckpt.model.named_parameters() if n in sched["tensors"]) == zeros


def test_from_scratch_oneshot_layer_scope(tmp_path):
    out = tmp_path / "s"
    assert main(["sparsify", "--model", "mlp", "--sparsity", "0.5", "--schedule", "oneshot", "--prune-at", "0.5",
                 "--epochs", "1", *COMMON, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for name, s in summary["sparsity_per_layer"].items():
        n = load_file(str(out / "model.safetensors"))[name].numel()
        assert s == num_pruned(0.5, n) / n
    assert summary["recovered_fraction"] == 0.0  # one mask, never changed
    assert summary["schedule"]["prune_step"] == round(0.5 * (1293 // 64))


@pytest.mark.parametrize("argv,needle", [
    (["--sparsity", "1.0"], "--sparsity must be in [0, 1), got 1.0"),
    (["--sparsity", "-0.5"], "--sparsity must be in [0, 1)"),
    (["--sparsity", "0.5", "--cycles", "0"], "--cycles must be >= 1, got 0"),
    (["--sparsity", "0.5", "--cycles", "500", "--epochs", "1"], "--cycles: cycles=500 exceeds"),
    (["--sparsity", "0.5", "--schedule", "gmp", "--cycles", "2"], "--cycles 2: --cycles/"),
    (["--sparsity", "0.5", "--schedule", "gmp", "--last-cycle", "0.6"], "--last-cycle 0.6: --cycles/"),
    (["--sparsity", "0.5", "--schedule", "oneshot", "--lr-restart"], "apply to --schedule cyclical, not oneshot"),
    (["--sparsity", "0.5", "--cycles", "1", "--last-cycle", "0.6"], "--last-cycle: last_cycle needs cycles >= 2"),
    (["--sparsity", "0.5", "--last-cycle", "1"], "--last-cycle must be in (0, 1), got 1"),
    (["--sparsity", "0.5", "--include", "nothing*"], "--include/--exclude: no prunable tensors"),
    (["--sparsity", "0.99", "--scope", "global", "--min-density", "0.5"], "--min-density: min_density=0.5 keeps"),
    (["--sparsity", "0.5", "--min-density", "1"], "--min-density must be in [0, 1), got 1"),
])
def test_bad_values_exit_2(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sparsify", "--model", "mlp", *COMMON, *argv, "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_last_cycle_reaches_the_schedule(capsys):
    assert main(["sparsify", "--model", "mlp", "--sparsity", "0.8", "--epochs", "3", "--last-cycle", "0.75",
                 *COMMON, "--plan-only"]) == 0
    out = capsys.readouterr().out
    assert "last_cycle=0.75" in out


def test_plan_only_prints_the_table(capsys):
    assert main(["sparsify", "--model", "mlp", "--sparsity", "0.8", "--epochs", "3", *COMMON, "--plan-only"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Cyclical(final_sparsity=0.8") and "mask frozen" in out


def test_callback_with_the_trainer_and_adam():
    data = get_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    cb = SparsifierCallback(lambda m, total: CyclicalSparsifier(m, Cyclical(0.8, total, cycles=2), update_every=4),
                            lr_restart=True)
    cfg = TrainConfig(epochs=2, lr=3e-3, optimizer="adam", batch_size=64, weight_decay=0, warmup_epochs=0,
                      augment=False, seed=0)
    lrs = []

    class LR(Callback):
        def on_step_end(self, trainer, step, loss):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    result = fit(model, data, cfg, callbacks=[cb, LR()], progress=False)
    sp = cb.sparsifier
    assert sp.finalized and sp.step_count == result.steps == 2 * (1293 // 64)
    assert all(int((t.param == 0).sum()) == num_pruned(0.8, t.numel) for t in sp.targets)
    assert result.accuracy > 0.5
    assert cb.summary["recovered_fraction"] > 0
    assert [h["step"] for h in sp.history if h["planned"] == 0.0][:2] == [0, 20]  # the restart of cycle 2
    # --lr-restart: one cosine per cycle (lrs[i] is the rate for step i + 1)
    assert lrs[18] < 0.05 * 3e-3 and lrs[19] == pytest.approx(3e-3) and lrs[-1] < lrs[19]


def test_killed_sparsify_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    from secateurs.train import Trainer

    argv = ["sparsify", "--model", "mlp", "--sparsity", "0.8", "--schedule", "cyclical", "--cycles", "2",
            "--update-every", "4", "--epochs", "3", "--lr", "0.05", *COMMON]
    assert main(argv + ["--out", str(tmp_path / "straight")]) == 0
    state = tmp_path / "state.pt"
    save = Trainer.save_state

    def save_then_die(self, path):
        save(self, path)
        if self.epoch == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Trainer, "save_state", save_then_die)
        with pytest.raises(SystemExit) as exc:
            main(argv + ["--save-state", str(state), "--out", str(tmp_path / "resumed")])
    assert exc.value.code == 130 and state.is_file() and not (tmp_path / "resumed").exists()
    assert main(argv + ["--resume", str(state), "--save-state", str(state), "--out", str(tmp_path / "resumed")]) == 0
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    refused = [  # each is one line naming the flag, exit 2, nothing written
        (["--lr", "0.1", "--resume", str(state)], "--resume", "lr: saved 0.05, now 0.1"),
        (["--lr-restart", "--resume", str(state)], "--resume", "lr_restart: saved False, now True"),
        (["--sparsity", "0.7", "--resume", str(state)], "--resume", "differs"),
        (["--save-state", str(state)], "--save-state", "already exists"),
        (["--save-state", str(tmp_path / "x" / "state.pt")], "--save-state", "outside --out"),
    ]
    for extra, flag, needle in refused:
        with pytest.raises(SystemExit) as exc:
            main(argv + extra + ["--out", str(tmp_path / "x")])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and flag in err and needle in err and "Traceback" not in err, err
        assert len(err.splitlines()) == 1 and not (tmp_path / "x").exists()


def test_sparsify_with_distillation_from_the_dense_checkpoint(tmp_path):
    dense = tmp_path / "dense"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--lr", "0.05", *COMMON, "--out", str(dense)]) == 0
    argv = ["sparsify", "--checkpoint", str(dense), "--sparsity", "0.8", "--epochs", "1", "--update-every", "5",
            "--lr", "0.02", *COMMON]
    assert main(argv + ["--out", str(tmp_path / "plain")]) == 0
    assert main(argv + ["--distill-from", str(dense), "--distill-weight", "1", "--out", str(tmp_path / "kd")]) == 0
    s = json.loads((tmp_path / "kd" / "summary.json").read_text())
    assert s["distill"]["teacher"] == str(dense) and s["distill"]["weight"] == 1.0
    assert s["sparsity"] == pytest.approx(0.8, abs=1e-3)
    a, b = load_file(str(tmp_path / "plain" / "model.safetensors")), load_file(str(tmp_path / "kd" / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the loss changed the weights
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["distill"] is None


def test_a_short_run_warns_in_one_line_and_still_ramps(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sparsify", "--model", "mlp", "--sparsity", "0.9", "--epochs", "1", *COMMON, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "update_every" in line]
    assert len(lines) == 1 and lines[0].startswith("secateurs sparsify: warning: update_every=50")
    assert "UserWarning" not in err
    history = json.loads((out / "history.json").read_text())
    assert sum(0 < h["planned"] < 0.9 for h in history) >= 2  # intermediate sparsities inside the ramps


@pytest.mark.parametrize("flag,expected", [("on", True), ("off", False)])
def test_live_outputs_flag_reaches_the_sparsifier_and_the_files(tmp_path, flag, expected):
    out = tmp_path / flag
    assert main(["sparsify", "--model", "mlp", "--sparsity", "0.9", "--schedule", "oneshot", "--epochs", "1",
                 "--live-outputs", flag, *COMMON, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schedule"]["live_outputs"] is expected
    assert json.loads((out / "model.json").read_text())["sparsity"]["live_outputs"] is expected
