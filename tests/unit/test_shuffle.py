"""Pruning through channel shuffles (ShuffleNetV2: chunk(2, 1) + concat + view/transpose/view), issue 10.3b: the
shuffled trunk's channels are tied at equal positions of the shuffle's blocks and the chunk's pieces, across the
branches that feed it, and pruned symmetrically."""
import copy
import random

import pytest
import torch
import torch.nn as nn

from fixtures.real_world import TinyShuffleNet, channel_shuffle, make
from secateurs.flops import count_model
from secateurs.graph import build_channel_graph
from secateurs.cost.macs import MacsModel
from secateurs.structured import PruningPlan, apply_plan, mask_model

TRUNK = ["stage.0.branch1.2", "stage.0.branch2.5", "stage.1.branch2.5", "stage.2.branch2.5"]


def test_the_shuffled_trunk_is_one_prunable_group():
    model, x = make("shufflenet")
    graph = build_channel_graph(model, x)
    trunk = graph["stage.0.branch1.2:out"]
    assert trunk.prunable, trunk.reason
    assert {m.module for m in trunk.members if m.kind == "out"} == set(TRUNK)  # both branches of every unit
    assert trunk.width >= 2 and all(f"{n}:out" not in graph for n in TRUNK[1:])
    assert all(g.prunable for g in graph.groups if g.id != "fc:out")
    assert not [op for op, why in graph.unprunable if "Torch-Pruning cannot map" in why]


@pytest.mark.parametrize("c", [8, 16])
@pytest.mark.parametrize("seed", [0, 1])
def test_pruning_the_trunk_equals_masking_it(c, seed):
    torch.manual_seed(seed)
    model, x = TinyShuffleNet(c=c).eval(), torch.randn(2, 3, 8, 8)
    graph = build_channel_graph(model, x)
    rng = random.Random(seed)
    kept = {g.id: sorted(rng.sample(range(g.width), rng.randint(1, g.width - 1))) for g in graph.prunable_groups()}
    plan = PruningPlan.from_kept(graph, kept)
    x3 = torch.randn(3, 3, 8, 8)
    with torch.no_grad(), mask_model(model, graph, plan):
        masked = model(x3)
    pruned = copy.deepcopy(model)
    report = apply_plan(pruned, plan, x, graph=graph)  # verified: MACs, params, scale-aware equivalence
    trunk = graph["stage.0.branch1.2:out"]
    kept_frac = len(kept[trunk.id]) / trunk.width
    assert pruned.stage[0].branch1[2].out_channels == int(c * kept_frac)
    assert pruned.conv5[0].in_channels == int(2 * c * kept_frac)
    assert report.macs_after == count_model(pruned, (3, 8, 8)).macs
    with torch.no_grad():
        assert torch.allclose(pruned(x3), masked, atol=1e-5)
    soft = MacsModel(graph)
    assert soft.exact(plan.groups) == report.macs_after


class _ThreeWayShuffle(nn.Module):
    """Three branches concatenated and shuffled in three groups, read by one conv."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (nn.Conv2d(3, 4, 3, padding=1) for _ in range(3))
        self.d = nn.Conv2d(12, 6, 1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        y = channel_shuffle(torch.cat([self.a(x), self.b(x), self.c(x)], 1), 3)
        return self.fc(torch.relu(self.d(torch.relu(y))).mean((2, 3)))


def test_a_three_group_shuffle_ties_the_three_branches():
    torch.manual_seed(0)
    model, x = _ThreeWayShuffle().eval(), torch.randn(2, 3, 8, 8)
    graph = build_channel_graph(model, x)
    g = graph["a:out"]
    assert g.prunable and g.width == 4 and "b:out" not in graph and "c:out" not in graph
    pruned = copy.deepcopy(model)
    apply_plan(pruned, PruningPlan.from_kept(graph, {g.id: [0, 3]}), x, graph=graph)
    assert (pruned.a.out_channels, pruned.b.out_channels, pruned.c.out_channels, pruned.d.in_channels) == (2, 2, 2, 6)
