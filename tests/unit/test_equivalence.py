"""The masked == pruned check is scale-aware: it cannot pass on tiny or zero outputs (issue 10.4)."""
import copy

import pytest
import torch

from fixtures.real_world import make as make_real
from fixtures.topologies import make
from secateurs.graph import build_channel_graph, remove_channels
from secateurs.graph._verify import equivalence
from secateurs.structured import PruningPlan, apply_plan


def _wrong_prune(model, graph, gid, removed, instead):
    """Cut channels ``instead`` of the ``removed`` ones the check is told about."""
    return remove_channels(copy.deepcopy(model), graph, {gid: instead})


def _tiny_head(model, factor):
    with torch.no_grad():
        model.fc.weight.mul_(factor)
        model.fc.bias.mul_(factor)
    return model


def test_a_wrong_prune_of_a_tiny_output_model_fails():
    model, x = make("residual")
    _tiny_head(model, 1e-12)  # outputs ~1e-12, as in random-init MobileNet/EfficientNet
    graph = build_channel_graph(model, x)
    gid, removed = "b1.0.0:out", {"b1.0.0:out": [0, 1]}
    wrong = _wrong_prune(model, graph, gid, removed, [2, 3])
    eq = equivalence(model, graph, removed, x, pruned=wrong)
    assert eq.max_abs_diff < 1e-5  # an absolute tolerance would call this equivalent
    assert eq.max_rel_diff > 1e-3
    right = equivalence(model, graph, removed, x)
    assert right.max_rel_diff < 1e-12


def test_a_wrong_prune_behind_a_zero_head_fails():
    model, x = make("residual")
    _tiny_head(model, 0.0)  # zero-initialised classifier (ViT): the outputs are exactly zero whatever is pruned
    graph = build_channel_graph(model, x)
    assert graph.output_layers == ["fc"]
    removed = {"b2.0.0:out": [0, 1, 2]}
    wrong = _wrong_prune(model, graph, "b2.0.0:out", removed, [3, 4, 5])
    eq = equivalence(model, graph, removed, x, pruned=wrong)
    assert eq.max_abs_diff == 0.0 and eq.degenerate >= 1 and eq.probes >= 1
    assert eq.max_rel_diff > 1e-3  # the features the head reads tell the truth
    assert equivalence(model, graph, removed, x).max_rel_diff < 1e-12


def test_apply_plan_passes_a_right_prune_of_a_zero_head_vit():
    model, x = make_real("vit")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    graph = build_channel_graph(model, x[:1])
    gid = "encoder.layers.0.linear1:out"
    report = apply_plan(copy.deepcopy(model), PruningPlan.from_kept(graph, {gid: list(range(0, 32, 2))}), x, graph=graph)
    assert report.max_abs_diff == 0.0 and report.max_rel_diff is not None and report.max_rel_diff < 1e-12


def test_apply_plan_refuses_when_nothing_can_be_compared():
    model, x = make("residual")
    graph = build_channel_graph(model, x)
    zero = torch.zeros_like(x)
    with torch.no_grad():  # zero input and no biases before the head: every probe is exactly zero
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.zero_()
                m.running_mean.zero_()
        model.fc.bias.zero_()
    with pytest.raises(RuntimeError, match="cannot verify"):
        apply_plan(copy.deepcopy(model), PruningPlan.from_kept(graph, {"b1.0.0:out": [0, 1, 2]}), zero, graph=graph)


def test_apply_plan_passes_a_right_prune_of_a_huge_output_model_and_refuses_a_wrong_one():
    # logits of 1e10 and more (an untrained network, BatchNorm statistics at their initial values): float64
    # rounding alone is 1e-5 absolute there, so the absolute bound must grow with the outputs (torch.allclose)
    model, x = make("residual")
    _tiny_head(model, 1e12)
    graph = build_channel_graph(model, x)
    removed = {"b1.0.0:out": [0, 1]}
    plan = PruningPlan.from_kept(graph, {"b1.0.0:out": [i for i in range(graph["b1.0.0:out"].width) if i > 1]})
    report = apply_plan(copy.deepcopy(model), plan, x, graph=graph)
    assert report.max_rel_diff < 1e-12
    eq = equivalence(model, graph, removed, x)
    assert eq.output_scale > 1e9 and eq.max_rel_diff < 1e-12
    wrong = _wrong_prune(model, graph, "b1.0.0:out", removed, [2, 3])
    assert equivalence(model, graph, removed, x, pruned=wrong).max_rel_diff > 1e-3  # still caught, relatively


def test_a_pruned_model_that_outputs_nan_fails():
    model, x = make("residual")
    graph = build_channel_graph(model, x)
    removed = {"b1.0.0:out": [0, 1]}
    broken = remove_channels(copy.deepcopy(model), graph, removed)
    with torch.no_grad():
        broken.fc.bias[0] = float("nan")
    eq = equivalence(model, graph, removed, x, pruned=broken)
    assert eq.max_rel_diff == float("inf") and eq.max_abs_diff == float("inf")
    assert equivalence(model, graph, removed, x).max_rel_diff < 1e-12

