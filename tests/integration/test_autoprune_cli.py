"""``secateurs autoprune`` end to end on a tiny checkpoint, its errors, and the library's save/load round trip."""
import json

import pytest
import torch

import secateurs
from secateurs.cli import main
from secateurs.data import get_dataset
from secateurs.flops import count_model
from secateurs.io import ModelSpec, load_checkpoint, save
from secateurs.structured.autobot import AutoBotConfig, autoprune
from secateurs.train import evaluate

TRAIN = ["train", "--data", "digits", "--epochs", "1", "--lr", "0.05", "--batch-size", "64", "--no-augment",
         "--quiet", "--threads", "1"]
AUTOPRUNE = ["autoprune", "--data", "digits", "--batches", "10", "--batch-size", "32", "--threads", "1"]


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "dense"
    assert main(TRAIN + ["--model", "mlp", "--out", str(out)]) == 0
    return out


def test_autoprune_end_to_end(dense, tmp_path, capsys):
    out = tmp_path / "ab"
    assert main(AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", "0.5", "--finetune-epochs", "1",
                             "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    need = {"accuracy_before_finetune", "accuracy", "macs", "macs_dense", "flops_reduction", "params", "widths",
            "bottleneck_seconds", "bottleneck_images"}
    assert need <= set(s)
    assert 0.5 <= s["flops_reduction"] <= 0.51 and s["bottleneck_images"] == 10 * 32  # the budget [R, R + tol]
    assert s["finetune"] is not None and len(s["bottleneck_history"]) == 10
    model = secateurs.load(out)  # the plan in model.json rebuilds the pruned architecture
    data = get_dataset("digits")
    cost = count_model(model, data.input_shape)
    assert cost.macs == s["macs"] and cost.params == s["params"]
    assert evaluate(model, data.test_x, data.test_y)["accuracy"] == pytest.approx(s["accuracy"])
    assert (out / "autobot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plan = json.loads((out / "model.json").read_text())["plan"]
    assert {g: len(k) for g, k in plan["groups"].items()}.items() <= s["widths"].items()  # widths: every group
    assert "fewer" in capsys.readouterr().out


@pytest.mark.parametrize("first_command", ["autoprune", "prune"])
def test_autoprune_an_already_pruned_checkpoint(first_command, dense, tmp_path, capsys):
    """A pruned checkpoint pruned again: the reduction is relative to its MACs and model.json composes the plans."""
    first, second = tmp_path / "ab1", tmp_path / "ab2"
    if first_command == "autoprune":
        assert main(AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", "0.5", "--quiet",
                                 "--out", str(first)]) == 0
    else:
        assert main(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1",
                     "--flops-reduction", "0.5", "--quiet", "--threads", "1", "--out", str(first)]) == 0
    capsys.readouterr()
    assert main(AUTOPRUNE + ["--checkpoint", str(first), "--flops-reduction", "0.4", "--quiet", "--seed", "1",
                             "--out", str(second)]) == 0
    out = capsys.readouterr().out  # the source is not called "dense", and the user learns the plans compose
    assert "source (already pruned: this plan composes with its plan)" in out and " dense" not in out
    s1 = json.loads((first / "summary.json").read_text())
    s2 = json.loads((second / "summary.json").read_text())
    assert s2["source_pruned"] is True
    assert s2["macs_dense"] == s1["macs"] and abs(s2["flops_reduction"] - 0.4) <= 0.005
    assert all(s2["widths"][g] <= s1["widths"][g] for g in s2["widths"])
    plan = json.loads((second / "model.json").read_text())["plan"]
    assert {g: len(k) for g, k in plan["groups"].items()}.items() <= s2["widths"].items()
    assert plan["widths"] == json.loads((first / "model.json").read_text())["plan"]["widths"]  # dense widths
    data = get_dataset("digits")
    model = secateurs.load(second)  # the composed plan replayed on a fresh dense mlp
    assert count_model(model, data.input_shape).macs == s2["macs"]
    assert evaluate(model, data.test_x, data.test_y)["accuracy"] == pytest.approx(s2["accuracy"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A user factory (module:factory): one 8-channel conv, so reachable reductions are steps of about 1/8."""
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    assert main(TRAIN + ["--model", "fixtures.user_models:tiny", "--out", str(out)]) == 0
    return out


def test_autoprune_without_finetune_user_factory(tiny, tmp_path):
    out = tmp_path / "ab"
    assert main(AUTOPRUNE + ["--checkpoint", str(tiny), "--flops-reduction", "0.5", "--quiet",
                             "--out", str(out), "--trust-model-code"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["accuracy"] == s["accuracy_before_finetune"] and s["finetune"] is None
    assert s["flops_reduction"] == pytest.approx(0.5) and sum(s["widths"].values()) - s["widths_dense"]["4:out"] == 4
    assert count_model(secateurs.load(out, trust_model_code=True), (1, 8, 8)).macs == s["macs"]


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "x"])
def test_flops_reduction_out_of_range_exit_2(value, dense, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", value, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--flops-reduction" in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("value,needle", [("0.95", "out of reach"),  # one channel of 8 leaves 1/8 of the MACs
                                           ("0.3", "nearest reachable reductions are")])  # steps of 1/8
def test_unreachable_reduction_exit_2(value, needle, tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(AUTOPRUNE + ["--checkpoint", str(tiny), "--flops-reduction", value, "--quiet",
                          "--out", str(tmp_path / "o"), "--trust-model-code"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert f"--flops-reduction {value}" in err and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_library_round_trip_through_io(dense, tmp_path):
    ckpt = load_checkpoint(dense)
    data = get_dataset("digits")
    model = ckpt.model
    result = autoprune(model, data, 0.4, config=AutoBotConfig(batches=5, batch_size=32), progress=False)
    spec = ModelSpec(**{**ckpt.spec.__dict__, "plan": result.plan.to_dict()})
    save(tmp_path / "p", model, spec, result.summary())
    back = secateurs.load(tmp_path / "p")
    x = data.test_x[:16]
    with torch.no_grad():
        assert torch.equal(back(x), model.eval()(x))
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["macs"] == result.report.macs_after


def test_autoprune_finetune_with_distillation_from_the_source(dense, tmp_path, capsys):
    args = AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", "0.5", "--finetune-epochs", "1"]
    assert main(args + ["--distill", "--out", str(tmp_path / "kd"), "--quiet"]) == 0
    s = json.loads((tmp_path / "kd" / "summary.json").read_text())
    assert s["finetune"]["distill"] == {"teacher": "source", "kind": "distill", "weight": 0.5, "temperature": 4.0,
                                        "label_smoothing": 0.0}
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # nothing to distil into without fine-tuning
        main(AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", "0.5", "--distill",
                          "--out", str(tmp_path / "bad")])
    assert e.value.code == 2 and "--finetune-epochs" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_min_fraction_floors_every_group_and_is_refused_early_when_it_blocks_the_target(dense, tmp_path, capsys):
    out = tmp_path / "ab"
    assert main(AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", "0.4", "--min-fraction", "0.5",
                             "--quiet", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["autobot"]["min_fraction"] == 0.5 and 0.4 <= s["flops_reduction"] <= 0.41
    assert all(s["widths"][g] >= w / 2 for g, w in s["widths_dense"].items())
    # half the channels of every group cannot remove 90% of the MACs: refused before any bottleneck training
    with pytest.raises(SystemExit) as exc:
        main(AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", "0.9", "--min-fraction", "0.5",
                          "--quiet", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--flops-reduction 0.9" in err and "min_fraction=0.5" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cost_power_is_recorded_and_out_of_range_exit_2(dense, tmp_path, capsys):
    out = tmp_path / "ab"
    assert main(AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", "0.4", "--cost-power", "0",
                             "--quiet", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["autobot"]["cost_power"] == 0.0 and 0.4 <= s["flops_reduction"] <= 0.41
    for bad in ("1.5", "-0.5", "nan"):
        with pytest.raises(SystemExit) as exc:
            main(AUTOPRUNE + ["--checkpoint", str(dense), "--flops-reduction", "0.4", "--cost-power", bad,
                              "--out", str(tmp_path / "o")])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "--cost-power" in err and bad in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()
