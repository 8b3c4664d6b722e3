"""Tests for secateurs.data: registry, splits, normalisation, file formats, downloads (faked), BatchLoader.

Nothing here touches the network: every test that could reach a download either forbids it or replaces
``urllib.request.urlopen``. File-backed datasets are exercised on tiny files generated in ``tmp_path``.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from secateurs.data import (
    BatchLoader,
    RawDataset,
    _files,
    cifar10,
    fashion_mnist,
    get_dataset,
    list_datasets,
    register_dataset,
    split_indices,
)
from secateurs.data.augment import random_crop
from secateurs.data.idx import decode_idx, encode_idx, read_idx

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network, no user data, no system data, a private cache: each test sees only what it creates."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv("SECATEURS_DATA", raising=False)
    monkeypatch.delenv("SECATEURS_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_files, "SYSTEM_DATA_DIRS", (tmp_path / "system",))


# ---------------------------------------------------------------- registry and the shared split logic

_INDEX_DS = "_test-index"  # x[i] == i, so every split can be traced back to raw indices


def _index_factory(*, data_dir: object = None, download: object = None, n: int = 100) -> RawDataset:
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1)
    return RawDataset(x, torch.arange(n) % 3, x[:10].clone(), torch.zeros(10, dtype=torch.long), num_classes=3,
                      mean=(0.0,), std=(1.0,))


if _INDEX_DS not in list_datasets():
    register_dataset(_INDEX_DS)(_index_factory)


def _ids(x: torch.Tensor) -> set[int]:
    return set(x.flatten().long().tolist())


def test_registry_lists_builtins_and_rejects_unknown_names() -> None:
    assert {"cifar10", "digits", "fashion-mnist", "mnist1d", "mnist5k"} <= set(list_datasets())
    with pytest.raises(KeyError, match="unknown dataset 'nope'.*known:.*digits.*mnist1d"):
        get_dataset("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits")(_index_factory)


def test_val_split_is_disjoint_seeded_and_subsets_nest() -> None:
    d = get_dataset(_INDEX_DS, val_size=20, seed=1)
    train, val = _ids(d.train_x), _ids(d.val_x)
    assert len(val) == 20 and not train & val and train | val == set(range(100))
    assert torch.equal(d.train_y, d.train_x.flatten().long() % 3)  # labels travel with their images
    same = get_dataset(_INDEX_DS, val_size=20, seed=1)
    assert torch.equal(same.val_x, d.val_x) and torch.equal(same.train_x, d.train_x)
    assert _ids(get_dataset(_INDEX_DS, val_size=20, seed=2).val_x) != val
    small, big = (_ids(get_dataset(_INDEX_DS, val_size=20, seed=1, train_subset=k).train_x) for k in (10, 40))
    assert len(small) == 10 and small < big < train
    tr, va = split_indices(100, 20, 10, seed=1)
    assert _ids(tr) == small and _ids(va) == val


def test_val_size_zero_gives_empty_tensors_of_the_right_shape() -> None:
    d = get_dataset(_INDEX_DS, val_size=0)
    assert d.val_x.shape == (0, 1, 1) and d.val_y.shape == (0,) and d.val_y.dtype == torch.int64
    assert len(d.train_x) == 100


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"val_size": 100}, r"^val_size 100: .*\[0, 99\]"),
    ({"val_size": -1}, r"^val_size -1: "),
    ({"val_size": 20, "train_subset": 81}, r"^train_subset 81: .*\[1, 80\]"),
    ({"train_subset": 0}, r"^train_subset 0: "),
])
def test_invalid_sizes_name_the_argument_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_dataset(_INDEX_DS, **kwargs)


def test_unknown_dataset_option_is_rejected() -> None:
    with pytest.raises(TypeError, match="unexpected options.*bogus.*accepts.*num_samples"):
        get_dataset("mnist1d", bogus=1)


def test_repr_leaves_tensors_out() -> None:
    assert "tensor" not in repr(get_dataset(_INDEX_DS))


# ---------------------------------------------------------------- bundled datasets


def _check_splits(d, shape: tuple[int, ...], sizes: tuple[int, int, int]) -> None:
    for x, y, n in ((d.train_x, d.train_y, sizes[0]), (d.val_x, d.val_y, sizes[1]), (d.test_x, d.test_y, sizes[2])):
        assert x.shape == (n, *shape) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) < d.num_classes
    assert d.input_shape == shape and d.num_classes == 10
    assert abs(d.train_x.mean().item()) < 0.05 and abs(d.train_x.std().item() - 1) < 0.05


def test_digits_shapes_normalisation_and_fixed_test_set() -> None:
    d = get_dataset("digits", seed=0)
    _check_splits(d, (1, 8, 8), (1293, 144, 360))
    assert d.augment is None
    other = get_dataset("digits", seed=1)
    assert torch.equal(other.test_x, d.test_x)  # the test set never moves with the seed
    assert not torch.equal(other.val_x, d.val_x)
    assert len(get_dataset("digits", train_subset=100).train_x) == 100


def test_mnist5k_shapes_and_scale() -> None:
    d = get_dataset("mnist5k", seed=0)
    _check_splits(d, (1, 28, 28), (3600, 400, 1000))
    assert d.augment == "crop" and 0.1 < d.mean[0] < 0.16  # MNIST pixels scaled to [0, 1] (mean ~0.13)
    assert torch.bincount(d.test_y, minlength=10).min() > 50  # the fixed split is not one class


def test_mnist1d_is_offline_small_and_leaves_global_rng_alone() -> None:
    state = np.random.get_state()
    d = get_dataset("mnist1d", num_samples=200, val_size=16)
    assert np.array_equal(np.random.get_state()[1], state[1])
    _check_splits(d, (1, 40), (144, 16, 40))
    with pytest.raises(ValueError, match="num_samples=5"):
        get_dataset("mnist1d", num_samples=5)


# ---------------------------------------------------------------- IDX format and fashion-mnist on tiny files


def _write_fashion(directory: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        for kind, arr in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                          ("labels-idx1", rng.integers(0, 10, n, dtype=np.uint8))):
            data = encode_idx(arr)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (directory / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (directory / name).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    data = encode_idx(arr)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path, ndim=3)
    assert out.dtype == torch.int32 and torch.equal(out, torch.from_numpy(arr))
    with pytest.raises(ValueError, match="expected 1 dimensions"):
        read_idx(path, ndim=1)


@pytest.mark.parametrize(("blob", "match"), [
    (b"\x00\x00\x08", "too short"),
    (b"\x12\x34\x08\x01\x00\x00\x00\x02ab", "bad magic number"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", r"size mismatch.*\(5,\)"),
])
def test_idx_rejects_corrupt_bytes(blob: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_idx(blob, source="x")


def test_idx_rejects_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros((4, 4), np.uint8)))[:-12])
    with pytest.raises(ValueError, match=r"bad.gz: corrupt gzip"):
        read_idx(path)


def test_fashion_mnist_from_data_dir_gz_and_raw(tmp_path: Path) -> None:
    _write_fashion(tmp_path / "gz", gz=True)
    _write_fashion(tmp_path / "raw", gz=False)
    a = get_dataset("fashion-mnist", data_dir=tmp_path / "gz", val_size=5, download=False)
    b = get_dataset("fashion-mnist", data_dir=tmp_path / "raw", val_size=5, download=False)
    assert a.train_x.shape == (25, 1, 28, 28) and a.test_x.shape == (10, 1, 28, 28) and a.augment == "crop"
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    pixels = read_idx(tmp_path / "raw" / "t10k-images-idx3-ubyte").float() / 255
    assert torch.allclose(a.test_x[:, 0], (pixels - 0.2860) / 0.3530)  # the published constants


def test_fashion_mnist_found_via_env_subdirectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_fashion(tmp_path / "root" / "fashion-mnist")
    monkeypatch.setenv("SECATEURS_DATA", str(tmp_path / "root"))
    assert len(get_dataset("fashion-mnist", val_size=0).train_x) == 30


def test_fashion_mnist_missing_everywhere_gives_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        get_dataset("fashion-mnist", data_dir=tmp_path / "mine")
    msg = str(info.value)
    for needle in ("--data-dir", "SECATEURS_DATA", "apt-get install dataset-fashion-mnist", "download=True",
                   "network disabled in tests", str(tmp_path / "mine"), "train-images-idx3-ubyte[.gz]"):
        assert needle in msg
    # an explicit data_dir is used or fails: the system copy is not searched behind the user's back
    assert str(tmp_path / "system" / "fashion-mnist") not in msg
    with pytest.raises(FileNotFoundError, match="Download not attempted"):
        get_dataset("fashion-mnist", download=False)
    short = info.value.short  # the command line's one-line form says the same
    assert "\n" not in short
    for needle in ("--data-dir", "SECATEURS_DATA", "apt-get install dataset-fashion-mnist",
                   "network disabled in tests", str(tmp_path / "mine"), "train-images-idx3-ubyte[.gz]"):
        assert needle in short


def test_offline_env_disables_implicit_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requested = _serve(monkeypatch, {})
    monkeypatch.setenv("SECATEURS_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="Download not attempted"):
        get_dataset("fashion-mnist")
    assert requested == []


def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    requested: list[str] = []

    def fake_urlopen(url: str, timeout: float = 0) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO(files[url.rsplit("/", 1)[-1]])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


def test_fashion_mnist_download_is_checked_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_fashion(tmp_path / "src")
    served = {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}
    requested = _serve(monkeypatch, served)
    with pytest.raises(FileNotFoundError, match="checksum mismatch"):  # real md5s never match fake files
        get_dataset("fashion-mnist", val_size=0)
    cache = tmp_path / "cache" / "secateurs" / "fashion-mnist"
    assert list(cache.iterdir()) == []  # nothing half-written left behind
    md5s = {stem: hashlib.md5(served[stem + ".gz"]).hexdigest() for stem in fashion_mnist.FILES}
    monkeypatch.setattr(fashion_mnist, "FILES", md5s)
    requested.clear()
    d = get_dataset("fashion-mnist", val_size=0)
    assert len(requested) == 4 and requested[0].startswith(fashion_mnist.BASE_URL)
    assert len(d.train_x) == 30 and sorted(p.name for p in cache.iterdir()) == sorted(served)
    get_dataset("fashion-mnist", val_size=0)
    assert len(requested) == 4  # found in the cache the second time


# ---------------------------------------------------------------- cifar10 on generated python-pickle batches


def _write_cifar(directory: Path, per_batch: int = 8) -> None:
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True)
    for name in (*cifar10.TRAIN_FILES, cifar10.TEST_FILE):
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, per_batch).tolist(),
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"{i}.png".encode() for i in range(per_batch)]}
        with (directory / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)  # the protocol of the published files


def test_cifar10_from_pickle_batches(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar-10-batches-py")
    d = get_dataset("cifar10", data_dir=tmp_path, val_size=4, download=False)
    assert d.train_x.shape == (36, 3, 32, 32) and d.val_x.shape == (4, 3, 32, 32) and d.test_x.shape[0] == 8
    assert d.augment == "crop_flip" and d.mean == cifar10.MEAN and d.std == cifar10.STD
    x, y = cifar10.read_batch(tmp_path / "cifar-10-batches-py" / "test_batch")
    expected = (torch.from_numpy(x).float() / 255 - torch.tensor(cifar10.MEAN).view(1, 3, 1, 1)) / torch.tensor(
        cifar10.STD).view(1, 3, 1, 1)
    assert torch.allclose(d.test_x, expected) and torch.equal(d.test_y, torch.from_numpy(y))
    direct = get_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py", val_size=4, download=False)
    assert torch.equal(direct.train_x, d.train_x)


def test_cifar10_download_extracts_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    _write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    blob = archive.read_bytes()
    requested = _serve(monkeypatch, {"cifar-10-python.tar.gz": blob})
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(blob).hexdigest())
    d = get_dataset("cifar10", val_size=4)
    assert requested == [cifar10.URL] and d.train_x.shape == (36, 3, 32, 32)
    root = tmp_path / "cache" / "secateurs" / "cifar10"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # archive and temp dir removed
    get_dataset("cifar10", val_size=4)
    assert len(requested) == 1


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_cifar10_refuses_pickles_that_are_not_data(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match="refusing to unpickle .*print"):
        cifar10.read_batch(path)


def test_cifar10_missing_lists_options(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"(?s)cifar-10-batches-py.*--data-dir.*SECATEURS_DATA"):
        get_dataset("cifar10", data_dir=tmp_path, download=False)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist absent")
def test_real_fashion_mnist_from_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_files, "SYSTEM_DATA_DIRS", (Path("/usr/share/datasets"),))
    d = get_dataset("fashion-mnist", download=False)
    _check_splits(d, (1, 28, 28), (55000, 5000, 10000))


# ---------------------------------------------------------------- BatchLoader


def _seen(loader: BatchLoader) -> list[int]:
    return [int(v) for xb, _ in loader for v in xb.flatten()]


def test_loader_batch_count_and_drop_last() -> None:
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    assert len(BatchLoader(x, y, 4)) == 3 and [len(b) for b, _ in BatchLoader(x, y, 4)] == [4, 4, 2]
    assert len(BatchLoader(x, y, 4, drop_last=True)) == 2 and _seen(BatchLoader(x, y, 4, drop_last=True)) == list(
        range(8))
    xb, yb = next(iter(BatchLoader(x, y, 4, shuffle=True)))
    assert torch.equal(xb.flatten().long(), yb)  # pairs stay aligned
    with pytest.raises(ValueError, match="batch_size=0"):
        BatchLoader(x, y, 0)
    with pytest.raises(ValueError, match="rank=2"):
        BatchLoader(x, y, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="augment='blur' is unknown; known: crop, crop_flip"):
        BatchLoader(x, y, 4, augment="blur")


def test_loader_shuffle_is_seeded_per_epoch() -> None:
    x, y = torch.arange(50.0).view(50, 1), torch.arange(50)
    a, b = BatchLoader(x, y, 8, shuffle=True, seed=3), BatchLoader(x, y, 8, shuffle=True, seed=3)
    first = _seen(a)
    assert first == _seen(b) == _seen(a) and sorted(first) == list(range(50)) and first != list(range(50))
    a.set_epoch(1)
    assert _seen(a) != first and sorted(_seen(a)) == list(range(50))
    assert _seen(BatchLoader(x, y, 8, shuffle=True, seed=4)) != first


@pytest.mark.parametrize("n", [11, 12, 1])
def test_loader_sharding_covers_the_epoch_with_equal_lengths(n: int) -> None:
    x, y = torch.arange(float(n)).view(n, 1), torch.arange(n)
    full = BatchLoader(x, y, 3, shuffle=True, seed=7)
    full.set_epoch(2)
    shards = []
    for r in range(2):
        loader = BatchLoader(x, y, 3, shuffle=True, seed=7, rank=r, world_size=2)
        loader.set_epoch(2)
        shards.append(_seen(loader))
        assert len(loader) == len(BatchLoader(x, y, 3, rank=0, world_size=2))
    assert len(shards[0]) == len(shards[1]) == -(-n // 2)
    order = _seen(full)
    padded = (order * 2)[: 2 * len(shards[0])]  # same permutation on every rank, padded from its start
    assert shards[0] == padded[0::2] and shards[1] == padded[1::2] and set(shards[0] + shards[1]) == set(range(n))


def test_augmentation_changes_images_keeps_shape_and_is_reproducible() -> None:
    x = torch.randn(16, 3, 32, 32)
    y = torch.zeros(16, dtype=torch.long)
    a = BatchLoader(x, y, 8, augment="crop_flip", seed=1)
    (xa, _), (xb, _) = next(iter(a)), next(iter(a))
    assert xa.shape == (8, 3, 32, 32) and torch.equal(xa, xb) and not torch.equal(xa, x[:8])
    a.set_epoch(1)
    assert not torch.equal(next(iter(a))[0], xa)
    other_rank = BatchLoader(x, y, 8, augment="crop_flip", seed=1, rank=1, world_size=2)
    assert not torch.equal(next(iter(other_rank))[0], x[1::2][:8])
    with pytest.raises(ValueError, match="needs \\(N, C, H, W\\)"):
        next(iter(BatchLoader(torch.zeros(4, 1, 40), torch.zeros(4), 2, augment="crop")))


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    x = torch.randn(6, 2, 28, 28)
    out = random_crop(x, torch.Generator().manual_seed(0), padding=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        windows = [padded[i, :, dy:dy + 28, dx:dx + 28] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_seeded_batches_are_a_fixed_prefix_of_one_permutation():
    from secateurs.data import seeded_batches

    x, y = torch.arange(100.0).view(100, 1), torch.arange(100)
    a = list(seeded_batches(x, y, batch_size=16, seed=4, batches=3))
    assert [len(b[0]) for b in a] == [16, 16, 16] and all(torch.equal(bx[:, 0].long(), by) for bx, by in a)
    assert all(torch.equal(p[0], q) for p, q in zip(a, seeded_batches(x, batch_size=16, seed=4, batches=3)))
    whole = torch.cat(list(seeded_batches(x, batch_size=16, seed=4)))[:, 0]
    assert sorted(whole.tolist()) == list(range(100)) and torch.equal(whole[:48], torch.cat([b[1] for b in a]).float())
    assert not torch.equal(whole, torch.cat(list(seeded_batches(x, batch_size=16, seed=5)))[:, 0])


def test_the_command_line_names_a_size_flag_only_when_it_was_given() -> None:
    from secateurs.cli._common import UsageError, get_data

    name = "_test-default-too-big"
    if name not in list_datasets():
        register_dataset(name)(lambda *, data_dir=None, download=None: RawDataset(
            torch.zeros(100, 1, 1), torch.zeros(100, dtype=torch.long), torch.zeros(10, 1, 1),
            torch.zeros(10, dtype=torch.long), num_classes=1, default_val_size=5000, mean=(0.0,), std=(1.0,)))
    with pytest.raises(UsageError, match=rf"^--data {name}: the dataset's default val_size 5000: must be"):
        get_data(name, val_size=None)  # e.g. `info --data`, which has no --val-size flag
    with pytest.raises(UsageError, match=rf"^--data {name}: --val-size 500: must be"):
        get_data(name, val_size=500)
    with pytest.raises(UsageError, match=rf"^--data {name}: --train-subset 0: must be"):
        get_data(name, val_size=10, train_subset=0)


def test_missing_data_error_survives_pickling():
    import pickle

    from secateurs.data._files import MissingDataError

    e = pickle.loads(pickle.dumps(MissingDataError("line 1\nline 2", short="one line")))
    assert isinstance(e, MissingDataError) and str(e) == "line 1\nline 2" and e.short == "one line"
