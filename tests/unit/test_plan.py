"""Plans as data, surgery on fresh copies, and masked == physically pruned on every topology and zoo model."""
import copy
import json
import random

import pytest
import torch

from fixtures.topologies import TOPOLOGIES, ZOO_FAST, ZOO_SLOW, make, zoo_case
from secateurs.graph import build_channel_graph
from secateurs.structured import PruningPlan, apply_plan, diff, mask_model


def random_plan(graph, seed=0):
    rng = random.Random(seed)
    kept = {g.id: sorted(rng.sample(range(g.width), rng.randint(1, g.width - 1)))
            for g in graph.prunable_groups() if g.width > 1}
    return PruningPlan.from_kept(graph, kept, meta={"seed": seed})


def test_json_round_trip_and_diff():
    model, x = make("concat")
    graph = build_channel_graph(model, x)
    plan = random_plan(graph)
    back = PruningPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert back == plan and diff(plan, back) == {}
    other = random_plan(graph, seed=1)
    d = diff(plan, other)
    assert d and all(set(v) == {"a", "b", "only_a", "only_b"} for v in d.values())
    assert "channels kept" in plan.summary()
    with pytest.raises(ValueError, match="keeps no channel"):
        PruningPlan({"c:out": []}, {"c:out": 7})


def test_plan_applies_to_fresh_instance():
    model, x = make("residual")
    graph = build_channel_graph(model, x)
    plan = PruningPlan.from_dict(random_plan(graph).to_dict())
    a, b = copy.deepcopy(model), make("residual")[0]  # same seed: same weights, a separate object
    apply_plan(a, plan, x, graph=graph)
    apply_plan(b, plan, x)  # traces b itself: ids must match
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_masked_equals_pruned(name):
    model, x = make(name)
    graph = build_channel_graph(model, x)
    plan = random_plan(graph)
    with torch.no_grad(), mask_model(model, graph, plan):
        masked = model(x)
    report = apply_plan(model, plan, x, graph=graph)  # verifies MACs, params, float64 outputs itself
    with torch.no_grad():
        pruned = model(x)
    assert (pruned - masked).abs().max() <= 1e-5  # float32, as a user sees it
    if plan.removed():
        assert report.macs_after < report.macs_before and report.params_after < report.params_before


def test_bn_zeroing_at_producer_is_not_removal():
    # the reason gates sit at consumer inputs: zeroing the conv output leaks BN's shift into the next layer
    model, x = make("residual")
    graph = build_channel_graph(model, x)
    plan = PruningPlan.from_kept(graph, {"b1.0.0:out": [0, 1, 2]})
    hook = model.b1[0][0].register_forward_hook(lambda m, i, o: o * (torch.arange(8) < 3).view(1, -1, 1, 1))
    with torch.no_grad():
        zeroed = model(x)
    hook.remove()
    with torch.no_grad(), mask_model(model, graph, plan):
        masked = model(x)
    apply_plan(model, plan, x, graph=graph)
    with torch.no_grad():
        assert (model(x) - masked).abs().max() <= 1e-5 < (model(x) - zeroed).abs().max()


def test_apply_rejects_bad_plans():
    model, x = make("spatial_attention")
    graph = build_channel_graph(model, x)
    with pytest.raises(ValueError, match="not prunable"):
        apply_plan(model, PruningPlan.from_kept(graph, {"stem.0:out": [0, 1]}), x, graph=graph)
    with pytest.raises(ValueError, match="width"):
        apply_plan(model, PruningPlan({"body.0:out": [0]}, {"body.0:out": 9}), x, graph=graph)
    with pytest.raises(ValueError, match="not a group"):
        apply_plan(model, PruningPlan({"nope:out": [0]}, {"nope:out": 2}), x, graph=graph)


@pytest.mark.parametrize("name", ZOO_FAST + [pytest.param(n, marks=pytest.mark.slow) for n in ZOO_SLOW])
def test_zoo_masked_equals_pruned(name):
    model, x, graph, _ = zoo_case(name)
    model = copy.deepcopy(model)
    plan = random_plan(graph, seed=2)
    with torch.no_grad(), mask_model(model, graph, plan):
        masked = model(x)
    report = apply_plan(model, plan, x, graph=graph)
    assert report.max_abs_diff <= 1e-5  # float64
    with torch.no_grad():  # float32: round-off only (outputs reach ~50 with the randomised BN statistics)
        assert (model(x) - masked).abs().max() <= 1e-5 * max(1.0, float(masked.abs().max()))
    assert report.macs_after < report.macs_before
