"""Baseline structured criteria: one score per group channel, aggregated over the group's members."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fixtures.topologies import make, randomize_norms
from secateurs.graph import build_channel_graph
from secateurs.structured import CRITERIA, channel_scores


@pytest.fixture(scope="module")
def residual():
    model, x = make("residual")
    randomize_norms(model)
    model.eval()
    return model, x, build_channel_graph(model, x)


def test_every_criterion_scores_every_prunable_group(residual):
    model, x, graph = residual
    data = [(torch.randn(4, *x.shape[1:]), torch.randint(0, 5, (4,)))]
    for name in CRITERIA:
        scores = channel_scores(model, graph, name, data=data)
        assert set(scores) == {g.id for g in graph.prunable_groups()}
        for g in graph.prunable_groups():
            s = scores[g.id]
            assert s.shape == (g.width,) and s.dtype == torch.float64 and torch.isfinite(s).all() and (s >= 0).all()


def test_filter_norms_sum_over_every_producer_of_a_residual_group(residual):
    model, _, graph = residual
    # stem.0's channels are tied to b1.1's (identity shortcut); b2.1's to proj.0's (projection shortcut)
    l1 = channel_scores(model, graph, "l1")
    l2 = channel_scores(model, graph, "l2")
    w_stem, w_b1 = model.stem[0].weight, model.b1[1].weight
    assert torch.allclose(l1["stem.0:out"], (w_stem.abs().sum((1, 2, 3)) + w_b1.abs().sum((1, 2, 3))).double())
    assert torch.allclose(l2["stem.0:out"], (w_stem.pow(2).sum((1, 2, 3)) + w_b1.pow(2).sum((1, 2, 3))).sqrt().double())
    w_b2, w_proj = model.b2[1].weight, model.proj[0].weight
    assert torch.allclose(l1["b2.1:out"], (w_b2.abs().sum((1, 2, 3)) + w_proj.abs().sum((1, 2, 3))).double())
    # a plain chain: one producer
    assert torch.allclose(l1["b1.0.0:out"], model.b1[0][0].weight.abs().sum((1, 2, 3)).double())


def test_bn_scores_are_summed_abs_gammas(residual):
    model, _, graph = residual
    bn = channel_scores(model, graph, "bn")
    assert torch.allclose(bn["stem.0:out"], (model.stem[1].weight.abs() + model.b1[2].weight.abs()).double())
    assert torch.allclose(bn["b1.0.0:out"], model.b1[0][1].weight.abs().double())


def test_bn_without_batchnorm_names_the_groups():
    model, x = make("mlp")
    graph = build_channel_graph(model, x)
    with pytest.raises(ValueError, match=r"needs an affine BatchNorm.*have none: .*:out"):
        channel_scores(model, graph, "bn")


def test_taylor_equals_activation_times_gradient_at_the_consumer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 5))
    randomize_norms(model)
    model.eval()
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 5, (8,))
    graph = build_channel_graph(model, x[:1])
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    got = channel_scores(model, graph, "taylor", data=batches)

    # independent: retain the gradient of the consumer's input, |sum a * dL/da| per channel, mean over batches
    want = torch.zeros(6, dtype=torch.float64)
    for xb, yb in batches:
        a = model[:3](xb)
        a.retain_grad()
        F.cross_entropy(model[3:](a), yb).backward()
        want += (a * a.grad).sum((0, 2, 3)).abs().double()
    assert torch.allclose(got["0:out"], want / 2, rtol=1e-4, atol=1e-8)
    assert not model.training


def test_taylor_leaves_parameters_without_gradients_and_restores_mode(residual):
    model, x, graph = residual
    model.train()
    try:
        channel_scores(model, graph, "taylor", data=[(torch.randn(2, *x.shape[1:]), torch.tensor([0, 1]))])
        assert model.training
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()
    with pytest.raises(ValueError, match="needs data"):
        channel_scores(model, graph, "taylor")


def test_random_is_seeded(residual):
    model, _, graph = residual
    a, b = channel_scores(model, graph, "random", seed=3), channel_scores(model, graph, "random", seed=3)
    c = channel_scores(model, graph, "random", seed=4)
    assert all(torch.equal(a[g], b[g]) for g in a) and not all(torch.equal(a[g], c[g]) for g in a)
    with pytest.raises(ValueError, match="unknown criterion 'nope'"):
        channel_scores(model, graph, "nope")
