"""The differentiable MACs model equals the exact counter at full width and at hard 0/1 selections."""
import copy
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fixtures.topologies import TOPOLOGIES, ZOO_FAST, ZOO_SLOW, make, zoo_case
from secateurs.flops import count_model
from secateurs.graph import build_channel_graph, remove_channels
from secateurs.cost.macs import MacsModel


def exact_macs(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model(x)
    return c.get_total_flops() // 2 // x.shape[0]


def hard_gates(graph, seed):
    rng = random.Random(seed)
    gates, removed = {}, {}
    for g in graph.prunable_groups():
        keep = rng.sample(range(g.width), rng.randint(1, g.width))
        v = torch.zeros(g.width, dtype=torch.float64)
        v[keep] = 1
        gates[g.id] = v
        removed[g.id] = sorted(set(range(g.width)) - set(keep))
    return gates, removed


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_full_and_hard_selection_match_exact(name):
    model, x = make(name)
    graph = build_channel_graph(model, x)
    soft = MacsModel(graph)
    assert float(soft()) == exact_macs(model, x) == soft.dense
    ones = {g.id: torch.ones(g.width, dtype=torch.float64) for g in graph.prunable_groups()}
    assert float(soft(ones)) == soft.dense
    for seed in range(3):
        gates, removed = hard_gates(graph, seed)
        pruned = remove_channels(copy.deepcopy(model), graph, removed)
        assert float(soft(gates)) == exact_macs(pruned, x)


def test_gradients_bilinear_depthwise_and_scalars():
    model, x = make("depthwise")
    soft = MacsModel(build_channel_graph(model, x))
    lam = {g: torch.full((w,), 0.5, dtype=torch.float64, requires_grad=True) for g, w in soft.widths.items()}
    soft(lam).backward()
    assert all(v.grad is not None and (v.grad > 0).all() for v in lam.values())
    # depthwise conv scales with ONE count: with the stream group fixed, F is affine in the expansion's count
    f = [float(soft({"expand.0:out": torch.tensor(c, dtype=torch.float64)})) for c in (4.0, 8.0, 12.0)]
    assert f[2] - f[1] == pytest.approx(f[1] - f[0])
    # the stream group is read by expand (in) and written by project (out): bilinear in the two counts
    def F(a, b):
        return float(soft({"stem.0:out": torch.tensor(a, dtype=torch.float64),
                           "expand.0:out": torch.tensor(b, dtype=torch.float64)}))
    assert F(8, 16) - F(4, 16) != pytest.approx(F(8, 8) - F(4, 8))
    # scalar soft count == per-channel vector with the same sum, for uniformly read groups (flatten: 16 per channel)
    m2, x2 = make("flatten_linear")
    s2 = MacsModel(build_channel_graph(m2, x2))
    v = torch.tensor([1.0, 0.2, 0.7, 0.0, 0.5], dtype=torch.float64)
    assert float(s2({"c2:out": v})) == pytest.approx(float(s2({"c2:out": v.sum()})))
    with pytest.raises(ValueError, match="shape"):
        s2({"c2:out": torch.ones(3)})
    with pytest.raises(KeyError):
        s2({"fc2:out": torch.ones(5)})


@pytest.mark.parametrize("name", ZOO_FAST + [pytest.param(n, marks=pytest.mark.slow) for n in ZOO_SLOW])
def test_zoo_soft_macs_match_counter(name):
    model, x, graph, shape = zoo_case(name)
    soft = MacsModel(graph)
    assert float(soft()) == count_model(model, shape).macs
    gates, removed = hard_gates(graph, seed=1)
    pruned = remove_channels(copy.deepcopy(model), graph, removed)
    assert float(soft(gates)) == count_model(pruned, shape).macs
