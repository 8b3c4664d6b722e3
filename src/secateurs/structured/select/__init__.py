"""Policy: channel scores + a ``Target`` -> the channels every prunable group keeps.

Strategies, all landing in the target's one window ``[R, R + tolerance]`` (``structured.target``) or raising
``TargetError``, all pricing selections with a ``CostModel`` and all returning a ``Selection``:

* ``select_channels(graph, scores, target, scope="global" | "local")`` (``ranking``): the baseline criteria's
  policy -- one ranking of all channels by group-normalised score, or the same pruned fraction in every group;
* ``search_threshold(scores, cost, target)`` (``threshold``): AutoBot's policy -- one global threshold θ on the
  trained scores, bisected until the exact cost lands in the window, with one-channel-resolution fallbacks.
"""
from .result import Selection
from .ranking import SCOPES, max_reduction, select_channels
from .threshold import kept_at, search_threshold
from ..target import Target, TargetError

SelectionError = TargetError  # the ranking strategy's former error name

__all__ = ["SCOPES", "Selection", "SelectionError", "Target", "TargetError", "kept_at", "max_reduction",
           "search_threshold", "select_channels"]
