"""Policy: scores + MACs target -> kept channels, landing in [R, R + 1 point] or failing with the reason."""
import copy
import math

import pytest
import torch

from fixtures.topologies import TOPOLOGIES, make, zoo_case
from secateurs.flops import count_model
from secateurs.graph import build_channel_graph
from secateurs.structured import (
    PruningPlan, SelectionError, apply_plan, channel_scores, compose_plans, max_reduction, select_channels,
)

MODELS = ["resnet56", "vgg16", "mobilenetv2"]


def _scores(name, criterion):
    model, x, graph, shape = zoo_case(name)
    data = [(torch.randn(4, *shape, generator=torch.Generator().manual_seed(1)), torch.arange(4) % 10)]
    return channel_scores(model, graph, criterion, data=data, seed=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("criterion", ["l1", "l2", "bn", "taylor", "random"])
def test_each_criterion_hits_the_target_within_one_point(name, criterion):
    graph = zoo_case(name)[2]
    scores = _scores(name, criterion)
    for scope in ("global", "local"):
        for target in (0.3, 0.5, 0.7):
            sel = select_channels(graph, scores, target, scope=scope)
            assert target <= sel.reduction <= target + 0.01, (scope, target, sel.reduction)
            assert sel.plan.meta["achieved"] == pytest.approx(sel.reduction)


@pytest.mark.parametrize("name", MODELS)
def test_selection_macs_are_the_pruned_models_macs(name):
    model, x, graph, shape = zoo_case(name)
    sel = select_channels(graph, _scores(name, "l1"), 0.5, round_to=4)
    pruned = copy.deepcopy(model)
    report = apply_plan(pruned, sel.plan, x, graph=graph)  # verifies outputs against the masked model too
    assert report.macs_after == sel.macs == count_model(pruned, shape).macs
    assert sel.macs_dense == count_model(model, shape).macs


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_fast_search_is_exact_on_every_coupling_pattern(topology):
    # splits, concatenations, flattens, depthwise: the search's MACs must equal the physically pruned model's
    model, x = make(topology)
    graph = build_channel_graph(model, x)
    if not graph.prunable_groups():
        pytest.skip("no prunable group")
    scores = channel_scores(model, graph, "random")
    best = max_reduction(graph)
    sel = select_channels(graph, scores, best / 2, tolerance=1.0)
    report = apply_plan(copy.deepcopy(model), sel.plan, x, graph=graph)
    assert report.macs_after == sel.macs


def test_highest_scores_are_kept():
    graph = zoo_case("vgg16")[2]
    scores = _scores("vgg16", "l1")
    sel = select_channels(graph, scores, 0.5)
    for gid, kept in sel.plan.groups.items():
        s = scores[gid]
        dropped = sorted(set(range(len(s))) - set(kept))
        assert s[kept].min() >= s[dropped].max()


def test_local_prunes_the_same_fraction_everywhere():
    graph = zoo_case("resnet56")[2]
    sel = select_channels(graph, _scores("resnet56", "l1"), 0.5, scope="local")
    fractions = {g.id: 1 - sel.widths[g.id] / g.width for g in graph.prunable_groups()}
    steps = {g.id: 1 / g.width for g in graph.prunable_groups()}
    lo, hi = min(fractions.values()), max(fractions.values())
    assert hi - lo <= max(steps.values()) + 1e-9, fractions


def test_global_normalises_scores_per_group():
    graph = zoo_case("resnet56")[2]
    scores = _scores("resnet56", "l1")
    big = next(g.id for g in graph.prunable_groups())
    scaled = {g: s * 1000 if g == big else s for g, s in scores.items()}
    a = select_channels(graph, scores, 0.5)
    b = select_channels(graph, scaled, 0.5)
    assert a.plan.groups == b.plan.groups  # dividing by the group mean removes the scale
    raw = select_channels(graph, scaled, 0.5, normalize=None)
    assert len(raw.plan.groups.get(big, range(raw.widths[big]))) == graph[big].width  # unnormalised: never pruned
    assert a.widths[big] < graph[big].width


def test_min_channels_and_infeasible_request():
    graph = zoo_case("resnet56")[2]
    scores = _scores("resnet56", "l1")
    sel = select_channels(graph, scores, 0.7, min_channels=6)
    assert all(sel.widths[g.id] >= 6 for g in graph.prunable_groups())
    best = max_reduction(graph, min_channels=12)
    with pytest.raises(SelectionError, match=rf"beyond what min_channels=12 allows: at most {best:.2%}"):
        select_channels(graph, scores, best + 0.01, min_channels=12)
    sel = select_channels(graph, scores, math.floor(best * 100) / 100 - 0.01, min_channels=12)
    assert all(sel.widths[g.id] >= 12 for g in graph.prunable_groups())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("scope", ["global", "local"])
def test_round_to_keeps_multiples_and_stays_in_the_window(name, scope):
    graph = zoo_case(name)[2]
    for k in (4, 8):
        for target in (0.3, 0.5):
            sel = select_channels(graph, _scores(name, "l1"), target, scope=scope, round_to=k)
            assert target <= sel.reduction <= target + 0.01
            for g in graph.prunable_groups():
                w = sel.widths[g.id]
                assert w == g.width or w % k == 0, (g.id, w)


def test_flooring_widths_afterwards_would_overshoot():
    # what round_to in the search avoids: rounding each group's width down after the selection (Torch-Pruning)
    model, x, graph, _ = zoo_case("resnet56")
    sel = select_channels(graph, _scores("resnet56", "l1"), 0.3, scope="local")
    from secateurs.cost.macs import MacsModel

    floored = {g: kept[len(kept) % 8:] if len(kept) >= 8 else kept for g, kept in sel.plan.groups.items()}
    overshoot = 1 - MacsModel(graph).exact(floored) / sel.macs_dense
    assert overshoot > 0.3 + 0.05
    rounded = select_channels(graph, _scores("resnet56", "l1"), 0.3, scope="local", round_to=8)
    assert 0.3 <= rounded.reduction <= 0.31


def test_coarse_widths_fail_with_the_reachable_values():
    from fixtures.user_models import tiny

    model = tiny(num_classes=10, in_channels=1)  # one prunable group of 8 channels, 12.5% of MACs each
    x = torch.randn(1, 1, 8, 8)
    graph = build_channel_graph(model, x)
    scores = channel_scores(model, graph, "l1")
    assert select_channels(graph, scores, 0.5 * (1 - 80 / 4688)).plan.groups  # 4 of 8 channels: in the window
    with pytest.raises(SelectionError, match=r"cannot land within 1% of a 30.0% MACs reduction.*reach"):
        select_channels(graph, scores, 0.3)


def test_zero_target_and_bad_arguments():
    graph = zoo_case("vgg16")[2]
    scores = _scores("vgg16", "random")
    sel = select_channels(graph, scores, 0.0)
    assert sel.plan.groups == {} and sel.macs == sel.macs_dense
    for kw, msg in [(dict(flops_reduction=1.0), "flops_reduction"), (dict(flops_reduction=0.5, scope="x"), "scope"),
                    (dict(flops_reduction=0.5, round_to=0), "round_to"),
                    (dict(flops_reduction=0.5, min_channels=0), "min_channels")]:
        with pytest.raises(ValueError, match=msg):
            select_channels(graph, scores, **kw)
    with pytest.raises(ValueError, match="have 3 entries"):
        select_channels(graph, {graph.prunable_groups()[0].id: torch.ones(3)}, 0.1)


def test_composed_plan_replays_two_prunes_on_a_fresh_model():
    model, x, graph, _ = zoo_case("resnet56")
    once = copy.deepcopy(model)
    first = select_channels(graph, _scores("resnet56", "l1"), 0.3).plan
    apply_plan(once, first, x, graph=graph)
    g2 = build_channel_graph(once, x)
    second = select_channels(g2, channel_scores(once, g2, "l1"), 0.3).plan
    apply_plan(once, second, x, graph=g2)
    fresh = copy.deepcopy(model)
    apply_plan(fresh, PruningPlan.from_dict(compose_plans(first, second).to_dict()), x, graph=graph)
    a, b = once.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
