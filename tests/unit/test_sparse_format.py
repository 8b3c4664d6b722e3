import json

import pytest
import torch

import secateurs
from secateurs.io import ModelSpec, load_checkpoint, save
from secateurs.models import create_model
from secateurs.sparse import save_sparse, weight_bytes
from secateurs.sparse.format import ENCODINGS, INDEX_FILE, WEIGHTS_FILE, decode, encode, encoded_sizes
from secateurs.unstructured import magnitude_masks

KW = {"num_classes": 10, "in_channels": 1, "input_size": 28}


def _pruned(name, sparsity, seed=0):
    torch.manual_seed(seed)
    model = create_model(name, **KW).eval()
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    masks = magnitude_masks({n: p.detach().abs() for n, p in weights.items()}, sparsity)
    with torch.no_grad():
        for n, p in weights.items():
            p.mul_(masks[n])  # leaves -0.0 where negative weights were pruned, as the sparsifier does
    return model, ModelSpec(name, KW, [1, 28, 28], 10, "fashion-mnist")


def _same_bits(a, b):
    """Equal values everywhere and the identical bit pattern in every non-zero entry."""
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(a, b)
    if a.is_floating_point():
        ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        nz = a != 0
        assert torch.equal(a[nz].view(ints), b[nz].view(ints))


@pytest.mark.parametrize("name,sparsity", [("mlp", 0.5), ("mlp", 0.95), ("mlp", 0.99), ("lenet5", 0.9)])
def test_sparse_checkpoint_loads_the_identical_model(tmp_path, name, sparsity):
    model, spec = _pruned(name, sparsity)
    save_sparse(tmp_path / "s", model, spec, {"accuracy": 0.5})
    assert not (tmp_path / "s" / "model.safetensors").exists()
    loaded = load_checkpoint(tmp_path / "s")
    assert loaded.summary == {"accuracy": 0.5} and loaded.spec == spec
    ref, got = model.state_dict(), loaded.model.state_dict()
    assert list(ref) == list(got)
    for k in ref:
        _same_bits(ref[k], got[k])
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), loaded.model(x))


@pytest.mark.parametrize("sparsity,limit", [(0.95, 0.09), (0.99, 0.05)])
def test_lenet300_file_size_targets(tmp_path, sparsity, limit):
    model, spec = _pruned("mlp", sparsity)
    save(tmp_path / "d", model, spec)
    written = save_sparse(tmp_path / "s", model, spec)
    dense = (tmp_path / "d" / "model.safetensors").stat().st_size
    assert weight_bytes(tmp_path / "s") == written.bytes
    assert written.bytes <= limit * dense
    # and the general bound: density x dense bytes + 1 bit per weight + a small header
    n = sum(t.numel() for t in model.state_dict().values())
    assert written.bytes <= (1 - sparsity) * dense + n / 8 + 4096


def _tensor(density, shape=(64, 300), dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g).to(dtype)
    return t * (torch.rand(shape, generator=g) < density)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_every_encoding_round_trips_special_values(encoding, dtype):
    t = _tensor(0.05, dtype=dtype)
    flat = t.view(-1)
    flat[3], flat[700], flat[5000], flat[-1] = float("nan"), float("inf"), -float("inf"), -2.5
    entry, arrays = encode("w", t, encoding)
    back = decode("w", entry, arrays)
    nan = torch.isnan(t)
    assert torch.equal(torch.isnan(back), nan)
    _same_bits(t.masked_fill(nan, 0), back.masked_fill(nan, 0))


def test_long_gaps_wide_rows_and_edge_shapes():
    t = torch.zeros(2, 70000)
    t[0, 0], t[0, 69999], t[1, 65537] = 1.0, 2.0, 3.0  # gaps > 255 need fillers; columns > 65536 need int32
    for enc in ENCODINGS:
        entry, arrays = encode("w", t, enc)
        assert torch.equal(decode("w", entry, arrays), t)
    for t in (torch.zeros(0, 3), torch.tensor(1.5), torch.zeros(5), torch.arange(7)):
        entry, arrays = encode("w", t)
        assert torch.equal(decode("w", entry, arrays), t)
    assert encode("b", torch.arange(7))[0]["encoding"] == "dense"  # integer buffers stay dense


def test_the_smallest_encoding_is_chosen_and_each_wins_somewhere():
    winners = {}
    for density in (1.0, 0.3, 0.05, 0.001):
        t = _tensor(density, shape=(256, 1024))
        sizes = encoded_sizes(t)
        entry, arrays = encode("w", t)
        assert sizes[entry["encoding"]] == min(sizes.values())
        assert sum(a.numel() * a.element_size() for a in arrays.values()) == sizes[entry["encoding"]]
        winners[density] = entry["encoding"]
    assert winners == {1.0: "dense", 0.3: "bitmask", 0.05: "delta", 0.001: "csr"}


def _write(tmp_path):
    model, spec = _pruned("mlp", 0.95)
    save_sparse(tmp_path / "s", model, spec)
    return tmp_path / "s"


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d["tensors"]["features.0.weight"].update(encoding="zip"), "encoding"),
    (lambda d: d["tensors"]["features.0.weight"].update(shape=[300, -784]), "shape"),
    (lambda d: d["tensors"]["features.0.weight"].update(shape=[300, 785]), "reach|entries|match"),
    (lambda d: d["tensors"]["features.0.weight"].update(dtype="float128"), "dtype"),
    (lambda d: d["tensors"]["features.0.bias"].update(encoding="bitmask"), "missing"),
    (lambda d: d["tensors"].pop("classifier.bias"), "does not describe"),
    (lambda d: d.update(tensors=[]), "tensors"),
])
def test_tampered_index_is_refused_with_the_reason(tmp_path, edit, match):
    path = _write(tmp_path)
    index = json.loads((path / INDEX_FILE).read_text())
    edit(index)
    (path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


def test_out_of_range_indices_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path = _write(tmp_path)
    arrays = load_file(str(path / WEIGHTS_FILE))
    arrays["features.0.weight/gaps"][-1] = 255
    arrays["features.0.weight/gaps"][-2] = 255
    arrays["features.0.weight/gaps"][:400] = 255
    save_file(arrays, str(path / WEIGHTS_FILE))
    with pytest.raises(ValueError, match="reach"):
        secateurs.load(path)


@pytest.mark.parametrize("blob", [b"garbage\n", b"", b"\xff" * 8 + b"{}"])
def test_a_corrupt_weights_file_is_a_checkpoint_error(tmp_path, blob):
    from secateurs.errors import CheckpointError

    path = _write(tmp_path)
    (path / WEIGHTS_FILE).write_bytes(blob)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)


def test_no_pickle_and_a_readable_index(tmp_path):
    path = _write(tmp_path)
    blob = (path / WEIGHTS_FILE).read_bytes()
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    assert "features.0.weight/values" in header and b"\x80\x04" not in blob[:16]
    index = json.loads((path / INDEX_FILE).read_text())
    assert index["tensors"]["features.0.weight"] == {"encoding": "delta", "shape": [300, 784], "dtype": "float32"}
