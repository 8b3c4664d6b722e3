"""Broken and hostile inputs end in one line and exit status 2 -- never a traceback, never a damaged file.

Every crafted file is generated here from a real (untrained) mlp checkpoint for digits (1x8x8).
"""
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from secateurs.cli import main
from secateurs.errors import CheckpointError, NonFiniteError
from secateurs.io import ModelSpec, load_checkpoint, save
from secateurs.models import create_model

KW = {"num_classes": 10, "in_channels": 1, "input_size": 8}
QUIET = ["--quiet", "--threads", "1"]


def _good(path: Path) -> Path:
    spec = ModelSpec(name="mlp", kwargs=dict(KW), input_shape=[1, 8, 8], num_classes=10, dataset="digits")
    save(path, create_model("mlp", **KW), spec, {"accuracy": 0.5})
    return path


def _edit_json(path: Path, name: str, change):
    d = json.loads((path / name).read_text())
    change(d)
    (path / name).write_text(json.dumps(d))


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _drop(key):
    return lambda d: d.pop(key)


def _weights(path: Path, fn):
    from safetensors.torch import load_file

    state = load_file(str(path / "model.safetensors"))
    fn(state)
    save_file(state, str(path / "model.safetensors"))


def _nan(state):
    next(iter(state.values())).view(-1)[0] = float("nan")


def _inf(state):
    k = next(iter(state))
    state[k].view(-1)[3] = float("inf")


