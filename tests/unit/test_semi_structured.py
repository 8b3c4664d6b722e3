import pytest
import torch
from torch import nn

from secateurs.sparse import to_semi_structured
from secateurs.sparse.semi_structured import semi_structured_support
from secateurs.unstructured import Pattern, nm_keep


def _two_four_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():
        model[0].weight.mul_(nm_keep(model[0].weight.abs(), Pattern(2, 4)))
    return model


def test_cpu_falls_back_to_dense_unchanged():
    model = _two_four_mlp()
    x = torch.randn(3, 128)
    with torch.no_grad():
        ref = model(x)
    choices = to_semi_structured(model)
    assert [c.name for c in choices] == ["0", "2"]
    assert not any(c.converted for c in choices)
    assert all(c.reason.startswith("dense fallback") for c in choices)
    assert model[0].weight.layout == torch.strided
    with torch.no_grad():
        assert torch.equal(model(x), ref)


def test_old_gpu_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    ok, why = semi_structured_support()
    assert not ok and "7.5 < 8.0" in why
    assert semi_structured_support("cpu") == (False, "device cpu is not CUDA")


@pytest.mark.skipif(not semi_structured_support()[0], reason="needs a CUDA GPU with compute capability >= 8.0")
def test_cuda_two_four_linear_is_converted_and_equal():
    model = _two_four_mlp().half().cuda().eval()
    x = torch.randn(64, 128, device="cuda", dtype=torch.half)
    with torch.no_grad():
        ref = model(x)
        choices = {c.name: c for c in to_semi_structured(model)}
        assert choices["0"].converted and not choices["2"].converted  # layer 2 is dense
        assert torch.allclose(model(x), ref, rtol=1e-2, atol=1e-2)
