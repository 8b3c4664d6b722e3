"""Loading a checkpoint never runs code the checkpoint chooses unless the caller opts in (trust_model_code)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from secateurs.cli import main
from secateurs.errors import CheckpointError, UntrustedCodeError
from secateurs.io import ModelSpec, load, load_checkpoint, save
from secateurs.models import create_model, import_path_without, untrusted_reason

SRC = Path(__file__).resolve().parents[2] / "src"
KW = {"num_classes": 10, "in_channels": 1, "input_size": 8}


def _checkpoint(path: Path, **spec_changes) -> Path:
    """A real mlp checkpoint for 1x8x8 inputs, then model.json fields replaced by ``spec_changes``."""
    spec = ModelSpec(name="mlp", kwargs=dict(KW), input_shape=[1, 8, 8], num_classes=10, dataset="digits")
    save(path, create_model("mlp", **KW), spec, {"accuracy": 0.5})
    if spec_changes:
        d = json.loads((path / "model.json").read_text())
        d.update(spec_changes)
        (path / "model.json").write_text(json.dumps(d))
    return path


def _hubconf(tmp_path: Path, marker: Path) -> Path:
    repo = tmp_path / "hubrepo"
    repo.mkdir()
    (repo / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                     "def net(**kw):\n    raise SystemExit('should never be called')\n")
    return repo


def test_torch_hub_factory_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "PWNED"
    repo = _hubconf(tmp_path, marker)
    ckpt = _checkpoint(tmp_path / "c", name="torch.hub:load",
                       kwargs={"repo_or_dir": str(repo), "model": "net", "source": "local"})
    with pytest.raises(UntrustedCodeError) as info:
        load(ckpt)
    assert info.value.factory == "torch.hub:load" and info.value.field == "name"
    assert info.value.path == ckpt / "model.json" and "--trust-model-code" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("command", [
    ["info", "--checkpoint", "{c}"], ["explain", "--checkpoint", "{c}"], ["report", "{c}", "--no-latency"],
    ["export", "--checkpoint", "{c}", "--format", "torchscript", "--out", "{o}/m.pt"],
    ["prune", "--checkpoint", "{c}", "--data", "digits", "--criterion", "l1", "--flops-reduction", "0.3",
     "--out", "{o}/p"],
    ["finetune", "--checkpoint", "{c}", "--data", "digits", "--epochs", "1", "--out", "{o}/f"],
    ["sparsify", "--checkpoint", "{c}", "--data", "digits", "--sparsity", "0.5", "--epochs", "1",
     "--out", "{o}/s"],
    ["autoprune", "--checkpoint", "{c}", "--data", "digits", "--flops-reduction", "0.3", "--out", "{o}/a"],
    ["profile", "--checkpoint", "{c}", "--out", "{o}/lat.json"],
])
def test_every_checkpoint_command_refuses_untrusted_factories(command, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    repo = _hubconf(tmp_path, marker)
    ckpt = _checkpoint(tmp_path / "c", name="torch.hub:load",
                       kwargs={"repo_or_dir": str(repo), "model": "net", "source": "local"})
    argv = [a.format(c=ckpt, o=tmp_path) for a in command]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'torch.hub:load'" in err and "--trust-model-code" in err
    outputs = ("m.pt", "p", "f", "s", "a", "lat.json")
    assert not marker.exists() and not any(p.name in outputs for p in tmp_path.iterdir())


def test_logging_factory_cannot_truncate_a_file(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    ckpt = _checkpoint(tmp_path / "c", name="logging:basicConfig", kwargs={"filename": str(victim),
                                                                          "filemode": "w"})
    with pytest.raises(UntrustedCodeError):
        load_checkpoint(ckpt)
    assert victim.read_text() == "keep me"


def test_derived_checkpoint_keeps_the_name_and_stays_untrusted(tmp_path):
    spec = ModelSpec(name="fixtures.user_models:tiny", kwargs={"num_classes": 3, "in_channels": 1},
                     input_shape=[1, 8, 8], num_classes=3)
    model = spec.build(trust_model_code=True)
    save(tmp_path / "u", model, spec)
    with pytest.raises(UntrustedCodeError):
        load(tmp_path / "u")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model.eval()(x), load(tmp_path / "u", trust_model_code=True)(x))  # the opt-in works


@pytest.mark.parametrize("name,kwargs,safe", [
    ("mlp", {}, True), ("resnet20", {"num_classes": 10}, True),
    ("torchvision:resnet18", {}, True), ("timm:resnet18", {}, True),
    ("timm:hf-hub:someone/evil", {}, False), ("timm:hf_hub:someone/evil", {}, False),
    ("timm:local-dir:/tmp/x", {}, False), ("timm:resnet50.a1_in1k", {}, False),
    ("torchvision:resnet18", {"weights": "DEFAULT"}, False), ("timm:resnet18", {"pretrained": True}, False),
    ("timm:resnet18", {"checkpoint_path": "/tmp/w.pth"}, False),
    ("os:system", {}, False), ("fixtures.user_models:tiny", {}, False), ("builtins:eval", {}, False),
])
def test_allow_list(name, kwargs, safe):
    mods = set(sys.modules)
    assert (untrusted_reason(name, kwargs) is None) == safe
    assert not {"torchvision", "timm"} & (set(sys.modules) - mods)  # deciding imports nothing


def test_unknown_zoo_name_is_a_checkpoint_error(tmp_path):
    ckpt = _checkpoint(tmp_path / "c", name="no_such_net")
    with pytest.raises(CheckpointError) as info:
        load(ckpt)
    assert info.value.field == "name" and "no_such_net" in str(info.value)


def test_import_path_without_drops_cwd_and_given_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", str(tmp_path), "/elsewhere", str(tmp_path / "ck")])
    with import_path_without((tmp_path / "ck",)):
        assert sys.path == ["/elsewhere"]
    assert sys.path == ["", str(tmp_path), "/elsewhere", str(tmp_path / "ck")]


def _poisoned_package(cwd: Path, name: str, marker: Path) -> None:
    """A directory in the cwd named like a package secateurs imports lazily while building a pruned model."""
    pkg = cwd / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nraise ImportError('fake')\n")


@pytest.mark.parametrize("package", ["torch_pruning", "tqdm"])  # tqdm: imported by torch itself
def test_cwd_package_cannot_stand_in_for_a_lazy_import(package, tmp_path):
    """``python -m secateurs.cli`` from a directory holding ``torch_pruning/`` (imported lazily to replay a
    plan): the trusted zoo load must import the real package. With --trust-model-code the cwd stays on the path
    (the user vouches for it), which proves the set-up would catch a regression."""
    marker = tmp_path / "PWNED"
    ckpt = _checkpoint(tmp_path / "c", plan={"version": 1, "groups": {"fc1:out": [0, 1]},
                                             "widths": {"fc1:out": 300}})
    _poisoned_package(tmp_path, package, marker)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "secateurs.cli", "info", "--checkpoint", ckpt.name]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    assert not marker.exists()
    subprocess.run(cmd + ["--trust-model-code"], cwd=tmp_path, env=env, capture_output=True, text=True,
                   timeout=120)
    assert marker.exists()


def test_module_shipped_inside_the_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    ckpt = _checkpoint(tmp_path / "c", name="c.evil:make")
    (ckpt / "__init__.py").write_text("")
    (ckpt / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef make(**kw):\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "secateurs.cli", "info", "--checkpoint", "c"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--trust-model-code" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()