CRAFTED = {
    "safetensors empty": lambda p: (p / "model.safetensors").write_bytes(b""),
    "safetensors truncated": lambda p: (p / "model.safetensors").write_bytes(
        (p / "model.safetensors").read_bytes()[:100]),
    "safetensors garbage": lambda p: (p / "model.safetensors").write_bytes(os.urandom(4096)),
    "safetensors huge header": lambda p: (p / "model.safetensors").write_bytes((1 << 60).to_bytes(8, "little")),
    "safetensors missing tensor": lambda p: _weights(p, lambda s: s.pop(next(iter(s)))),
    "safetensors wrong shape": lambda p: _weights(p, lambda s: s.__setitem__(next(iter(s)), torch.zeros(2, 2))),
    "weights nan": lambda p: _weights(p, _nan),
    "weights inf": lambda p: _weights(p, _inf),
    "model.json empty": lambda p: (p / "model.json").write_text(""),
    "model.json garbage": lambda p: (p / "model.json").write_bytes(b"\xff\xfe{{{"),
    "model.json list": lambda p: (p / "model.json").write_text("[1, 2]"),
    "model.json NaN token": lambda p: (p / "model.json").write_text(
        (p / "model.json").read_text().replace('"num_classes": 10,', '"num_classes": NaN,', 1)),
    "model.json deep nesting": lambda p: (p / "model.json").write_text("[" * 100000 + "]" * 100000),
    "format wrong": lambda p: _edit_json(p, "model.json", _set("format", "other")),
    "version future": lambda p: _edit_json(p, "model.json", _set("version", 99)),
    "version string": lambda p: _edit_json(p, "model.json", _set("version", "x")),
    "name missing": lambda p: _edit_json(p, "model.json", _drop("name")),
    "name int": lambda p: _edit_json(p, "model.json", _set("name", 3)),
    "name unknown zoo": lambda p: _edit_json(p, "model.json", _set("name", "resnet9000")),
    "name unimportable module": lambda p: _edit_json(p, "model.json", _set("name", "no_such_mod_xyz:make")),
    "name empty prefix": lambda p: _edit_json(p, "model.json", _set("name", ":make")),
    "kwargs list": lambda p: _edit_json(p, "model.json", _set("kwargs", [1])),
    "kwargs unknown key": lambda p: _edit_json(p, "model.json", _set("kwargs", {**KW, "bogus": 1})),
    "kwargs wrong type": lambda p: _edit_json(p, "model.json", _set("kwargs", {**KW, "hidden": "abc"})),
    "kwargs num_classes string": lambda p: _edit_json(p, "model.json", _set("kwargs", {**KW, "num_classes": "x"})),
    "kwargs huge width": lambda p: _edit_json(p, "model.json", _set("kwargs", {**KW, "hidden": [10 ** 8]})),
    "kwargs not identifier": lambda p: _edit_json(p, "model.json", _set("kwargs", {"a b": 1})),
    "input_shape missing": lambda p: _edit_json(p, "model.json", _drop("input_shape")),
    "input_shape string": lambda p: _edit_json(p, "model.json", _set("input_shape", "1,8,8")),
    "input_shape negative": lambda p: _edit_json(p, "model.json", _set("input_shape", [1, -8, 8])),
    "input_shape huge": lambda p: _edit_json(p, "model.json", _set("input_shape", [1, 100000, 100000])),
    "input_shape float": lambda p: _edit_json(p, "model.json", _set("input_shape", [1, 8.5, 8])),
    "num_classes bool": lambda p: _edit_json(p, "model.json", _set("num_classes", True)),
    "plan list": lambda p: _edit_json(p, "model.json", _set("plan", [1])),
    "plan no version": lambda p: _edit_json(p, "model.json", _set("plan", {"groups": {}, "widths": {}})),
    "plan groups not dict": lambda p: _edit_json(p, "model.json", _set("plan", {"version": 1, "groups": 3,
                                                                                "widths": {}})),
    "plan index out of range": lambda p: _edit_json(p, "model.json", _set(
        "plan", {"version": 1, "groups": {"g": [0, 99]}, "widths": {"g": 4}})),
    "plan empty group": lambda p: _edit_json(p, "model.json", _set(
        "plan", {"version": 1, "groups": {"g": []}, "widths": {"g": 4}})),
    "plan unknown group": lambda p: _edit_json(p, "model.json", _set(
        "plan", {"version": 1, "groups": {"nope:out": [0]}, "widths": {"nope:out": 4}})),
    "plan wrong width": lambda p: _edit_json(p, "model.json", _set(
        "plan", {"version": 1, "groups": {"net.0:out": [0]}, "widths": {"net.0:out": 7}})),
    "sparsity tensors bad": lambda p: _edit_json(p, "model.json", _set("sparsity", {"tensors": 5})),
    "summary list": lambda p: (p / "summary.json").write_text("[]"),
    "summary string accuracy": lambda p: _edit_json(p, "summary.json", _set("accuracy", "high")),
    "summary accuracy 7": lambda p: _edit_json(p, "summary.json", _set("accuracy", 7)),
    "summary garbage": lambda p: (p / "summary.json").write_text("{"),
    "model.json missing": lambda p: (p / "model.json").unlink(),
    "model.json is a dir": lambda p: ((p / "model.json").unlink(), (p / "model.json").mkdir()),
}


