"""The dataset registry and the one code path that turns raw data into normalised, split tensors.

A dataset factory only loads data (``RawDataset``: unnormalised train/test tensors plus metadata). Validation
carving, ``train_subset`` and normalisation happen here, once, so every dataset gets the same semantics:

* the validation split is carved from the training data by a permutation seeded with ``seed``;
* ``train_subset=N`` keeps the first ``N`` of the rest of that same permutation, so subsets are nested
  (a smaller subset is contained in a larger one for the same seed) and never overlap validation;
* both splits keep the original file order (indices are sorted), which makes them easy to reason about;
* mean/std come from the dataset's published constants, or are computed per channel on the *whole* training
  part of the raw data (before carving validation), so they do not depend on ``seed``, ``val_size`` or
  ``train_subset`` and a checkpoint's normalisation is reproducible from the dataset name alone.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from secateurs._registry import Registry
from secateurs.errors import ArgumentError


@dataclass(eq=False)
class DataSplits:
    """Normalised in-memory splits (see docs/design.md, "Data contract"). Tensors are left out of the repr."""

    name: str
    train_x: Tensor = field(repr=False)
    train_y: Tensor = field(repr=False)
    val_x: Tensor = field(repr=False)
    val_y: Tensor = field(repr=False)
    test_x: Tensor = field(repr=False)
    test_y: Tensor = field(repr=False)
    num_classes: int
    input_shape: tuple[int, ...]
    augment: str | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(eq=False)
class RawDataset:
    """What a registered factory returns: unnormalised data in natural units (e.g. pixels in [0, 1]).

    ``default_val_size`` is a count (int) or a fraction of the training part (float in (0, 1)).
    ``mean``/``std`` ``None`` means "compute per channel on ``train_x``".
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    default_val_size: int | float = 0.1
    augment: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


DATASETS: Registry[RawDataset] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Callable[..., RawDataset]], Callable[..., RawDataset]]:
    """Register ``fn(*, data_dir, download, **options) -> RawDataset`` under ``name``.

    Factories receive ``data_dir`` (``Path | None``) and ``download`` (``bool | None``) as keywords, plus any extra
    keyword given to :func:`get_dataset`; a factory that does not accept an option makes ``get_dataset`` raise.
    """
    return DATASETS.register(name)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names (sorted), optionally filtered by a glob pattern."""
    return DATASETS.names(pattern)


def _check_int(arg: str, value: object, lo: int, hi: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ArgumentError(arg, repr(value), f"must be an integer in [{lo}, {hi}] ({why})")
    return value


def split_indices(
    n_train: int, val_size: int, train_subset: int | None = None, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Sorted (train, val) indices into the raw training part; see the module docstring for the rules."""
    val_size = _check_int("val_size", val_size, 0, n_train - 1, f"the training part has {n_train} examples")
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    rest = perm[val_size:]
    if train_subset is not None:
        why = f"{n_train} training examples minus {val_size} held out for validation"
        rest = rest[: _check_int("train_subset", train_subset, 1, len(rest), why)]
    return rest.sort().values, perm[:val_size].sort().values


def fixed_split(n: int, n_test: int, seed: int) -> tuple[Tensor, Tensor]:
    """Sorted (train, test) indices for datasets shipped without a test split; ``seed`` is a per-dataset constant
    so the test set never changes with the experiment seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``x`` (N, C, ...), accumulated in float64."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1, correction=0).clamp_min(1e-8).tolist())


def normalise(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """``(x - mean[c]) / std[c]`` as float32; always a new tensor, never a view of ``x``."""
    shape = (1, len(mean)) + (1,) * (x.dim() - 2)
    m = torch.tensor(mean, dtype=torch.float32).view(shape)
    s = torch.tensor(std, dtype=torch.float32).view(shape)
    return (x.float() - m) / s


def _validate_raw(name: str, raw: RawDataset) -> None:
    for split in ("train", "test"):
        x, y = getattr(raw, f"{split}_x"), getattr(raw, f"{split}_y")
        if x.dim() < 3 or len(x) != len(y) or y.dim() != 1:
            raise ValueError(f"dataset {name!r}: {split} x {tuple(x.shape)} / y {tuple(y.shape)} must be "
                             "(N, C, ...) and (N,)")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= raw.num_classes):
            raise ValueError(f"dataset {name!r}: {split} labels outside [0, {raw.num_classes})")
    if raw.train_x.shape[1:] != raw.test_x.shape[1:]:
        raise ValueError(f"dataset {name!r}: train/test shapes differ: {tuple(raw.train_x.shape[1:])} vs "
                         f"{tuple(raw.test_x.shape[1:])}")


def get_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    train_subset: int | None = None,
    val_size: int | None = None,
    seed: int = 0,
    download: bool | None = None,
    **kwargs: object,
) -> DataSplits:
    """Load dataset ``name`` into normalised float32 tensors with deterministic train/val/test splits.

    ``seed`` drives the validation carve-out and ``train_subset`` (never the test set).
    ``val_size=None`` uses the dataset's default (5000 for fashion-mnist and cifar10, 10% otherwise); ``0`` gives
    empty validation tensors of the right shape. ``train_subset=N`` keeps N of the remaining training examples. ``download``: ``True`` allows fetching missing files, ``False``
    forbids it, ``None`` allows it unless ``SECATEURS_OFFLINE`` is set. Extra keywords go to the factory.
    """
    factory = DATASETS.get(name)
    options = dict(data_dir=data_dir, download=download, **kwargs)
    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        accepted = [p for p in inspect.signature(factory).parameters if p not in ("data_dir", "download")]
        raise TypeError(f"dataset {name!r} got unexpected options {sorted(kwargs)}; it accepts {accepted}") from None
    raw = factory(**options)
    _validate_raw(name, raw)

    n = len(raw.train_x)
    if val_size is None:  # a default that does not fit (tiny local data) fails below, naming val_size
        d = raw.default_val_size
        val_size = d if isinstance(d, int) else int(round(d * n))
    train_idx, val_idx = split_indices(n, val_size, train_subset, seed)

    if raw.mean is None or raw.std is None:
        mean, std = channel_stats(raw.train_x)
    else:
        mean, std = raw.mean, raw.std

    def prep(x: Tensor, idx: Tensor | None = None) -> Tensor:
        return normalise(x if idx is None else x[idx], mean, std)

    return DataSplits(
        name=name,
        train_x=prep(raw.train_x, train_idx),
        train_y=raw.train_y[train_idx].long(),
        val_x=prep(raw.train_x, val_idx),
        val_y=raw.train_y[val_idx].long(),
        test_x=prep(raw.test_x),
        test_y=raw.test_y.long().clone(),
        num_classes=raw.num_classes,
        input_shape=tuple(raw.train_x.shape[1:]),
        augment=raw.augment,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )
