import json

import pytest
import torch

from secateurs.io import CheckpointExistsError, ModelSpec, load, load_checkpoint, save, write_json_atomic
from secateurs.models import create_model


def _spec(name="lenet5", **kw):
    kwargs = {"num_classes": 10, "in_channels": 1, "input_size": 28, **kw}
    return ModelSpec(name=name, kwargs=kwargs, input_shape=[1, 28, 28], num_classes=10, dataset="fashion-mnist")


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mobilenetv2"])
def test_round_trip_identical_outputs(tmp_path, name):
    spec = _spec(name)
    model = create_model(name, **spec.kwargs).eval()
    with torch.no_grad():  # non-trivial BN statistics so a missed buffer would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    save(tmp_path / "ckpt", model, spec, {"accuracy": 0.5})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["model.json", "model.safetensors",
                                                                     "summary.json"]
    x = torch.randn(3, 1, 28, 28)
    loaded = load(tmp_path / "ckpt")
    assert not loaded.training
    assert torch.equal(model(x), loaded(x))
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.summary == {"accuracy": 0.5} and ckpt.spec == spec


def test_no_pickle_in_checkpoint(tmp_path):
    spec = _spec()
    save(tmp_path / "c", create_model("lenet5", **spec.kwargs), spec)
    blob = (tmp_path / "c" / "model.safetensors").read_bytes()
    assert b"\x80\x04" not in blob[:16]  # not a pickle stream
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    assert "features.0.weight" in header or any(k.endswith("weight") for k in header)


def test_existing_directory_is_never_overwritten_without_consent(tmp_path):
    spec = _spec()
    model = create_model("lenet5", **spec.kwargs)
    out = tmp_path / "c"
    save(out, model, spec, {"v": 1})
    with pytest.raises(CheckpointExistsError, match="already exists"):
        save(out, model, spec, {"v": 2})
    assert json.loads((out / "summary.json").read_text()) == {"v": 1}
    save(out, model, spec, {"v": 3}, overwrite=True)
    assert json.loads((out / "summary.json").read_text()) == {"v": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary leftovers


def test_failed_write_keeps_old_checkpoint(tmp_path):
    spec = _spec()
    model = create_model("lenet5", **spec.kwargs)
    out = tmp_path / "c"
    save(out, model, spec, {"v": 1})

    def boom(_tmp):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save(out, model, spec, {"v": 2}, overwrite=True, extra=boom)
    assert json.loads((out / "summary.json").read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_user_factory_is_rebuilt(tmp_path):
    spec = ModelSpec(name="fixtures.user_models:tiny", kwargs={"num_classes": 3, "in_channels": 1},
                     input_shape=[1, 28, 28], num_classes=3)
    model = spec.build(trust_model_code=True)
    save(tmp_path / "u", model, spec)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model.eval()(x), load(tmp_path / "u", trust_model_code=True)(x))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.json"):
        load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    write_json_atomic(bad / "model.json", {"format": "other"})
    (bad / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a secateurs"):
        load(bad)


def test_mismatched_weights_are_refused(tmp_path):
    spec = _spec()
    save(tmp_path / "c", create_model("lenet5", **spec.kwargs), spec)
    doc = json.loads((tmp_path / "c" / "model.json").read_text())
    doc["name"] = "mlp"
    write_json_atomic(tmp_path / "c" / "model.json", doc)
    with pytest.raises(ValueError, match="does not match"):
        load(tmp_path / "c")
