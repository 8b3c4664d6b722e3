"""Structured (channel) pruning on top of ``secateurs.graph``: plans as data and their application.

Phase 1 surface: ``PruningPlan``, ``diff``, ``apply_plan``, ``mask_model``, ``PruneReport``. Criteria (group -> one
score per channel: ``channel_scores``), the policy (scores + MACs target -> kept indices: ``select_channels``),
export (``export_torchscript``, ``export_onnx``) and AutoBot only need ``ChannelGraph``, ``ChannelGate`` and
``SoftMacsModel``.
"""
from .apply import PruneReport, apply_plan, check_plan, mask_model, predict_params
from .plan import PruningPlan, diff
from .criteria import CRITERIA, channel_scores  # issue 4: criteria, policy, export
from .select import Selection, SelectionError, compose_plans, max_reduction, select_channels
from .export import export_onnx, export_torchscript
from .autobot import AutoBotConfig, AutoBotResult, autoprune  # issue 5

__all__ = ["PruneReport", "PruningPlan", "apply_plan", "check_plan", "diff", "mask_model", "predict_params",
           "CRITERIA", "channel_scores", "Selection", "SelectionError", "compose_plans", "max_reduction",
           "select_channels", "export_onnx", "export_torchscript",
           "AutoBotConfig", "AutoBotResult", "autoprune"]
