"""`export --format sparse`, `sparsify --save-format sparse` and `sparsify --pattern` end to end (digits, tiny)."""
from __future__ import annotations

import json

import pytest
import torch

import secateurs
from secateurs.cli import main
from secateurs.sparse.format import INDEX_FILE

torch.set_num_threads(1)

COMMON = ["--data", "digits", "--batch-size", "64", "--no-augment", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def sparse_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "sparse"
    assert main(["sparsify", "--model", "mlp", "--sparsity", "0.95", "--schedule", "oneshot", "--epochs", "1",
                 *COMMON, "--out", str(out)]) == 0
    return out


def test_export_sparse_then_load_identical(tmp_path, sparse_ckpt, capsys):
    out = tmp_path / "compressed"
    assert main(["export", "--checkpoint", str(sparse_ckpt), "--format", "sparse", "--out", str(out)]) == 0
    assert "sparse" in capsys.readouterr().out
    assert (out / INDEX_FILE).is_file() and not (out / "model.safetensors").exists()
    a, b = secateurs.load(sparse_ckpt), secateurs.load(out)
    for (k, x), (k2, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(x, y)
    assert json.loads((out / "summary.json").read_text()) == json.loads((sparse_ckpt / "summary.json").read_text())
    size = sum(p.stat().st_size for p in out.iterdir() if p.name != "summary.json")
    assert size < 0.12 * (sparse_ckpt / "model.safetensors").stat().st_size
    # the compressed checkpoint is a checkpoint: report / info read it
    assert main(["report", str(out), "--no-latency", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[0]["file_bytes"] == size - (out / "model.json").stat().st_size


def test_export_refuses_existing_out_and_self(tmp_path, sparse_ckpt, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--checkpoint", str(sparse_ckpt), "--format", "sparse", "--out", str(sparse_ckpt),
              "--overwrite"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err
    assert (sparse_ckpt / "model.safetensors").is_file()  # never damaged


def test_sparsify_writes_sparse_form_directly(tmp_path):
    out = tmp_path / "s"
    assert main(["sparsify", "--model", "mlp", "--sparsity", "0.9", "--schedule", "oneshot", "--epochs", "1",
                 "--save-format", "sparse", *COMMON, "--out", str(out)]) == 0
    assert (out / INDEX_FILE).is_file() and (out / "history.json").is_file()
    model = secateurs.load(out)
    w = model.features[0].weight
    assert abs(float((w == 0).float().mean()) - 0.9) < 1e-3


def test_sparsify_pattern_2_4(tmp_path):
    from secateurs.unstructured import Pattern, is_nm

    out = tmp_path / "nm"
    assert main(["sparsify", "--model", "mlp", "--sparsity", "0.5", "--pattern", "2:4", "--schedule", "gmp",
                 "--epochs", "1", "--update-every", "5", *COMMON, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"] == 0.5 and summary["schedule"]["pattern"] == "2:4"
    model = secateurs.load(out)
    for name in summary["schedule"]["tensors"]:
        assert is_nm(model.get_parameter(name), Pattern(2, 4)), name


@pytest.mark.parametrize("extra,flag", [(["--sparsity", "0.7", "--pattern", "2:4"], "--sparsity"),
                                        (["--sparsity", "0.5", "--pattern", "2-4"], "--pattern"),
                                        (["--sparsity", "0.5", "--pattern", "2:4", "--scope", "global"], "--scope"),
                                        (["--sparsity", "0.5", "--pattern", "2:4", "--restart-sparsity", "0.6",
                                          "--schedule", "cyclical"], "--pattern")])
def test_sparsify_pattern_refusals(tmp_path, capsys, extra, flag):
    with pytest.raises(SystemExit) as e:
        main(["sparsify", "--model", "mlp", *extra, "--epochs", "1", *COMMON, "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err, err
    assert not (tmp_path / "x").exists()
