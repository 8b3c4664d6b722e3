"""docs/summary.md explains every top-level field every command writes to summary.json."""
import json
import re
from pathlib import Path

import pytest

from secateurs.cli import main

DOCS = Path(__file__).parents[2] / "docs" / "summary.md"
COMMON = ["--data", "digits", "--quiet", "--threads", "1"]


COMMANDS = ["train", "sparsify", "autoprune", "prune", "finetune"]


def documented() -> dict[str, set[str]]:
    """{command: field names} from the one table of docs/summary.md (``| `field` | written by | meaning |``)."""
    table = DOCS.read_text().split("## Every field", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {c: set() for c in COMMANDS}
    for field, by in re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]+) \|", table, flags=re.M):
        commands = COMMANDS if by.strip() == "all" else [c.strip() for c in by.split(",")]
        unknown = set(commands) - set(COMMANDS)
        assert not unknown, f"docs/summary.md: `{field}` is written by unknown commands {sorted(unknown)}"
        for c in commands:
            out[c].add(field)
    return out


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


@pytest.mark.parametrize("command", COMMANDS)
def test_every_summary_field_is_documented(command, runs):
    summary = json.loads((runs / command / "summary.json").read_text())
    assert summary["command"] == command
    docs = documented()
    missing = set(summary) - docs[command]
    assert not missing, f"docs/summary.md does not give `{command}` the fields {sorted(missing)}"
    extra = docs[command] - {"sparsity"} - set(summary)  # finetune: sparsity only for sparse sources
    assert not extra, f"docs/summary.md gives `{command}` fields it does not write: {sorted(extra)}"


def test_one_name_per_concept():
    """The reference, request and result use one set of names in every command (docs/summary.md)."""
    old = {"source", "dense_accuracy", "dense_macs", "target_flops_reduction", "target_sparsity",
           "verify_max_abs_diff"}
    assert not set().union(*documented().values()) & old
