"""Attention is counted and exported as the deployed model computes it, whatever the autograd mode (issue 10.1)."""
import copy

import pytest
import torch

from fixtures.real_world import make
from secateurs.flops import count_model, macs_counter
from secateurs.graph import build_channel_graph
from secateurs.structured import apply_plan, channel_scores, export_onnx, select_channels


@pytest.mark.parametrize("train,grad", [(False, False), (True, True), (False, True), (True, False)])
def test_vit_macs_include_attention_matmuls_in_every_mode(train, grad):
    model, x = make("vit")
    model.train(train)
    with torch.set_grad_enabled(grad), macs_counter() as counter:
        model(x)
    assert counter.get_total_flops() // 2 // x.shape[0] == model.hand_macs()


def test_count_model_and_graph_total_agree_with_the_hand_count():
    model, x = make("vit")
    hand = model.hand_macs()
    assert count_model(model, (3, 8, 8)).macs == hand
    assert build_channel_graph(model, x[:1]).total_macs == hand


def test_fastpath_setting_is_restored():
    before = torch.backends.mha.get_fastpath_enabled()
    model, x = make("vit")
    try:
        torch.backends.mha.set_fastpath_enabled(True)
        count_model(model, (3, 8, 8))
        assert torch.backends.mha.get_fastpath_enabled() is True
        with pytest.raises(RuntimeError), macs_counter():
            raise RuntimeError("boom")
        assert torch.backends.mha.get_fastpath_enabled() is True
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def _onnx_run(path, x):
    onnx = pytest.importorskip("onnx")
    try:
        import onnxruntime as ort

        return ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(onnx.load(str(path))).run(None, {"input": x.numpy()})[0]


@pytest.mark.parametrize("pruned", [False, True])
def test_vit_exports_to_onnx_dense_and_pruned(pruned, tmp_path):
    pytest.importorskip("onnx")
    model, x = make("vit")
    model = copy.deepcopy(model)
    if pruned:
        graph = build_channel_graph(model, x[:1])
        assert graph.prunable_groups(), "the MLP hidden layers should be prunable"
        sel = select_channels(graph, channel_scores(model, graph, "l1"), 0.1)
        apply_plan(model, sel.plan, x[:1], graph=graph)
        assert model.encoder.layers[0].linear1.out_features < 32
    path = export_onnx(model, x, tmp_path / "vit.onnx")
    x3 = torch.randn(3, 3, 8, 8)
    out = _onnx_run(path, x3)
    with torch.no_grad():
        ref = model.eval()(x3)
    assert out.shape == tuple(ref.shape)
    assert torch.allclose(torch.from_numpy(out), ref, atol=1e-4)
