"""One PNG: the histogram of the best scores (with the threshold) and the kept width of every group."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch


def plot_scores(path: str | os.PathLike, scores: Mapping[str, torch.Tensor], kept: Mapping[str, Sequence[int]],
                widths: Mapping[str, int], threshold: float | None = None, title: str = "",
                method: str | None = None) -> None:
    """Left: histogram of the best scores with the threshold θ (or, when the selection took channels in score
    order because no single θ hit the target — ``method`` 'ranked' / 'greedy' — a note saying so). Right: one
    horizontal bar per group, dense width in grey and kept width in green, labelled at a readable size."""
    import matplotlib.pyplot as plt

    fig = scores_figure(scores, kept, widths, threshold, title, method)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scores_figure(scores: Mapping[str, torch.Tensor], kept: Mapping[str, Sequence[int]], widths: Mapping[str, int],
                  threshold: float | None = None, title: str = "", method: str | None = None):
    """The matplotlib figure :func:`plot_scores` saves (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    values = torch.cat([s.detach().double().flatten().cpu() for s in scores.values()]).numpy() if scores else []
    groups = list(widths)
    height = max(4.5, 0.3 * len(groups) + 1.6)  # ~0.3 inch per bar keeps 9 pt labels apart
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [1, 1.6]})
    ax1.hist(values, bins=50, range=(0, 1), color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_xlabel("score λ (best step)", fontsize=10)
    ax1.set_ylabel("channels", fontsize=10)
    ax1.set_title("channel scores", fontsize=11)
    if threshold is not None:
        ax1.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold θ = {threshold:.3g}")
        ax1.legend(fontsize=9, loc="upper center")
    else:
        how = method or "ranked"
        ax1.text(0.5, 0.97, f"no threshold line: selection was '{how}'\n(no single θ hit the MACs target;\n"
                 "channels were kept in score order)", transform=ax1.transAxes, ha="center", va="top",
                 fontsize=9, bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.6"})
    y = list(range(len(groups)))
    dense = [widths[g] for g in groups]
    kept_w = [len(kept.get(g, range(widths[g]))) for g in groups]
    ax2.barh(y, dense, color="lightgray")
    ax2.barh(y, kept_w, color="tab:green")
    for yi, k, w in zip(y, kept_w, dense):
        ax2.text(w, yi, f" {k}/{w}", va="center", fontsize=9)
    ax2.set_yticks(y)
    ax2.set_yticklabels([g.removesuffix(":out") for g in groups], fontsize=9)
    ax2.invert_yaxis()  # first group on top, in model order
    ax2.set_xlabel("channels per group: green = kept, grey = dense width (labels: kept/dense)", fontsize=10)
    ax2.set_xlim(0, max(dense, default=1) * 1.15)
    ax2.set_title("kept width per channel group", fontsize=11)
    ax2.tick_params(axis="x", labelsize=9)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig
