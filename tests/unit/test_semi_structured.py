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


def _fake_gpu(monkeypatch):
    """Pretend this CPU is a supported GPU whose "semi-structured" weight is a dense copy: the decision logic
    (time, compare, keep or convert) runs on the CPU; what a real GPU gives is the CUDA tests' and the benchmark's."""
    import secateurs.sparse.semi_structured as ss

    monkeypatch.setattr(ss, "semi_structured_support", lambda device=None: (True, "pretend"))
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda w: w.clone(), raising=False)
    monkeypatch.setattr(ss, "_tile", lambda dtype: (32, 64))


def test_eligible_layers_are_timed_and_converted_only_within_the_margin(monkeypatch):
    _fake_gpu(monkeypatch)
    model = _two_four_mlp()  # layer 0: 64x128, 2:4; layer 2: dense
    with pytest.raises(ValueError, match="needs input_shape or example"):
        to_semi_structured(model)
    slow = {c.name: c for c in to_semi_structured(model, (128,), batch_size=8)}  # a dense copy is ~1x dense
    assert not slow["0"].converted and slow["0"].ratio is not None and "needs <= 0.9x" in slow["0"].reason
    assert slow["2"].reason == "weight is not 2:4 sparse" and slow["2"].ratio is None
    fast = {c.name: c for c in to_semi_structured(model, (128,), batch_size=8, margin=100.0,
                                                    whole_model_check=False)}
    assert fast["0"].converted and fast["0"].reason.startswith("semi-structured ")
    assert fast["0"].dense_us > 0 and fast["0"].sparse_us > 0


@pytest.mark.parametrize("whole", [0.5, 1.5])  # the converted model's time / the dense model's
def test_conversions_are_undone_unless_the_whole_model_is_faster(monkeypatch, whole):
    import secateurs.sparse.kernels as kernels

    _fake_gpu(monkeypatch)
    timed = []

    def whole_model_ratio(model, use_dense, use_fast, example, rounds, min_time_s):
        use_dense()
        dense_out = model(example)
        assert model[0].weight is before  # the dense side runs the layer's own weight
        use_fast()
        assert model[0].weight is not before
        timed.append((torch.equal(model(example), dense_out), model.training, tuple(example.shape)))
        return whole
    monkeypatch.setattr(kernels, "_whole_model_ratio", whole_model_ratio)
    model = _two_four_mlp().train()
    before = model[0].weight
    c = {c.name: c for c in to_semi_structured(model, (128,), batch_size=8, margin=100.0)}["0"]
    assert timed == [(True, False, (8, 128))]  # once, in eval mode, on the example batch
    assert c.converted == (whole <= 1.0) and (model[0].weight is before) == (whole > 1.0)
    assert model.training  # the caller's mode is back
    assert ("the whole model ran 1.50x dense with it: kept dense" in c.reason) == (whole > 1.0)
    untimed = to_semi_structured(_two_four_mlp(), measure=False)[0]  # nothing timed, nothing undone
    assert untimed.converted and len(timed) == 1


def test_a_failure_while_timing_leaves_the_layer_dense(monkeypatch):
    import secateurs.sparse.kernels as kernels

    _fake_gpu(monkeypatch)
    model = _two_four_mlp()
    before = model[0].weight

    def boom(*a, **k):
        raise MemoryError("out of memory while timing")
    monkeypatch.setattr(kernels, "_interleaved", boom)
    with pytest.raises(MemoryError):
        to_semi_structured(model, (128,), batch_size=8)
    assert model[0].weight is before
    untimed = {c.name: c for c in to_semi_structured(_two_four_mlp(), measure=False)}
    assert untimed["0"].converted and untimed["0"].ratio is None and "not timed" in untimed["0"].reason


@pytest.mark.parametrize("measure", [True, False])
def test_a_kernel_that_fails_here_leaves_the_layer_dense(monkeypatch, measure):
    _fake_gpu(monkeypatch)  # then a "semi-structured" weight the product cannot use, as CUTLASS's on an H200
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda w: w[:, :-4].clone(), raising=False)
    model = _two_four_mlp()
    x = torch.randn(8, 128)
    with torch.no_grad():
        ref, before = model(x), model[0].weight
        c = to_semi_structured(model, example=x, measure=measure)[0]
        assert not c.converted and c.reason.startswith("the semi-structured kernel failed here (")
        assert model[0].weight is before and torch.equal(model(x), ref)


