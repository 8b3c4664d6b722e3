"""TorchScript and ONNX export of pruned models: the exported file computes what the pruned model computes."""
import copy

import pytest
import torch

from fixtures.topologies import zoo_case
from secateurs.structured import apply_plan, channel_scores, export_onnx, export_torchscript, select_channels


@pytest.fixture(scope="module")
def pruned():
    model, x, graph, shape = zoo_case("resnet20")
    model = copy.deepcopy(model)
    sel = select_channels(graph, channel_scores(model, graph, "l1"), 0.5)
    apply_plan(model, sel.plan, x, graph=graph)
    return model.eval(), shape


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load is deprecated in favour of torch.export
def test_torchscript_round_trip(pruned, tmp_path):
    model, shape = pruned
    x = torch.randn(3, *shape)
    path = export_torchscript(model, x[:2], tmp_path / "m.pt")
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no leftovers


def test_onnx_matches_the_pruned_model_with_a_dynamic_batch(pruned, tmp_path):
    onnx = pytest.importorskip("onnx")
    model, shape = pruned
    path = export_onnx(model, torch.randn(2, *shape), tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    x = torch.randn(3, *shape)  # a batch size the export never saw
    try:
        import onnxruntime as ort

        out = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        out = ReferenceEvaluator(proto).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x)
    assert out.shape == tuple(ref.shape)
    assert torch.allclose(torch.from_numpy(out), ref, atol=1e-4)
    # the pruned widths are what the file contains
    conv_weights = [i for i in proto.graph.initializer if len(i.dims) == 4]
    assert sorted(tuple(i.dims) for i in conv_weights) == sorted(
        tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Conv2d))
