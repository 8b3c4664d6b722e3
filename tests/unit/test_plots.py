"""The plots a run writes are readable at a glance: label sizes, axis labels, threshold or a note, legend placement."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from secateurs.schedules import Cyclical  # noqa: E402
from secateurs.structured.autobot.plot import scores_figure  # noqa: E402

GROUPS = {f"layer{i}.conv1:out": 16 * (1 + i // 4) for i in range(12)}
SCORES = {g: torch.linspace(0, 1, w) for g, w in GROUPS.items()}
KEPT = {g: list(range(w // 2)) for g, w in GROUPS.items()}


def test_autobot_figure_labels_are_readable_and_the_threshold_is_drawn():
    fig = scores_figure(SCORES, KEPT, GROUPS, threshold=0.5, title="t", method="threshold")
    try:
        hist, bars = fig.axes
        labels = bars.get_yticklabels()
        assert [t.get_text() for t in labels] == [g.removesuffix(":out") for g in GROUPS]
        assert all(t.get_fontsize() >= 9 and t.get_rotation() == 0 for t in labels)
        assert bars.get_xlabel() and hist.get_xlabel()
        assert any(abs(line.get_xdata()[0] - 0.5) < 1e-12 for line in hist.get_lines())  # the θ line
    finally:
        plt.close(fig)


def test_autobot_figure_without_threshold_says_why():
    fig = scores_figure(SCORES, KEPT, GROUPS, threshold=None, method="greedy")
    try:
        hist = fig.axes[0]
        assert not hist.get_lines()
        assert any("greedy" in t.get_text() and "score order" in t.get_text() for t in hist.texts)
    finally:
        plt.close(fig)


def test_sparsity_legend_sits_outside_the_curves(tmp_path, monkeypatch):
    closed = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (closed.append(fig), real_close(fig)))
    schedule = Cyclical(0.9, 300, cycles=3)
    schedule.plot(tmp_path / "s.png", realised=[(0, 0.0), (300, 0.9)], update_every=50, title="x")
    fig = closed[0]
    ax = fig.axes[0]
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.y1 <= ax.get_window_extent().y0  # entirely below the axes: no cycle is covered
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