@pytest.mark.skipif(not semi_structured_support()[0], reason="needs a CUDA GPU with compute capability >= 8.0")
def test_cuda_two_four_linear_is_converted_and_equal():
    model = _two_four_mlp().half().cuda().eval()
    x = torch.randn(64, 128, device="cuda", dtype=torch.half)
    with torch.no_grad():
        ref = model(x)
        choices = {c.name: c for c in to_semi_structured(model, measure=False)}
        assert choices["0"].converted and not choices["2"].converted  # layer 2 is dense
        assert torch.allclose(model(x), ref, rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(not semi_structured_support()[0], reason="needs a CUDA GPU with compute capability >= 8.0")
@pytest.mark.parametrize("margin", [1000.0, 0.9])  # 1000: the converting path whatever the timing; 0.9: the default
def test_cuda_measured_conversion_follows_the_timing_and_keeps_the_output(margin):
    model = _two_four_mlp().half().cuda().eval()
    x = torch.randn(64, 128, device="cuda", dtype=torch.half)
    with torch.no_grad():
        ref, before = model(x), model[0].weight
        c = {c.name: c for c in to_semi_structured(model, example=x, margin=margin, whole_model_check=False)}["0"]
        assert c.ratio is not None and c.converted == (c.ratio <= margin) and (c.converted or margin < 1000)
        assert (model[0].weight is not before) == c.converted  # a kept-dense layer keeps its own weight
        assert torch.allclose(model(x), ref, rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(not semi_structured_support()[0], reason="needs a CUDA GPU with compute capability >= 8.0")
def test_cuda_whole_model_check_leaves_a_consistent_model():
    """With the whole-model check (the default) on a real GPU: a layer says converted exactly when it holds a
    semi-structured weight, an undone one says why, and the output is the dense one either way."""
    model = _two_four_mlp().half().cuda().eval()
    x = torch.randn(64, 128, device="cuda", dtype=torch.half)
    with torch.no_grad():
        ref, before = model(x), model[0].weight
        c = {c.name: c for c in to_semi_structured(model, example=x, margin=1000.0)}["0"]
        assert (model[0].weight is not before) == c.converted
        assert c.converted or "the whole model ran" in c.reason
        assert torch.allclose(model(x), ref, rtol=1e-2, atol=1e-2)


def test_a_failure_while_timing_the_whole_model_leaves_it_dense(monkeypatch):
    import secateurs.sparse.kernels as kernels

    _fake_gpu(monkeypatch)

    def boom(model, use_dense, use_fast, *a):
        use_fast()
        raise MemoryError("out of memory while timing the model")
    monkeypatch.setattr(kernels, "_whole_model_ratio", boom)
    model = _two_four_mlp()
    before = model[0].weight
    with pytest.raises(MemoryError):
        to_semi_structured(model, (128,), batch_size=8, margin=100.0)
    assert model[0].weight is before and model.training


@pytest.mark.parametrize("measure", [True, False])
def test_a_failure_at_a_later_layer_restores_the_earlier_conversions(monkeypatch, measure):
    import secateurs.sparse.kernels as kernels

    _fake_gpu(monkeypatch)
    model = _two_four_mlp()
    with torch.no_grad():
        model[2] = nn.Linear(64, 64)
        model[2].weight.mul_(nm_keep(model[2].weight.abs(), Pattern(2, 4)))
    model.append(nn.Linear(64, 10))
    before = [model[0].weight, model[2].weight]
    calls = []
    convert = torch.sparse.to_sparse_semi_structured

    def second_fails(w):
        calls.append(w.shape)
        if len(calls) == 2:
            raise MemoryError("out of memory at the second layer")
        return convert(w)
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", second_fails, raising=False)
    monkeypatch.setattr(kernels, "_interleaved", lambda *a: (2.0, 1.0, 0.5))  # the first layer "pays"
    with pytest.raises(MemoryError):
        to_semi_structured(model, (128,), batch_size=8, measure=measure)
    assert len(calls) == 2 and model[0].weight is before[0] and model[2].weight is before[1]
