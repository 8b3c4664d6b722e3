"""docs/summary.md explains every top-level field every command writes to summary.json."""
import json
import re
from pathlib import Path

import pytest

from secateurs.cli import main

DOCS = Path(__file__).parents[2] / "docs" / "summary.md"
COMMON = ["--data", "digits", "--quiet", "--threads", "1"]


def documented() -> dict[str, set[str]]:
    """{section: field names} from the first column of each section's table and its 'plus `a, b`' sentence."""
    sections: dict[str, set[str]] = {}
    for block in re.split(r"^## ", DOCS.read_text(), flags=re.M)[1:]:
        title, body = block.split("\n", 1)
        names: set[str] = set()
        for row in re.findall(r"^\| ([^|]+) \|", body, flags=re.M):
            names |= set(re.findall(r"`([a-z0-9_]+)`", row))
        for plus in re.findall(r"plus (?:the common )?`([^`]+)`", body):
            names |= {n.strip() for n in plus.split(",")}
        sections[title.strip().strip("`")] = names
    return sections


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    d = lambda name: str(root / name)  # noqa: E731
    assert main(["train", "--model", "mlp", "--epochs", "1", *COMMON, "--out", d("train")]) == 0
    assert main(["sparsify", "--checkpoint", d("train"), "--sparsity", "0.5", "--epochs", "1", "--bn-batches", "0",
                 *COMMON, "--out", d("sparsify")]) == 0
    assert main(["autoprune", "--checkpoint", d("train"), "--flops-reduction", "0.5", "--batches", "5",
                 "--batch-size", "32", "--finetune-epochs", "1", *COMMON, "--out", d("autoprune")]) == 0
    assert main(["prune", "--checkpoint", d("train"), "--criterion", "l1", "--flops-reduction", "0.5", *COMMON,
                 "--out", d("prune")]) == 0
    assert main(["finetune", "--checkpoint", d("prune"), "--epochs", "1", *COMMON, "--out", d("finetune")]) == 0
    return root


@pytest.mark.parametrize("command", ["train", "sparsify", "autoprune", "prune", "finetune"])
def test_every_summary_field_is_documented(command, runs):
    summary = json.loads((runs / command / "summary.json").read_text())
    assert summary["command"] == command
    docs = documented()
    missing = set(summary) - docs[command]
    assert not missing, f"docs/summary.md, section `{command}`, does not explain {sorted(missing)}"
    common = docs["Fields common to several commands"]
    extra = docs[command] - common - {"sparsity"} - set(summary)  # finetune: sparsity only for sparse sources
    assert not extra, f"docs/summary.md, section `{command}`, lists fields it does not write: {sorted(extra)}"
