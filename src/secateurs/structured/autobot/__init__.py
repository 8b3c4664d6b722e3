"""AutoBot (Castells & Yeom, AAAI 2023): automatic filter pruning to a MACs target with trained bottlenecks.

    from secateurs.structured.autobot import AutoBotConfig, autoprune, finetune_config
    result = autoprune(model, data, 0.5, config=AutoBotConfig(batches=200))   # prunes model in place
    fit(model, data, finetune_config(epochs=10))

Pieces: ``Bottlenecks`` (scores per coupled-channel group, gated at consumer inputs), ``autobot_loss`` /
``flops_loss`` / ``binarization_loss``, ``train_bottlenecks`` (frozen weights, eval mode, best-score rule),
``search_threshold`` (global θ to an exact MACs target, in ``structured.select``), ``plot_scores``. See docs/autobot.md.
"""
from .api import AutoBotConfig, AutoBotResult, autoprune, finetune_config
from .bottleneck import Bottlenecks
from .loss import autobot_loss, binarization_loss, flops_loss
from .plot import plot_scores
from ..select import Selection, search_threshold
from .training import (BottleneckRun, best_window_start, frozen, pressure_weights, train_bottlenecks,
                       training_batches)

__all__ = [
    "AutoBotConfig", "AutoBotResult", "BottleneckRun", "Bottlenecks", "Selection", "autobot_loss", "autoprune",
    "best_window_start", "binarization_loss", "finetune_config", "flops_loss", "frozen", "plot_scores",
    "pressure_weights",
    "search_threshold", "train_bottlenecks", "training_batches",
]
