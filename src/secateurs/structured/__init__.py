"""Structured (channel) pruning on top of ``secateurs.graph``: plans as data and their application.

Phase 1 surface: ``PruningPlan``, ``diff``, ``apply_plan``, ``mask_model``, ``PruneReport``. Criteria (group -> one
score per channel) and policies (scores + MACs budget -> kept indices) and AutoBot come next and only need
``ChannelGraph``, ``ChannelGate`` and ``SoftMacsModel``.
"""
from .apply import PruneReport, apply_plan, check_plan, mask_model, predict_params
from .plan import PruningPlan, diff
from .autobot import AutoBotConfig, AutoBotResult, autoprune  # issue 5

__all__ = ["PruneReport", "PruningPlan", "apply_plan", "check_plan", "diff", "mask_model", "predict_params",
           "AutoBotConfig", "AutoBotResult", "autoprune"]
