"""The README's python code blocks run exactly as a user would paste them, in order, each in a fresh namespace."""
import re
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _fashion_mnist_available() -> bool:
    from secateurs.data import get_dataset

    try:
        get_dataset("fashion-mnist", train_subset=10, download=False)
    except Exception:  # noqa: BLE001  (missing files raise several types)
        return False
    return True


def test_readme_has_the_library_snippets():
    blocks = python_blocks()
    assert len(blocks) >= 3
    assert any("CyclicalSparsifier" in b for b in blocks) and any("autoprune(" in b for b in blocks)


def test_readme_python_blocks_run_as_pasted(tmp_path, monkeypatch, capsys):
    if not _fashion_mnist_available():
        pytest.skip("Fashion-MNIST is not installed (make data, or set SECATEURS_DATA)")
    monkeypatch.chdir(tmp_path)  # the snippets write runs/... relative to the working directory
    for i, code in enumerate(python_blocks()):
        namespace = {"__name__": f"readme_block_{i}"}  # fresh: a block may not rely on an earlier one's names
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    accuracies = [float(a) for a in re.findall(r"test accuracy (\d+\.\d+)%", out)]
    assert accuracies and all(a > 70 for a in accuracies), out  # meaningful results, not chance (10%)
    assert "sparsity 0.9000" in out and "AutoBot:" in out and "accuracy (%)" in out
