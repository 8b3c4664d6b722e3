"""secateurs explain / prune / finetune / export end to end on tiny trained checkpoints (digits, 8x8)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from secateurs.cli import main
from secateurs.graph import build_channel_graph
from secateurs.io import load, load_checkpoint, save
from secateurs.models import create_model as secateurs_create
from secateurs.structured import PruningPlan, mask_model

QUIET = ["--quiet", "--threads", "1"]
TRAIN = ["train", "--data", "digits", "--epochs", "2", "--lr", "0.05", "--batch-size", "64", "--no-augment"] + QUIET


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """A trained mlp (300-100 hidden units) on digits."""
    out = tmp_path_factory.mktemp("dense") / "mlp"
    assert main(TRAIN + ["--model", "mlp", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def user_dense(tmp_path_factory):
    """A user's ``module:factory`` model (conv 8 channels + linear) trained on digits."""
    out = tmp_path_factory.mktemp("dense") / "tiny"
    assert main(TRAIN + ["--model", "fixtures.user_models:tiny", "--out", str(out)]) == 0
    return out


def _prune(src, out, *extra):
    # the user-factory checkpoints name fixtures.user_models:*, which only loads with the explicit opt-in
    return main(["prune", "--checkpoint", str(src), "--data", "digits", "--out", str(out), "--trust-model-code"]
                + QUIET + list(extra))


def _masked_dense_equals_loaded(dense_dir, pruned_dir):
    """The loaded pruned model computes what the dense model computes with the plan's channels gated off."""
    dense_model = load(dense_dir, trust_model_code=True)
    pruned = load_checkpoint(pruned_dir, trust_model_code=True)
    x = torch.randn(16, *pruned.spec.input_shape)
    graph = build_channel_graph(dense_model, x[:1])
    with torch.no_grad(), mask_model(dense_model, graph, PruningPlan.from_dict(pruned.spec.plan)):
        want = dense_model(x)
    with torch.no_grad():
        got = pruned.model(x)
    assert (got - want).abs().max() <= 1e-5


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor", "random"])
def test_prune_writes_a_replayable_checkpoint_and_summary(criterion, dense, tmp_path, capsys):
    out = tmp_path / "p"
    calib = ["--calib-batches", "2"] if criterion == "taylor" else []  # refused for the others: it does nothing
    assert _prune(dense, out, "--criterion", criterion, "--flops-reduction", "0.5", *calib) == 0
    assert "removed" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert {"accuracy", "macs", "macs_dense", "flops_reduction", "params", "params_dense", "widths"} <= set(s)
    assert 0.5 <= s["flops_reduction"] <= 0.51
    assert s["flops_reduction"] == pytest.approx(1 - s["macs"] / s["macs_dense"])
    assert s["params"] < s["params_dense"] and 0 <= s["accuracy"] <= 1
    spec = json.loads((out / "model.json").read_text())
    assert spec["plan"]["meta"]["criterion"] == criterion and spec["plan"]["meta"]["target"] == 0.5
    assert s["widths"]["features.0:out"] == len(spec["plan"]["groups"]["features.0:out"]) < 300
    assert s["widths"]["classifier:out"] == 10  # the classifier is never pruned
    # load rebuilds the pruned model: same accuracy as the summary reports, same function as the gated dense model
    ckpt = load_checkpoint(out)
    from secateurs.data import get_dataset
    from secateurs.train import evaluate

    data = get_dataset("digits")
    assert evaluate(ckpt.model, data.test_x, data.test_y)["accuracy"] == s["accuracy"]
    _masked_dense_equals_loaded(dense, out)