def _digest(path: Path) -> dict:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_checkpoint_is_one_line_exit_2(case, tmp_path, capsys):
    ckpt = _good(tmp_path / "c")
    CRAFTED[case](ckpt)
    before = _digest(ckpt)
    with pytest.raises(SystemExit) as exc:
        main(["info", "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "--checkpoint" in err
    assert _digest(ckpt) == before  # reading never changes the input


@pytest.mark.parametrize("case", ["weights nan", "plan unknown group", "summary string accuracy", "kwargs list"])
def test_library_raises_typed_errors_with_file_and_field(case, tmp_path):
    ckpt = _good(tmp_path / "c")
    CRAFTED[case](ckpt)
    with pytest.raises((CheckpointError, NonFiniteError)) as info:
        load_checkpoint(ckpt)
    if isinstance(info.value, CheckpointError):
        assert info.value.path is not None and info.value.path.parent == ckpt
        assert info.value.field in {"plan", "accuracy", "kwargs"}


def test_non_finite_weights_can_be_read_on_request(tmp_path):
    ckpt = _good(tmp_path / "c")
    _weights(ckpt, _nan)
    assert load_checkpoint(ckpt, allow_non_finite=True).model is not None


# ----------------------------------------------------------------------------------------------- outputs
def _fails(argv, capsys, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


def test_report_out_never_overwrites_silently(tmp_path, capsys):
    ckpt = _good(tmp_path / "c")
    before = _digest(ckpt)
    _fails(["report", str(ckpt), "--no-latency", "--out", str(ckpt / "model.json")], capsys, "inside the checkpoint")
    _fails(["report", str(ckpt), "--no-latency", "--out", str(ckpt / "model.json"), "--overwrite"], capsys,
           "inside the checkpoint input")
    assert _digest(ckpt) == before
    other = tmp_path / "table.md"
    other.write_text("mine")
    _fails(["report", str(ckpt), "--no-latency", "--out", str(other)], capsys, "already exists")
    assert other.read_text() == "mine"
    assert main(["report", str(ckpt), "--no-latency", "--out", str(other), "--overwrite"]) == 0
    assert other.read_text().startswith("| model")


def test_outputs_that_contain_or_lie_inside_inputs_are_refused(tmp_path, capsys):
    runs = tmp_path / "runs"
    ckpt = _good(runs / "dense")
    sibling = _good(runs / "other")
    before, sibling_before = _digest(ckpt), _digest(sibling)
    base = ["finetune", "--checkpoint", str(ckpt), "--data", "digits", "--epochs", "1", *QUIET]
    _fails(base + ["--out", str(runs), "--overwrite"], capsys, "contains the --checkpoint input")
    _fails(base + ["--out", str(ckpt), "--overwrite"], capsys, "is the --checkpoint input")
    _fails(["prune", "--checkpoint", str(ckpt), "--data", "digits", "--criterion", "l1", "--flops-reduction",
            "0.3", "--out", str(ckpt / "pruned")], capsys, "lies inside the --checkpoint input")
    _fails(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--out", str(ckpt / "m.pt")],
           capsys, "lies inside")
    assert _digest(ckpt) == before and _digest(sibling) == sibling_before


def test_overwrite_never_replaces_a_directory_that_is_not_a_checkpoint(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    _fails(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", str(mine), "--overwrite",
            *QUIET], capsys, "not a secateurs checkpoint")
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_export_over_an_existing_directory_is_refused(tmp_path, capsys):
    ckpt = _good(tmp_path / "c")
    (tmp_path / "d").mkdir()
    _fails(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--out", str(tmp_path / "d"),
            "--overwrite"], capsys, "not a regular file")


def test_an_opset_too_old_for_the_model_is_one_line_naming_it(tmp_path, capsys):
    pytest.importorskip("onnx")
    spec = ModelSpec(name="vit_tiny", kwargs=dict(KW), input_shape=[1, 8, 8], num_classes=10, dataset="digits")
    save(tmp_path / "vit", create_model("vit_tiny", **KW), spec, {"accuracy": 0.5})  # GELU: Erf needs opset 9
    _fails(["export", "--checkpoint", str(tmp_path / "vit"), "--format", "onnx", "--opset", "7", "--out",
            str(tmp_path / "v.onnx")], capsys, "--opset 7: cannot export 'vit_tiny'")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["vit"]


def test_state_file_inside_data_dir_or_checkpoint_is_refused(tmp_path, capsys):
    ckpt = _good(tmp_path / "c")
    _fails(["finetune", "--checkpoint", str(ckpt), "--data", "digits", "--epochs", "1", "--out",
            str(tmp_path / "o"), "--save-state", str(ckpt / "state.pt"), *QUIET], capsys, "--save-state")
    assert not (ckpt / "state.pt").exists()


def test_state_file_inside_the_teacher_is_refused(tmp_path, capsys):
    ckpt, teacher = _good(tmp_path / "c"), _good(tmp_path / "t")
    before = {f.name: f.read_bytes() for f in teacher.iterdir()}
    for state in (teacher / "model.safetensors", teacher / "state.pt"):
        _fails(["finetune", "--checkpoint", str(ckpt), "--distill-from", str(teacher), "--data", "digits", "--epochs",
                "1", "--out", str(tmp_path / "o"), "--save-state", str(state), "--overwrite", *QUIET], capsys,
               "--distill-from")
    assert {f.name: f.read_bytes() for f in teacher.iterdir()} == before


def test_out_over_the_latency_profiles_checkpoint_is_refused(tmp_path, capsys):
    ckpt, other = _good(tmp_path / "c"), _good(tmp_path / "other")
    (other / "lat.json").write_text("{}")
    _fails(["prune", "--checkpoint", str(ckpt), "--data", "digits", "--criterion", "l1", "--latency-reduction", "0.3",
            "--latency-profile", str(other / "lat.json"), "--out", str(other), "--overwrite", *QUIET], capsys,
           "--latency-profile")
    assert (other / "lat.json").read_text() == "{}"


@pytest.mark.parametrize("kind", ["a user's file", "a directory"])
def test_overwrite_replaces_only_a_training_state(kind, tmp_path, capsys):
    target = tmp_path / "mine"
    if kind == "a directory":
        target.mkdir()
        (target / "notes.txt").write_text("keep")
        needle = "not a regular file"
    else:
        target.write_text("precious")
        needle = "is not a readable training state"
    _fails(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "o"),
            "--save-state", str(target), "--overwrite", *QUIET], capsys, needle)
    assert not (tmp_path / "o").exists()
    assert (target / "notes.txt").read_text() == "keep" if kind == "a directory" else target.read_text() == "precious"


