"""The front door ``structured.prune``, the one ``Target`` (budget window [R, R + tol]) and the one cost-model
interface every selection strategy prices with."""
import copy

import pytest
import torch

from fixtures.topologies import make, zoo_case
from secateurs.cost import CostModel, MacsModel
from secateurs.data import get_dataset
from secateurs.errors import ArgumentError, InputError, UnreachableTargetError
from secateurs.flops import count_model
from secateurs.graph import build_channel_graph
from secateurs.structured import (
    AutoBotConfig, Target, TargetError, apply_plan, autoprune, channel_scores, max_reduction, prune,
    search_threshold, select_channels,
)
from secateurs.structured.target import target_from_keywords


def test_target_window_is_a_budget():
    t = Target(0.3, 0.01)
    assert t.budget(1000) == pytest.approx(700) and t.floor(1000) == pytest.approx(690)
    assert t.contains(700, 1000) and t.contains(690, 1000)
    assert not t.contains(701, 1000) and not t.contains(689, 1000)  # R is a ceiling on what is kept
    with pytest.raises(ValueError, match="flops_reduction must be in"):
        Target(1.2)
    assert target_from_keywords(flops_reduction=0.5) == Target(0.5, 0.01, "macs", "flops_reduction")
    with pytest.raises(TypeError, match="exactly one target"):
        target_from_keywords()


def test_unreachable_target_error_carries_argument_and_reachable_maximum():
    graph = zoo_case("resnet56")[2]
    best = max_reduction(graph)
    with pytest.raises(TargetError) as exc:
        select_channels(graph, channel_scores(zoo_case("resnet56")[0], graph, "l1"), min(0.999, best + 0.05))
    e = exc.value
    assert isinstance(e, UnreachableTargetError) and isinstance(e, InputError)
    assert e.argument == "flops_reduction" and e.reachable == pytest.approx(best)
    assert str(e).startswith("flops_reduction ") and e.describe("--flops-reduction").startswith("--flops-reduction ")
    # AutoBot's strategy raises the same type through the same check
    with pytest.raises(TargetError) as exc:
        search_threshold({g.id: torch.rand(g.width, dtype=torch.float64) for g in graph.prunable_groups()},
                         MacsModel(graph), 0.999)
    assert exc.value.reachable is not None and exc.value.reachable < 0.999


def test_a_cost_the_widths_do_not_move_is_refused_in_words_not_as_at_most_zero():
    class Flat(CostModel):  # a launch-bound GPU's latency model: the same ms at every width
        name, unit, dense, constant, widths = "latency", "ms", 2.5, 2.5, {"g0": 8, "g1": 16}

        def soft(self, gates=None):
            return torch.tensor(2.5, dtype=torch.float64)

        def exact(self, kept):
            return 2.5

    with pytest.raises(TargetError) as exc:
        Target(0.3, 0.05, "latency", "latency_reduction").check_reachable(Flat(), {"g0": [0], "g1": [0]},
                                                                          "min_channels=1")
    msg = str(exc.value)
    assert msg.startswith("latency_reduction 0.3: a 30.0% latency reduction is out of reach: with 2 prunable groups")
    assert "predicts no reduction of the 2.5 ms at all" in msg and "at most" not in msg
    assert exc.value.reachable == 0.0


class _Delegating(CostModel):
    """A cost model that is not a MacsModel (so selection takes the generic path) but prices MACs."""

    name, unit = "macs", "MACs"

    def __init__(self, inner: MacsModel):
        self.inner, self.widths, self.dense, self.constant = inner, inner.widths, inner.dense, inner.constant
        self.calls = 0

    def soft(self, gates=None):
        return self.inner.soft(gates)

    def exact(self, kept):
        self.calls += 1
        return self.inner.exact(kept)

    def per_channel(self):
        return self.inner.per_channel()


@pytest.mark.parametrize("scope", ["global", "local"])
def test_selection_takes_any_cost_model(scope):
    model, x, graph, shape = zoo_case("vgg16")
    scores = channel_scores(model, graph, "l1")
    fast = select_channels(graph, scores, 0.4, scope=scope)
    generic_cost = _Delegating(MacsModel(graph))
    generic = select_channels(graph, scores, 0.4, scope=scope, cost=generic_cost)
    assert generic_cost.calls > 1 and generic.kept == fast.kept and generic.cost == fast.cost
    assert 0.4 <= generic.reduction <= 0.41 and generic.method == scope


def test_front_door_criterion_equals_select_then_apply():
    model, x, graph, shape = zoo_case("resnet56")
    data = [(torch.randn(4, *shape, generator=torch.Generator().manual_seed(1)), torch.arange(4) % 10)]
    by_hand = copy.deepcopy(model)
    sel = select_channels(graph, channel_scores(by_hand, graph, "taylor", data=data), 0.5, scope="local")
    apply_plan(by_hand, sel.plan, x, graph=graph)
    pruned = copy.deepcopy(model)
    result = prune(pruned, data, flops_reduction=0.5, method="taylor", scope="local", example_inputs=x)
    assert result.plan.groups == sel.plan.groups and result.selection.kept == sel.kept
    assert result.report.macs_after == count_model(pruned, shape).macs == sel.cost
    s = result.summary()
    assert 0.5 <= s["flops_reduction"] <= 0.51 and s["requested_flops_reduction"] == 0.5
    assert s["widths"] == sel.widths and s["accuracy"] is None  # batches, not a DataSplits: nothing evaluated
    for a, b in zip(pruned.state_dict().values(), by_hand.state_dict().values()):
        assert torch.equal(a, b)


