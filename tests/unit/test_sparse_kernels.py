import pytest
import torch
from torch import nn

import secateurs
from secateurs.io import ModelSpec
from secateurs.models import create_model
from secateurs.sparse import SparseConv2d, SparseLinear, save_sparse, to_sparse_kernels

torch.set_num_threads(1)


def _sparsify_(module, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.weight.mul_(torch.rand(module.weight.shape, generator=g) < density)
    return module


def _rel(a, b):
    return float((a - b).abs().max()) / float(b.abs().max())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [(1,), (7,), (2, 3)])
def test_sparse_linear_equals_dense(bias, batch):
    lin = _sparsify_(nn.Linear(50, 30, bias=bias), 0.1)
    x = torch.randn(*batch, 50)
    with torch.no_grad():
        assert _rel(SparseLinear(lin)(x), lin(x)) <= 1e-5
        assert torch.equal(SparseLinear(lin).to_dense().weight, lin.weight)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2, bias=False),
                                dict(kernel_size=(3, 1), stride=(1, 2))])
def test_sparse_conv_equals_dense(kw):
    kw = {"kernel_size": 3, **kw}
    conv = _sparsify_(nn.Conv2d(4, 6, **kw), 0.2)
    x = torch.randn(3, 4, 11, 9)
    with torch.no_grad():
        assert _rel(SparseConv2d(conv)(x), conv(x)) <= 1e-5
        assert _rel(SparseConv2d(conv)(x[0]), conv(x[0])) <= 1e-5  # unbatched input


def test_only_measured_wins_are_swapped_and_outputs_match():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    _sparsify_(model[0], 0.01), _sparsify_(model[2], 0.01)  # model[4] stays dense: never a candidate
    x = torch.randn(64, 784)
    with torch.no_grad():
        ref = model(x)
    choices = to_sparse_kernels(model, [784], batch_size=64)
    by = {c.name: c for c in choices}
    assert set(by) == {"0", "2", "4"}
    assert not by["4"].replaced and "density" in by["4"].reason and isinstance(model[4], nn.Linear)
    # a 99 %-sparse 1024-wide layer at batch 64 is several times faster with CSR on any CPU
    assert by["2"].replaced and isinstance(model[2], SparseLinear) and by["2"].sparse_us < by["2"].dense_us
    for c in choices:
        assert c.replaced == isinstance(model.get_submodule(c.name), (SparseLinear, SparseConv2d))
        if c.replaced:
            assert c.sparse_us <= 0.9 * c.dense_us
    with torch.no_grad():
        assert _rel(model(x), ref) <= 1e-5


def test_margin_decides():
    def fresh():
        torch.manual_seed(0)
        return nn.Sequential(_sparsify_(nn.Linear(64, 64), 0.05), nn.ReLU(), _sparsify_(nn.Linear(64, 8), 0.05))

    none = fresh()
    assert not any(c.replaced for c in to_sparse_kernels(none, [64], margin=0.0, rounds=1))
    assert all(isinstance(m, (nn.Linear, nn.ReLU)) for m in none)
    every = fresh()
    assert all(c.replaced for c in to_sparse_kernels(every, [64], margin=float("inf"), rounds=1,
                                                     whole_model_check=False))
    x = torch.randn(5, 64)
    with torch.no_grad():
        assert _rel(every(x), fresh()(x)) <= 1e-5


def test_load_with_sparse_kernels(tmp_path):
    kw = {"num_classes": 10, "in_channels": 1, "input_size": 28}
    torch.manual_seed(0)
    model = create_model("lenet5", **kw).eval()
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            _sparsify_(m, 0.02)
    save_sparse(tmp_path / "s", model, ModelSpec("lenet5", kw, [1, 28, 28], 10))
    fast = secateurs.load(tmp_path / "s", sparse_kernels=True, batch_size=16)
    assert not fast.training
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert _rel(fast(x), model(x)) <= 1e-5
    with pytest.raises(ValueError, match="batch_size"):
        to_sparse_kernels(model, [1, 28, 28], batch_size=0)
    with pytest.raises(ValueError, match="input_shape"):
        to_sparse_kernels(model, [])


@pytest.mark.parametrize("whole_ratio, kept", [(2.0, False), (0.5, True)])
def test_swaps_are_undone_when_the_whole_model_is_not_faster(monkeypatch, whole_ratio, kept):
    """Layer-by-layer wins that make the whole model slower are reverted (timings replaced by fixed ratios)."""
    import secateurs.sparse.kernels as k

    monkeypatch.setattr(k, "_interleaved", lambda a, b, x, rounds, min_time_s: (10.0, 10.0 * whole_ratio,
                                                                                 whole_ratio))
    torch.manual_seed(0)
    model = nn.Sequential(_sparsify_(nn.Linear(64, 64), 0.05), nn.ReLU(), _sparsify_(nn.Linear(64, 8), 0.05))
    x = torch.randn(5, 64)
    with torch.no_grad():
        ref = model(x)
    choices = to_sparse_kernels(model, [64], margin=float("inf"), rounds=1)
    assert all(c.replaced == kept for c in choices)
    assert all(isinstance(m, (SparseLinear if kept else nn.Linear, nn.ReLU)) for m in model)
    if not kept:
        assert all("whole model ran 2.00x dense" in c.reason for c in choices)
    with torch.no_grad():
        assert _rel(model(x), ref) <= 1e-5