def test_a_state_behind_a_symbolic_link_is_refused_naming_its_target(tmp_path, capsys):
    state = tmp_path / "state.pt"
    argv = ["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--max-steps", "2", *QUIET]
    assert main(argv + ["--out", str(tmp_path / "a"), "--save-state", str(state)]) == 0
    (tmp_path / "link.pt").symlink_to(state)
    before = state.read_bytes()
    err = _fails(argv + ["--out", str(tmp_path / "b"), "--save-state", str(tmp_path / "link.pt"), "--resume",
                         str(tmp_path / "link.pt")], capsys, "is a symbolic link")
    assert repr(str(state.resolve())) in err and state.read_bytes() == before and (tmp_path / "link.pt").is_symlink()


def test_overwrite_says_why_a_state_from_a_newer_version_is_kept(tmp_path, capsys):
    from secateurs.train_state import TRAIN_STATE_FORMAT, TRAIN_STATE_VERSION

    target = tmp_path / "newer.pt"
    torch.save({"format": TRAIN_STATE_FORMAT, "version": TRAIN_STATE_VERSION + 1}, target)
    before = target.read_bytes()
    _fails(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "o"),
            "--save-state", str(target), "--overwrite", *QUIET], capsys, "newer")
    assert target.read_bytes() == before and not (tmp_path / "o").exists()


def test_overwrite_replaces_an_earlier_runs_state(tmp_path):
    state = tmp_path / "state.pt"
    argv = ["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--max-steps", "2", "--save-state",
            str(state), "--overwrite", *QUIET]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0 and state.is_file()
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0  # the first run's state, replaced


# ----------------------------------------------------------------------------------------------- state files
@pytest.mark.parametrize("content", [b"", b"garbage", "no config"])
def test_bad_resume_files(content, tmp_path, capsys):
    state = tmp_path / "state.pt"
    if content == "no config":
        torch.save({"format": "secateurs-train-state", "version": 1}, state)
    else:
        state.write_bytes(content)
    _fails(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--resume", str(state),
            "--save-state", str(state), "--out", str(tmp_path / "o"), *QUIET], capsys, "--resume")
    assert not (tmp_path / "o").exists()


