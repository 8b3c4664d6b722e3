"""Datasets behind a registry, as normalised in-memory tensors with deterministic splits.

>>> data = get_dataset("mnist1d", seed=0)                      # doctest: +SKIP
>>> loader = BatchLoader(data.train_x, data.train_y, 128, shuffle=True, augment=data.augment, seed=0)

Built-in datasets: ``fashion-mnist``, ``cifar10`` (files found locally or downloaded), and ``mnist5k``,
``mnist1d``, ``digits`` (bundled with installed packages; always offline). Importing this package only registers
factories; no data is read until :func:`get_dataset` is called.
"""
from __future__ import annotations

from . import cifar10 as _cifar10  # noqa: F401  (registers "cifar10")
from . import fashion_mnist as _fashion_mnist  # noqa: F401  (registers "fashion-mnist")
from . import small as _small  # noqa: F401  (registers "mnist5k", "mnist1d", "digits")
from ._core import DataSplits, RawDataset, get_dataset, list_datasets, register_dataset, split_indices
from .augment import AUGMENTATIONS
from .idx import read_idx
from .loader import BatchLoader, seeded_batches

__all__ = [
    "AUGMENTATIONS",
    "BatchLoader",
    "DataSplits",
    "RawDataset",
    "get_dataset",
    "list_datasets",
    "read_idx",
    "register_dataset",
    "seeded_batches",
    "split_indices",
]
