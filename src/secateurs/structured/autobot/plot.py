"""One PNG: the histogram of the best scores (with the threshold) and the kept width of every group."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch


def plot_scores(path: str | os.PathLike, scores: Mapping[str, torch.Tensor], kept: Mapping[str, Sequence[int]],
                widths: Mapping[str, int], threshold: float | None = None, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    values = torch.cat([s.detach().double().flatten().cpu() for s in scores.values()]).numpy() if scores else []
    groups = list(widths)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    ax1.hist(values, bins=50, range=(0, 1), color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_xlabel("score λ (best step)")
    ax1.set_ylabel("channels")
    if threshold is not None:
        ax1.axvline(threshold, color="tab:red", linestyle="--", label=f"θ = {threshold:.3g}")
        ax1.legend()
    x = range(len(groups))
    ax2.bar(x, [widths[g] for g in groups], color="lightgray", label="dense")
    ax2.bar(x, [len(kept.get(g, range(widths[g]))) for g in groups], color="tab:green", label="kept")
    ax2.set_xticks(list(x))
    ax2.set_xticklabels([g.removesuffix(":out") for g in groups], rotation=90, fontsize=6)
    ax2.set_ylabel("channels")
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