def test_missing_dataset_files_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SECATEURS_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    _fails(["train", "--model", "mlp", "--data", "fashion-mnist", "--data-dir", str(tmp_path / "empty"), "--epochs",
            "1", "--out", str(tmp_path / "o"), *QUIET], capsys, "give --data-dir DIR")


# ----------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "mlp", "--data", "digits", "--lr", "1e308"], "--lr must be at most"),
    (["train", "--model", "mlp", "--data", "digits", "--epochs", "1e308"], "--epochs must be at most"),
    (["train", "--model", "mlp", "--data", "digits", "--epochs", "1e18"], "--epochs must be at most"),
    (["train", "--model", "mlp", "--data", "digits", "--seed", "1e30"], "--seed must be at most"),
    (["report", "{c}", "--repeats", "1e9"], "--repeats must be at most 10000"),
    (["autoprune", "--checkpoint", "{c}", "--data", "digits", "--flops-reduction", "0.3", "--beta", "1e308"],
     "--beta must be at most"),
    (["sparsify", "--checkpoint", "{c}", "--data", "digits", "--sparsity", "0.99999", "--epochs", "1"],
     "largest reachable value is"),
    (["train", "--model", "mlp", "--data", "digits", "--data-dir", "{empty}"], "--data-dir"),
    (["train", "--model", "mlp", "--data", "digits", "--val-size", "5000"], "--data digits: --val-size 5000: must"),
    (["train", "--model", "mlp", "--data", "digits", "--train-subset", "5000"],
     "--data digits: --train-subset 5000: must"),
])
def test_numbers_that_overflow_or_never_finish(argv, needle, tmp_path, capsys):
    ckpt = _good(tmp_path / "c")
    (tmp_path / "empty").mkdir()
    argv = [a.format(c=ckpt, empty=tmp_path / "empty") for a in argv]
    if argv[0] != "report":
        argv += ["--out", str(tmp_path / "o"), *QUIET]
    _fails(argv, capsys, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [
    ["report", "--no-latency", "{c}", "--out", ""],
    ["export", "--checkpoint", "{c}", "--format", "torchscript", "--out", " "],
    ["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", ""],
    ["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", "{o}", "--save-state", ""],
    ["finetune", "--checkpoint", "", "--data", "digits", "--epochs", "1", "--out", "{o}"],
    ["profile", "--checkpoint", "{c}", "--out", ""],
])
def test_an_empty_path_is_refused_not_read_as_the_current_directory(argv, tmp_path, capsys, monkeypatch):
    ckpt = _good(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    argv = [a.format(c=ckpt, o=tmp_path / "o") for a in argv]
    _fails(argv + QUIET[1:] if argv[0] != "report" else argv, capsys, "empty path")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c"]


def test_a_batch_of_one_for_batchnorm_over_1x1_features_names_the_batch_size(tmp_path, capsys):
    # mobilenetv2 on 8x8 digits ends in 1x1 features: BatchNorm cannot train on one value per channel
    _fails(["train", "--model", "mobilenetv2", "--data", "digits", "--batch-size", "1", "--max-steps", "1",
            "--epochs", "1", "--out", str(tmp_path / "o"), *QUIET], capsys, "--batch-size 1: a BatchNorm layer")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "mlp", "--data", "digits", "--optimizer", "adam", "--momentum", "0.5"],
     "--momentum 0.5: applies to --optimizer sgd, not adam"),
    (["train", "--model", "mlp", "--data", "digits", "--optimizer", "adamw", "--no-nesterov"],
     "--no-nesterov: applies to --optimizer sgd"),
    (["finetune", "--checkpoint", "{c}", "--data", "digits", "--temperature", "2"],
     "--temperature 2.0: applies with --distill-from DIR"),
    (["autoprune", "--checkpoint", "{c}", "--data", "digits", "--flops-reduction", "0.3", "--distill-weight=0.9",
      "--finetune-epochs", "1"], "--distill-weight 0.9: applies with --distill"),
    (["autoprune", "--checkpoint", "{c}", "--data", "digits", "--flops-reduction", "0.3", "--finetune-lr", "0.1"],
     "--finetune-lr 0.1: applies to fine-tuning; give --finetune-epochs"),
    (["prune", "--checkpoint", "{c}", "--data", "digits", "--flops-reduction", "0.3", "--criterion", "l1",
      "--calib-batches", "3"], "--calib-batches 3: applies to --criterion taylor, not l1"),
    (["sparsify", "--checkpoint", "{c}", "--data", "digits", "--sparsity", "0.5", "--prune-at", "0.5"],
     "--prune-at 0.5: applies to --schedule oneshot, not cyclical"),
    (["sparsify", "--checkpoint", "{c}", "--data", "digits", "--sparsity", "0.5", "--schedule", "oneshot",
      "--ramp", "0.5"], "--ramp 0.5: applies to --schedule gmp or cyclical"),
    (["report", "{c}", "--no-latency", "--repeats", "5"], "--repeats 5: applies to the latency measurement"),
    (["info", "--checkpoint", "{c}", "--input-shape", "3,32,32"], "--input-shape"),
    (["info", "--checkpoint", "{c}", "--num-classes", "7"], "--num-classes 7: applies with --model"),
    (["info", "--model", "mlp", "--data", "digits", "--num-classes", "7"],
     "--num-classes 7: applies with --input-shape"),
])
def test_a_flag_that_would_do_nothing_is_refused_not_ignored(argv, needle, tmp_path, capsys):
    ckpt = _good(tmp_path / "c")
    argv = [a.format(c=ckpt) for a in argv]
    if argv[0] not in ("report", "info"):
        argv += ["--epochs", "1", "--out", str(tmp_path / "o"), *QUIET] if argv[0] in ("train", "finetune",
                                                                                       "sparsify") \
            else ["--out", str(tmp_path / "o"), *QUIET]
    _fails(argv, capsys, needle)
    assert not (tmp_path / "o").exists()


