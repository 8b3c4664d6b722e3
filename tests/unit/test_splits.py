"""Equal channel splits (``x.chunk(2, 1)``, CSP/GhostNet/ShuffleNetV2 style) are pruned symmetrically (issue 10.3b)."""
import copy
import random

import pytest
import torch

from fixtures.real_world import make
from secateurs.graph import build_channel_graph
from secateurs.structured import PruningPlan, apply_plan, mask_model


def test_chunked_producer_is_tied_per_half_and_prunable():
    model, x = make("csp")
    graph = build_channel_graph(model, x)
    cv1 = graph["cv1.0:out"]
    assert cv1.prunable and cv1.width == 4  # 8 channels chunked in halves: channel i tied to i + 4
    out = next(m for m in cv1.members if m.module == "cv1.0" and m.kind == "out")
    assert out.channels == (0, 1, 2, 3, 0, 1, 2, 3)
    assert all(g.prunable for g in graph.groups if g.id != "fc:out")


@pytest.mark.parametrize("seed", [0, 1])
def test_csp_masked_equals_pruned(seed):
    model, x = make("csp")
    graph = build_channel_graph(model, x)
    rng = random.Random(seed)
    plan = PruningPlan.from_kept(graph, {g.id: sorted(rng.sample(range(g.width), rng.randint(1, g.width - 1)))
                                         for g in graph.prunable_groups()})
    with torch.no_grad(), mask_model(model, graph, plan):
        masked = model(x)
    pruned = copy.deepcopy(model)
    apply_plan(pruned, plan, x, graph=graph)  # verified: MACs, params, scale-aware equivalence
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked, atol=1e-5)
    kept = len(plan.groups["cv1.0:out"])
    assert pruned.cv1[0].out_channels == 2 * kept and pruned.m[0][0].in_channels == kept


def test_split_sizes_written_in_code_are_caught_by_verification():
    model, x = make("csp_literal")  # x.split(4, 1): the same trace, but the sizes do not follow the width
    graph = build_channel_graph(model, x)
    assert not graph["cv1.0:out"].prunable and "breaks the forward pass" in graph["cv1.0:out"].reason
