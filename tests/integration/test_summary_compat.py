"""Checkpoints whose summary.json uses the names older versions wrote still load, report and fine-tune, and are
read under the one schema's names (docs/summary.md)."""
import json

import pytest

from secateurs.cli import main
from secateurs.io import load_checkpoint

COMMON = ["--data", "digits", "--quiet", "--threads", "1"]
OLD = {"source": "/somewhere/dense", "dense_accuracy": 0.91, "dense_macs": 5000, "target_sparsity": 0.5,
       "target_flops_reduction": 0.4, "verify_max_abs_diff": 1e-7}


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    root = tmp_path_factory.mktemp("old")
    assert main(["train", "--model", "mlp", "--epochs", "1", *COMMON, "--out", str(root / "ckpt")]) == 0
    path = root / "ckpt" / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, **OLD}))
    return root / "ckpt"


def test_load_reads_old_names_under_new_ones(old):
    s = load_checkpoint(old).summary
    assert s["checkpoint"] == OLD["source"] and s["accuracy_dense"] == OLD["dense_accuracy"]
    assert s["macs_dense"] == OLD["dense_macs"] and s["requested_sparsity"] == OLD["target_sparsity"]
    assert s["requested_flops_reduction"] == 0.4 and s["max_abs_diff"] == 1e-7
    assert not set(OLD) & set(s)


def test_report_and_finetune_read_old_checkpoints(old, tmp_path, capsys):
    accuracy = json.loads((old / "summary.json").read_text())["accuracy"]
    capsys.readouterr()
    assert main(["report", str(old), "--no-latency", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[0]["accuracy"] == accuracy
    out = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(old), "--epochs", "1", *COMMON, "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["accuracy_dense"] == OLD["dense_accuracy"] and s["macs_dense"] == OLD["dense_macs"]  # copied, renamed
    assert s["accuracy_before"] == pytest.approx(accuracy)
