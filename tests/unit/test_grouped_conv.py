"""Grouped convolutions are pruned group-consistently, and the result equals the masked model (issue 10.3)."""
import copy
import random

import pytest
import torch
import torch.nn as nn

from fixtures.real_world import make
from secateurs.graph import build_channel_graph
from secateurs.structured import PruningPlan, apply_plan, mask_model


def _random_plan(graph, seed):
    rng = random.Random(seed)
    kept = {g.id: sorted(rng.sample(range(g.width), rng.randint(1, g.width - 1)))
            for g in graph.prunable_groups() if g.width > 1}
    return PruningPlan.from_kept(graph, kept)


def test_resnext_groups_are_prunable():
    model, x = make("resnext")
    graph = build_channel_graph(model, x[:1])
    inner = [g for g in graph.groups if g.id != "fc:out"]
    assert all(g.prunable for g in inner), [(g.id, g.reason) for g in inner if not g.prunable]
    # width 12 in 3 conv groups: 4 ties of 3 channels (one per conv group)
    assert graph["blocks.0.a.0:out"].width == 4 and graph["blocks.0.b.0:out"].width == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resnext_masked_equals_pruned_and_groups_stay_valid(seed):
    model, x = make("resnext")
    graph = build_channel_graph(model, x[:1])
    plan = _random_plan(graph, seed)
    with torch.no_grad(), mask_model(model, graph, plan):
        masked = model(x)
    pruned = copy.deepcopy(model)
    report = apply_plan(pruned, plan, x, graph=graph)  # also checks predicted MACs/params against the real ones
    assert report.macs_after < report.macs_before
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked, atol=1e-5)
    for block, name in ((pruned.blocks[0], "blocks.0"), (pruned.blocks[1], "blocks.1")):
        conv = block.b[0]
        assert conv.groups == 3 and conv.in_channels % 3 == 0 and conv.out_channels % 3 == 0
        assert conv.in_channels == 3 * len(plan.groups.get(f"{name}.a.0:out", range(4)))
        assert conv.out_channels == 3 * len(plan.groups.get(f"{name}.b.0:out", range(4)))


class _ConcatIntoGrouped(nn.Module):
    """Two producers concatenated into a groups=4 conv: each covers only two of its conv groups, together all four.
    ``with_input``: the model input takes the first three channels instead (no group can tie those)."""

    def __init__(self, with_input: bool = False):
        super().__init__()
        self.with_input = with_input
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 5 if with_input else 4, 3, padding=1)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        cat = torch.cat([x, self.b(x)] if self.with_input else [self.a(x), self.b(x)], 1)
        return self.fc(self.g(torch.relu(cat)).mean((2, 3)))


class _TwoGroupings(nn.Module):
    """One tensor read by a groups=2 and a groups=4 conv: ties must satisfy both."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.g2, self.g4 = nn.Conv2d(8, 6, 3, padding=1, groups=2), nn.Conv2d(8, 8, 1, groups=4)
        self.fc = nn.Linear(14, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.fc(torch.cat([self.g2(x), self.g4(x)], 1).mean((2, 3)))


def test_producers_that_cover_a_grouped_conv_together_are_merged_and_prunable():
    torch.manual_seed(0)
    model, x = _ConcatIntoGrouped().eval(), torch.randn(2, 3, 8, 8)
    graph = build_channel_graph(model, x)
    merged = graph["a:out"]
    assert "b:out" not in graph and merged.prunable and merged.width == 2  # positions mod 2 of both producers
    assert {m.module for m in merged.members} >= {"a", "b", "g"}
    plan = PruningPlan.from_kept(graph, {merged.id: [1]})
    pruned = copy.deepcopy(model)
    apply_plan(pruned, plan, x, graph=graph)  # verified: masked == pruned
    assert (pruned.a.out_channels, pruned.b.out_channels, pruned.g.in_channels, pruned.g.groups) == (2, 2, 4, 4)


def test_partial_coverage_of_a_grouped_conv_is_refused_with_the_reason():
    model, x = _ConcatIntoGrouped(with_input=True).eval(), torch.randn(2, 3, 8, 8)
    graph = build_channel_graph(model, x)
    assert not graph["b:out"].prunable and "covers only part of its conv groups" in graph["b:out"].reason
    assert graph["g:out"].prunable


def test_two_groupings_of_one_tensor_tie_consistently():
    torch.manual_seed(0)
    model, x = _TwoGroupings().eval(), torch.randn(2, 3, 8, 8)
    graph = build_channel_graph(model, x)
    stem = graph["stem:out"]
    assert stem.prunable and stem.width == 2  # blocks of 4 (groups=2) and of 2 (groups=4): positions mod 2
    plan = PruningPlan.from_kept(graph, {stem.id: [1]})
    pruned = copy.deepcopy(model)
    apply_plan(pruned, plan, x, graph=graph)
    assert pruned.g2.in_channels == 4 and pruned.g4.in_channels == 4 and pruned.g4.groups == 4
