"""Results print as small readable tables that carry the accuracy (not a 900-character dict)."""
from secateurs.data import get_dataset
from secateurs.models import create_model
from secateurs.structured.autobot import AutoBotConfig, autoprune
from secateurs.train import TrainConfig, fit


def test_fit_result_prints_accuracy_and_one_row_per_epoch():
    data = get_dataset("digits")
    model = create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    result = fit(model, data, TrainConfig(epochs=2, batch_size=64, augment=False), progress=False)
    lines = str(result).splitlines()
    assert lines[0].startswith(f"test accuracy {100 * result.accuracy:.2f}%") and "after 2 epochs" in lines[0]
    assert "val acc (%)" in lines[1] and len(lines) == 2 + 2
    assert lines[3].split()[0] == "2" and f"{100 * result.history[1]['val_accuracy']:.2f}" in lines[3]


def test_autoprune_result_prints_source_and_pruned_accuracy():
    data = get_dataset("digits")
    model = create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    fit(model, data, TrainConfig(epochs=1, batch_size=64, augment=False), progress=False)
    result = autoprune(model, data, 0.5, config=AutoBotConfig(batches=5, batch_size=32), progress=False)
    text = str(result)
    assert 0 <= result.accuracy_source <= 1 and 0 <= result.accuracy <= 1
    row = next(line for line in text.splitlines() if line.startswith("accuracy (%)"))
    assert row.split()[2:] == [f"{100 * result.accuracy_source:.2f}", f"{100 * result.accuracy:.2f}"]
    assert "MACs (M)" in text and f"{result.report.macs_reduction:.2%} fewer MACs" in text
    assert "(target 50.00% less MACs)" in text and all("soft_cost" in h for h in result.history)
    assert ("θ =" in text) == (result.selection.threshold is not None)
    assert "fewer" in str(result.report) and "max |masked - pruned|" in str(result.report)
    assert len(text) < 900 and max(map(len, text.splitlines())) < 200
