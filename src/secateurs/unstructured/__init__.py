"""Unstructured (weight-level) magnitude pruning that follows a sparsity schedule — cyclical pruning.

Public surface:

* :class:`CyclicalSparsifier` — prepare → step → finalize lifecycle over any model and optimizer;
* :class:`SparsifierCallback` — the same inside :func:`secateurs.train.fit`;
* :func:`select_prunable`, :func:`magnitude_masks`, :func:`num_pruned` — the building blocks;
* :class:`Pattern`, :func:`nm_masks`, :func:`is_nm` — N:M semi-structured masks (``pattern=`` on the sparsifier);
* :func:`reestimate_batchnorm`;
* :class:`KeepZeros`, :func:`zero_masks` — keep a sparse model's zeros while it trains (``unstructured.keep_zeros``).

Schedules live in :mod:`secateurs.schedules`.
"""
from __future__ import annotations

from ._bn import reestimate_batchnorm
from ._masks import magnitude_mask, magnitude_masks, num_pruned
from ._nm import Pattern, is_nm, nm_keep, nm_masks
from ._select import DEFAULT_LAYER_TYPES, Target, select_prunable
from .sparsifier import SCOPES, VARIANTS, CyclicalSparsifier

__all__ = ["CyclicalSparsifier", "SparsifierCallback", "select_prunable", "Target", "DEFAULT_LAYER_TYPES",
           "magnitude_mask", "magnitude_masks", "num_pruned", "reestimate_batchnorm", "SCOPES", "VARIANTS",
           "Pattern", "nm_masks", "nm_keep", "is_nm", "KeepZeros", "zero_masks"]


def __getattr__(name: str):
    # The callback imports the trainer (and through it the data package); load it only when asked for.
    if name == "SparsifierCallback":
        from .callback import SparsifierCallback

        return SparsifierCallback
    if name in ("KeepZeros", "zero_masks"):
        from . import keep_zeros

        return getattr(keep_zeros, name)
    raise AttributeError(f"module 'secateurs.unstructured' has no attribute {name!r}")