def test_front_door_autobot_equals_autoprune_and_names_bad_arguments():
    data = get_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    config = AutoBotConfig(batches=4, batch_size=16)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    direct = autoprune(a, data, 0.4, config=config, progress=False)
    result = prune(b, data, flops_reduction=0.4, method="autobot", config=config, progress=False)
    assert result.plan.groups == direct.plan.groups and result.autobot.selection.method == direct.selection.method
    assert result.accuracy == direct.accuracy and result.accuracy_dense == direct.accuracy_source
    assert 0.4 <= result.summary()["flops_reduction"] <= 0.4 + config.tolerance
    with pytest.raises(ArgumentError) as exc:  # no BatchNorm in an MLP: the method, not the code, is at fault
        prune(copy.deepcopy(model), data, flops_reduction=0.4, method="bn")
    assert exc.value.argument == "method" and exc.value.value == "bn"
    untouched = copy.deepcopy(model)
    with pytest.raises(ArgumentError) as exc:  # a floor as wide as every group: the floor is at fault
        prune(untouched, data, flops_reduction=0.4, method="l1", min_channels=32)
    assert exc.value.argument == "min_channels" and "widest of the 1 prunable groups has 32" in str(exc.value)
    assert all(torch.equal(p, q) for p, q in zip(untouched.parameters(), model.parameters()))
    assert prune(copy.deepcopy(model), data, flops_reduction=0.09, method="l1", min_channels=16).plan.groups
    assert not prune(copy.deepcopy(model), data, flops_reduction=0.0, method="l1", min_channels=32).plan.groups
    with pytest.raises(ArgumentError) as exc:  # 25..31 holds no multiple of 8: the rounding is at fault
        prune(copy.deepcopy(model), data, flops_reduction=0.2, method="l1", min_channels=25, round_to=8)
    assert exc.value.argument == "round_to" and "floor of 25 channels" in str(exc.value)


def test_cost_model_interface_of_macs():
    model, x = make("residual")
    graph = build_channel_graph(model, x[:1])
    cost = MacsModel(graph)
    assert isinstance(cost, CostModel) and cost.name == "macs" and cost.unit == "MACs"
    assert float(cost.soft()) == cost.exact({}) == cost.dense
    gid = next(iter(cost.widths))
    kept = {gid: [0]}
    assert cost.reduction(kept) == pytest.approx(1 - cost.exact(kept) / cost.dense) and cost.reduction(kept) > 0


class _Pricey(_Delegating):
    """MACs, except that every channel of one group costs ``factor`` times as much: a stand-in latency model."""

    name, unit = "latency", "ms"

    def __init__(self, inner: MacsModel, group: str, factor: float):
        super().__init__(inner)
        self.group, self.factor = group, factor
        self.dense = self.exact({})

    def exact(self, kept):
        base = self.inner.exact(kept)
        width = self.inner.widths[self.group]
        return base + (self.factor - 1) * 1e5 * len(kept.get(self.group, range(width)))


def test_cost_weighted_ranking_removes_the_expensive_channels_first():
    model, x, graph, shape = zoo_case("vgg16")
    scores = channel_scores(model, graph, "l1")
    group = graph.prunable_groups()[2].id
    pricey = _Pricey(MacsModel(graph), group, 50.0)
    full = select_channels(graph, scores, 0.3, cost=pricey, cost_weight=1.0)
    half = select_channels(graph, scores, 0.3, cost=pricey, cost_weight=0.5)
    off = select_channels(graph, scores, 0.3, cost=pricey, cost_weight=0.0)
    width = off.widths[group]
    assert full.plan.meta["cost_weight"] == 1.0 and off.plan.meta["cost_weight"] == 0.0
    assert len(full.kept[group]) <= len(half.kept[group]) < len(off.kept.get(group, range(width)))
    for sel in (full, half, off):
        assert 0.3 <= sel.reduction <= 0.31
    # the defaults: 0 for MACs (Torch-Pruning's convention), LATENCY_COST_WEIGHT for any other cost
    from secateurs.structured.select.ranking import LATENCY_COST_WEIGHT

    assert select_channels(graph, scores, 0.3).plan.meta["cost_weight"] == 0.0
    assert select_channels(graph, scores, 0.3, cost=pricey).plan.meta["cost_weight"] == LATENCY_COST_WEIGHT
    with pytest.raises(ValueError, match="cost_weight"):
        select_channels(graph, scores, 0.3, cost_weight=1.5)