def test_user_factory_model_prunes_loads_and_explains(user_dense, tmp_path, capsys):
    out = tmp_path / "p"
    # 8 channels of 12.5% of the MACs each: 30% cannot land within 1 point, 4 channels can
    with pytest.raises(SystemExit) as exc:
        _prune(user_dense, out, "--criterion", "l1", "--flops-reduction", "0.3")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--flops-reduction 0.3: cannot land within 1%" in err and len(err.strip().splitlines()) == 1
    assert _prune(user_dense, out, "--criterion", "l1", "--flops-reduction", "0.495") == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["widths"] == {"0:out": 4, "4:out": 10} and 0.495 <= s["flops_reduction"] <= 0.505
    assert load(out, trust_model_code=True)[0].out_channels == 4
    _masked_dense_equals_loaded(user_dense, out)
    capsys.readouterr()
    assert main(["explain", "--checkpoint", str(out), "--json", "--trust-model-code"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {g["id"]: g["width"] for g in info["groups"]} == {"0:out": 4, "4:out": 10}
    assert any(u["layer"] == "4 (out)" and "model output" in u["reason"] for u in info["unprunable"])


def test_scope_round_to_min_channels_and_errors(dense, tmp_path, capsys):
    out = tmp_path / "p"
    assert _prune(dense, out, "--criterion", "l1", "--flops-reduction", "0.4", "--scope", "local",
                  "--round-to", "8", "--min-channels", "16") == 0
    s = json.loads((out / "summary.json").read_text())
    assert 0.4 <= s["flops_reduction"] <= 0.41 and s["scope"] == "local"
    assert all(w % 8 == 0 and w >= 16 for g, w in s["widths"].items() if g != "classifier:out")
    for argv, needle in [
        (["--criterion", "l1", "--flops-reduction", "0.99", "--min-channels", "64"],
         "--flops-reduction 0.99: a 99.0% MACs reduction is beyond what min_channels=64 allows: at most"),
        (["--criterion", "l1", "--flops-reduction", "0.3", "--min-channels", "1000"],
         "--min-channels 1000: leaves nothing to prune: the widest of the"),
        (["--criterion", "bn", "--flops-reduction", "0.5"], "--criterion bn: criterion 'bn' needs an affine BatchNorm"),
        (["--criterion", "l1", "--flops-reduction", "1.5"], "--flops-reduction must be in [0, 1)"),
    ]:
        with pytest.raises(SystemExit) as exc:
            _prune(dense, tmp_path / "bad", *argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_finetune_a_pruned_checkpoint_keeps_its_widths(dense, tmp_path):
    assert _prune(dense, tmp_path / "p", "--criterion", "l1", "--flops-reduction", "0.5") == 0
    assert main(["finetune", "--checkpoint", str(tmp_path / "p"), "--data", "digits", "--epochs", "1",
                 "--lr", "0.05", "--out", str(tmp_path / "f")] + QUIET) == 0
    s = json.loads((tmp_path / "f" / "summary.json").read_text())
    before = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert s["accuracy_before"] == pytest.approx(before["accuracy"]) and 0 <= s["accuracy"] <= 1
    assert s["params"] == before["params"] and s["macs"] == before["macs"]
    a, b = load_file(str(tmp_path / "p" / "model.safetensors")), load_file(str(tmp_path / "f" / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # it trained
    assert json.loads((tmp_path / "f" / "model.json").read_text())["plan"] is not None


def test_finetune_a_sparse_checkpoint_keeps_its_zeros(dense, tmp_path):
    ckpt = load_checkpoint(dense)
    names = ["features.0.weight", "features.2.weight"]
    with torch.no_grad():
        for n in names:
            w = ckpt.model.get_parameter(n)
            w.mul_(w.abs() > w.abs().flatten().kthvalue(w.numel() * 7 // 10).values)
    spec = ckpt.spec
    spec.sparsity = {"method": "oneshot", "sparsity": 0.7, "target": 0.7, "scope": "layer", "tensors": names}
    save(tmp_path / "s", ckpt.model, spec, ckpt.summary)
    assert main(["finetune", "--checkpoint", str(tmp_path / "s"), "--data", "digits", "--epochs", "1",
                 "--lr", "0.05", "--out", str(tmp_path / "f")] + QUIET) == 0
    a, b = load_file(str(tmp_path / "s" / "model.safetensors")), load_file(str(tmp_path / "f" / "model.safetensors"))
    for k in names:
        assert torch.equal(a[k] == 0, b[k] == 0)  # exactly the same zeros
        assert not torch.equal(a[k], b[k])  # the kept weights trained
    s = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert s["sparse"] and s["sparsity"] == pytest.approx(0.7, abs=0.01)


def test_explain_a_zoo_model_before_training(capsys):
    assert main(["explain", "--model", "resnet20", "--input-shape", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "total MACs: 40,813,184" in out and "12/13 groups prunable" in out
    assert "fc (out): 10/10 channels fixed" in out and "produces a model output" in out
    assert main(["explain", "--model", "resnet20", "--input-shape", "3,32,32", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_macs"] == 40_813_184 and len(info["groups"]) == 13
    assert all(0 <= g["macs_share"] <= 1 for g in info["groups"])


def test_export_cli(user_dense, tmp_path, capsys):
    assert _prune(user_dense, tmp_path / "p", "--criterion", "random", "--flops-reduction", "0.495") == 0
    model = load(tmp_path / "p", trust_model_code=True)
    x = torch.randn(3, 1, 8, 8)
    assert main(["export", "--trust-model-code", "--checkpoint", str(tmp_path / "p"), "--format", "torchscript",
                 "--out", str(tmp_path / "m.pt")]) == 0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ts = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad():
        assert torch.allclose(ts(x), model(x), atol=1e-5)
    pytest.importorskip("onnx")
    assert main(["export", "--trust-model-code", "--checkpoint", str(tmp_path / "p"), "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")]) == 0
    with pytest.raises(SystemExit):
        main(["export", "--trust-model-code", "--checkpoint", str(tmp_path / "p"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert "already exists" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bn_dense(tmp_path_factory):
    out = tmp_path_factory.mktemp("dense") / "bn"
    assert main(TRAIN + ["--model", "fixtures.user_models:bn_net", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("command", ["prune", "autoprune"])
def test_bn_batches_reestimates_statistics_after_pruning(command, bn_dense, tmp_path):
    from secateurs.data import get_dataset
    from secateurs.train import evaluate

    extra = (["--criterion", "l1"] if command == "prune"
             else ["--batches", "5", "--batch-size", "32", "--tolerance", "0.02"])
    base = [command, "--checkpoint", str(bn_dense), "--data", "digits", "--flops-reduction", "0.5", *extra, *QUIET,
            "--trust-model-code"]
    assert main(base + ["--out", str(tmp_path / "plain")]) == 0
    assert main(base + ["--bn-batches", "10", "--out", str(tmp_path / "bn")]) == 0
    key = "accuracy" if command == "prune" else "accuracy_before_finetune"
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text())
    bn = json.loads((tmp_path / "bn" / "summary.json").read_text())
    assert plain["bn_batches"] == 0 and plain["accuracy_before_bn"] is None
    assert bn["bn_batches"] == 10 and bn["accuracy_before_bn"] == plain[key]  # same selection, then re-estimated
    assert bn["widths"] == plain["widths"]
    a = load_file(str(tmp_path / "plain" / "model.safetensors"))
    b = load_file(str(tmp_path / "bn" / "model.safetensors"))
    stats = ("running_mean", "running_var", "num_batches_tracked")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if not k.endswith(stats))  # no update
    assert not torch.equal(a["4.running_mean"], b["4.running_mean"]) and bn["bn_batches_used"] == 10
    data = get_dataset("digits")
    assert evaluate(load(tmp_path / "bn", trust_model_code=True), data.test_x, data.test_y)["accuracy"] == pytest.approx(bn[key])


def test_finetune_distills_from_a_teacher_and_records_it(dense, tmp_path, capsys):
    """--distill-from changes the training loss (different weights than plain fine-tuning, same seed)."""
    assert _prune(dense, tmp_path / "p", "--criterion", "l1", "--flops-reduction", "0.5") == 0
    ft = ["finetune", "--checkpoint", str(tmp_path / "p"), "--data", "digits", "--epochs", "1", "--lr", "0.05"]
    assert main(ft + ["--out", str(tmp_path / "plain")] + QUIET) == 0
    assert main(ft + ["--distill-from", str(dense), "--distill-weight", "0.7", "--temperature", "2",
                      "--out", str(tmp_path / "kd")] + QUIET) == 0
    s = json.loads((tmp_path / "kd" / "summary.json").read_text())
    assert s["distill"] == {"teacher": str(dense), "kind": "distill", "weight": 0.7, "temperature": 2.0,
                            "label_smoothing": 0.0}
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["distill"] is None
    a = load_file(str(tmp_path / "plain" / "model.safetensors"))
    b = load_file(str(tmp_path / "kd" / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # a teacher for other data, and a weight outside [0, 1], are one-line usage errors
    other = tmp_path / "other"
    spec = load_checkpoint(dense).spec
    spec.num_classes, spec.kwargs = 3, {**spec.kwargs, "num_classes": 3}
    save(other, secateurs_create("mlp", **spec.kwargs), spec, {})
    capsys.readouterr()
    for extra, needle in ((["--distill-from", str(other)], "3 classes"),
                          (["--distill-from", str(dense), "--distill-weight", "1.5"], "--distill-weight")):
        with pytest.raises(SystemExit) as e:
            main(ft + extra + ["--out", str(tmp_path / "bad")] + QUIET)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()