def test_the_same_flags_where_they_apply_are_accepted(tmp_path):
    ckpt = _good(tmp_path / "c")
    assert main(["info", "--model", "mlp", "--input-shape", "1,8,8", "--num-classes", "7"]) == 0
    assert main(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--max-steps", "1", "--momentum",
                 "0.5", "--no-nesterov", "--out", str(tmp_path / "t"), *QUIET]) == 0
    assert main(["prune", "--checkpoint", str(ckpt), "--data", "digits", "--flops-reduction", "0.3", "--criterion",
                 "taylor", "--calib-batches", "2", "--batch-size", "16", "--out", str(tmp_path / "p"), *QUIET]) == 0


def test_diverging_training_stops_without_a_checkpoint(tmp_path, capsys):
    err = _fails(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--lr", "1e4",
                  "--warmup-epochs", "0", "--out", str(tmp_path / "o"), *QUIET], capsys,
                 "--lr 10000:")
    assert "at step" in err and "diverged" in err
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_summary_json_is_strict_even_with_nan_metrics(tmp_path):
    spec = ModelSpec(name="mlp", kwargs=dict(KW), input_shape=[1, 8, 8], num_classes=10)
    save(tmp_path / "c", create_model("mlp", **KW), spec, {"accuracy": float("nan"), "x": [float("inf")]})
    text = (tmp_path / "c" / "summary.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"accuracy": None, "x": [None]}


def test_saving_non_finite_weights_is_refused(tmp_path):
    spec = ModelSpec(name="mlp", kwargs=dict(KW), input_shape=[1, 8, 8], num_classes=10)
    model = create_model("mlp", **KW)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError):
        save(tmp_path / "c", model, spec)
    assert list(tmp_path.iterdir()) == []
