"""Fashion-MNIST (Xiao et al. 2017): 60k/10k grey 28x28 clothing images, 10 classes, IDX files.

Found locally (see ``_files`` for the search order; Debian's ``dataset-fashion-mnist`` package installs the files
under ``/usr/share/datasets/fashion-mnist``) or downloaded from Zalando's canonical S3 bucket. Each file may be
gzip-compressed (``*.gz``) or raw; the raw file wins when both exist because it decodes faster.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import _files
from ._core import RawDataset, register_dataset
from .idx import read_idx

NAME = "fashion-mnist"
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# md5 of the published .gz files (the Debian package recompresses, so only downloads are checked against these)
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
# the published training-set statistics (also what torchvision users use); fixed so they never depend on a split
MEAN, STD = (0.2860,), (0.3530,)


def _locate(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _require(directory: Path, stem: str) -> Path:
    path = _locate(directory, stem)
    if path is None:
        raise FileNotFoundError(f"{directory}: missing {stem} (or {stem}.gz)")
    return path


def _complete(directory: Path) -> bool:
    return all(_locate(directory, stem) is not None for stem in FILES)


def find_files(data_dir: str | os.PathLike[str] | None, download: bool | None) -> Path:
    """The directory holding all four files, downloading them if allowed and needed; else one clear error."""
    searched = _files.candidate_dirs(data_dir, [NAME])
    found = _files.find_dir(searched, _complete)
    if found is not None:
        return found
    error: str | None = None
    if _files.download_allowed(download):
        target = _files.download_target(data_dir, NAME)
        try:
            for stem, md5 in FILES.items():
                if _locate(target, stem) is None:  # resume: keep files a previous, interrupted run fetched
                    _files.download_url(BASE_URL + stem + ".gz", target / f"{stem}.gz", md5)
            return target
        except OSError as e:  # URLError, timeouts, checksum mismatch, read-only target
            error = f"{type(e).__name__}: {e}"
    raise _files.missing_data_error(
        NAME,
        needed="the four IDX files (" + ", ".join(f"{s}[.gz]" for s in FILES) + ")",
        searched=searched,
        debian_package="dataset-fashion-mnist",
        url=BASE_URL,
        download_error=error,
        missing=[] if data_dir is None else [
            f"{stem}[.gz]" for stem in FILES
            if all(_locate(d, stem) is None for d in searched if d.is_dir())],
    )


def load_idx_pair(directory: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N,1,H,W), a view of the read-only cache; labels int64) for ``split`` in {"train", "t10k"}."""
    images = read_idx(_require(directory, f"{split}-images-idx3-ubyte"), ndim=3)
    labels = read_idx(_require(directory, f"{split}-labels-idx1-ubyte"), ndim=1)
    if images.dtype != torch.uint8 or len(images) != len(labels):
        raise ValueError(
            f"{directory}: {split} images {tuple(images.shape)} {images.dtype} and labels {tuple(labels.shape)} "
            "do not match (expected uint8 images and one label per image)"
        )
    return images.unsqueeze(1), labels.long()


@register_dataset(NAME)
def fashion_mnist(*, data_dir: str | os.PathLike[str] | None = None, download: bool | None = None) -> RawDataset:
    directory = find_files(data_dir, download)
    train_x, train_y = load_idx_pair(directory, "train")
    test_x, test_y = load_idx_pair(directory, "t10k")
    return RawDataset(
        train_x=train_x.float().div_(255), train_y=train_y,
        test_x=test_x.float().div_(255), test_y=test_y,
        num_classes=10, default_val_size=5000, augment="crop", mean=MEAN, std=STD,
    )
