"""Structured (channel) pruning on top of ``secateurs.graph``.

The front door is ``prune(model, data, flops_reduction=R, method=...)`` (``workflow``). Its parts: criteria
(group -> one score per channel: ``channel_scores``), the target (``Target``: reduce a cost by R, within
``[R, R + tolerance]``), the selection strategies (scores + target -> kept channels: ``select_channels``,
``search_threshold``), plans as data (``PruningPlan``, ``diff``, ``compose_plans``), verified surgery
(``apply_plan``, ``mask_model``, ``PruneReport``), export (``export_torchscript``, ``export_onnx``) and AutoBot
(``autoprune``).
"""
from .apply import PruneReport, apply_plan, check_plan, mask_model, predict_params
from .plan import PruningPlan, compose_plans, diff
from .criteria import CRITERIA, channel_scores
from .target import Target, TargetError
from .select import Selection, SelectionError, max_reduction, search_threshold, select_channels
from .export import export_onnx, export_torchscript
from .autobot import AutoBotConfig, AutoBotResult, autoprune
from .workflow import METHODS, PruneResult, prune

__all__ = ["PruneReport", "PruningPlan", "apply_plan", "check_plan", "diff", "mask_model", "predict_params",
           "CRITERIA", "channel_scores", "Selection", "SelectionError", "Target", "TargetError", "compose_plans",
           "max_reduction", "search_threshold", "select_channels", "export_onnx", "export_torchscript",
           "AutoBotConfig", "AutoBotResult", "autoprune", "METHODS", "PruneResult", "prune"]
