"""CIFAR-10 (Krizhevsky 2009): 50k/10k RGB 32x32 images, 10 classes, from the "python version" batches.

The python version is a directory ``cifar-10-batches-py`` with ``data_batch_1..5`` and ``test_batch``, each a
pickled dict ``{b"data": uint8 array (N, 3072), b"labels": [int], ...}`` written by Python 2 -- hence
``encoding="bytes"``. Pickle can run code, so this module only ever reads files the user put on disk (or the
checksummed archive it downloaded itself), and it unpickles with an allow-list that rebuilds numpy arrays and
nothing else: a tampered file fails with ``UnpicklingError`` instead of executing.
"""
from __future__ import annotations

import codecs
import functools
import os
import pickle
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _files
from ._core import RawDataset, register_dataset

NAME = "cifar10"
FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


@functools.cache
def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2 moved the internals to numpy._core; pickles name either location
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           # how Python 3 writes bytes at protocol 2 (str -> latin-1 bytes)
                                           ("_codecs", "encode"): codecs.encode}
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays, dicts, lists, strings and numbers -- and no other class."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _numpy_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: not part of the CIFAR batch format")
        return obj


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one batch file; ValueError on a malformed file."""
    with path.open("rb") as f:
        try:
            entry = _ArrayUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise ValueError(f"CIFAR batch {path}: not a valid python-pickle batch ({e})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"CIFAR batch {path}: expected a dict, found {type(entry).__name__}")
    data = entry.get(b"data", entry.get("data"))
    labels = entry.get(b"labels", entry.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = (data.dtype, data.shape) if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"CIFAR batch {path}: 'data' must be a uint8 array (N, 3072), found {got}")
    try:
        y = np.asarray(labels if labels is not None else [], dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"CIFAR batch {path}: 'labels' must be a list of integers") from None
    if y.shape != (len(data),):
        raise ValueError(f"CIFAR batch {path}: {len(data)} images but labels of shape {y.shape}")
    return data.reshape(-1, 3, 32, 32), y  # rows are 1024 R, then G, then B values: channel-first already


def _complete(directory: Path) -> bool:
    return all((directory / f).is_file() for f in (*TRAIN_FILES, TEST_FILE))


@functools.lru_cache(maxsize=2)
def _load_dir(directory: str, stamp: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, ...]:
    del stamp  # cache key only: a replaced file is re-read
    train = [read_batch(Path(directory, f)) for f in TRAIN_FILES]
    test_x, test_y = read_batch(Path(directory, TEST_FILE))
    return (torch.from_numpy(np.concatenate([x for x, _ in train])), torch.from_numpy(np.concatenate(
        [y for _, y in train])), torch.from_numpy(test_x), torch.from_numpy(test_y))


def _download(target: Path) -> Path:
    """Fetch and unpack the archive into ``target/cifar-10-batches-py``, atomically (temp dir, then rename)."""
    final = target / FOLDER
    if final.exists():  # never overwrite (or mix into) a directory the user may have filled by hand
        raise OSError(f"{final} exists but is incomplete; remove it and retry")
    archive = _files.download_url(URL, target / "cifar-10-python.tar.gz", ARCHIVE_MD5)
    with tempfile.TemporaryDirectory(dir=target, prefix=".cifar10-") as tmp, tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(FOLDER + "/")]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp, members=members, **safe)  # type: ignore[arg-type]
        os.replace(Path(tmp, FOLDER), final)
    archive.unlink()  # the extracted batches are the data; the 163 MB archive is redundant
    return final


def find_dir(data_dir: str | os.PathLike[str] | None, download: bool | None) -> Path:
    """The directory with the six batch files, downloading if allowed and needed; else one clear error."""
    searched = _files.candidate_dirs(data_dir, [FOLDER, NAME, f"{NAME}/{FOLDER}"])
    found = _files.find_dir(searched, _complete)
    if found is not None:
        return found
    error: str | None = None
    if _files.download_allowed(download):
        try:
            return _download(_files.download_target(data_dir, NAME))
        except (OSError, tarfile.TarError) as e:
            error = f"{type(e).__name__}: {e}"
    raise _files.missing_data_error(
        NAME, needed=f"{FOLDER}/ ({', '.join(TRAIN_FILES)}, {TEST_FILE})", searched=searched,
        debian_package=None, url=URL, download_error=error,
        missing=[] if data_dir is None else [
            f for f in (*TRAIN_FILES, TEST_FILE) if not any((d / f).is_file() for d in searched)],
    )


@register_dataset(NAME)
def cifar10(*, data_dir: str | os.PathLike[str] | None = None, download: bool | None = None) -> RawDataset:
    directory = find_dir(data_dir, download)
    stamp = tuple((st.st_size, st.st_mtime_ns) for st in (Path(directory, f).stat() for f in
                                                          (*TRAIN_FILES, TEST_FILE)))
    train_x, train_y, test_x, test_y = _load_dir(str(directory.resolve()), stamp)
    return RawDataset(
        train_x=train_x.float().div_(255), train_y=train_y, test_x=test_x.float().div_(255), test_y=test_y,
        num_classes=10, default_val_size=5000, augment="crop_flip", mean=MEAN, std=STD,
    )
