"""Free channels: on a staircase cost (a latency table in blocks of 8 channels) the criteria's ranking keeps the
channels whose removal saves nothing and still lands in the target's window; nothing changes for MACs."""
import math

import pytest
import torch

from fixtures.latency import macs_profile
from fixtures.topologies import zoo_case
from secateurs.cost.latency import LatencyModel
from secateurs.structured import channel_scores, select_channels
from secateurs.structured.latency import latency_target
from secateurs.structured.select._free import FREE_FRACTION, default_free, restore_free


def _stairs(widths):
    return float(sum(8 * math.ceil(w / 8) for w in widths))


def test_restore_free_raises_each_group_to_its_stair_top():
    allowed = [list(range(1, 17))] * 3
    assert restore_free([9, 3, 16], allowed, _stairs, 0.1) == [16, 8, 16]
    assert restore_free([9, 3, 16], allowed, _stairs, 0.0) == [9, 3, 16]
    linear = lambda ws: float(sum(ws))  # noqa: E731
    assert restore_free([9, 3, 5], allowed, linear, 0.5) == [9, 3, 5]  # every channel costs the group's mean
    # a step right above the width: the stair top is not free, nothing moves
    assert restore_free([8, 16], [list(range(1, 17))] * 2, _stairs, 0.1) == [8, 16]


def test_default_is_off_for_macs_and_checked():
    assert default_free(None, "MACs") == 0.0 and default_free(None, "ms") == FREE_FRACTION
    assert default_free(0.3, "MACs") == 0.3
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="free"):
            default_free(bad, "ms")


def _staircase_case():
    model, x, graph, _ = zoo_case("resnet56")
    cost = LatencyModel(graph, macs_profile(model, graph, tuple(x.shape[1:]), stairs=8))
    return model, graph, cost, channel_scores(model, graph, "l1")


def _mid_stair(graph, cost, kept):
    """Groups that could grow to the top of their stair (the next multiple of 8) at no cost."""
    out = []
    for g in graph.prunable_groups():
        k = kept.get(g.id)
        if k is None or len(k) % 8 == 0:
            continue
        top = min(g.width, 8 * math.ceil(len(k) / 8))  # the cost counts channels: any `top` of them will do
        if cost.exact({**kept, g.id: list(range(top))}) <= cost.exact(kept) + 1e-12:
            out.append(g.id)
    return out


@pytest.mark.parametrize("scope", ["global", "local"])
def test_ranking_keeps_free_channels_and_meets_the_window(scope):
    model, graph, cost, scores = _staircase_case()
    target = latency_target(cost, latency_reduction=0.4, tolerance=0.05)
    plain, freed = (select_channels(graph, scores, target, cost=cost, free=f, scope=scope) for f in (0.0, None))
    for sel in (plain, freed):
        assert sel.cost == pytest.approx(cost.exact(sel.kept), rel=1e-12)
        assert 0.4 <= sel.reduction <= 0.45 + 1e-9
    kept = lambda sel: sum(len(v) for v in sel.kept.values())  # noqa: E731
    assert kept(freed) > kept(plain)
    assert len(_mid_stair(graph, cost, freed.kept)) < len(_mid_stair(graph, cost, plain.kept))
    assert freed.plan.meta["free"] == 0.1 and plain.plan.meta["free"] == 0.0


def test_free_channels_respect_round_to():
    model, graph, cost, scores = _staircase_case()
    target = latency_target(cost, latency_reduction=0.4, tolerance=0.05)
    sel = select_channels(graph, scores, target, cost=cost, round_to=4)
    assert 0.4 <= sel.reduction <= 0.45 + 1e-9
    assert all(len(v) % 4 == 0 for v in sel.kept.values())


def test_macs_selections_are_unchanged():
    """MACs are linear in each group's width: even a large ``free`` finds no free channel."""
    model, x, graph, _ = zoo_case("resnet56")
    scores = channel_scores(model, graph, "l1")
    for scope in ("global", "local"):
        plain = select_channels(graph, scores, 0.3, scope=scope)
        assert plain.plan.meta["free"] == 0.0
        assert select_channels(graph, scores, 0.3, scope=scope, free=0.9).kept == plain.kept


def test_autobot_threshold_search_keeps_free_channels_only_when_asked():
    """AutoBot's search (scores as its gates would leave them: a group's ranking order, values in (0, 1)) keeps
    the paper's selection by default and, with ``free`` > 0, the free channels, still inside the window."""
    from secateurs.structured import search_threshold

    model, graph, cost, l1 = _staircase_case()
    scores = {g: s / s.max() for g, s in l1.items()}
    target = latency_target(cost, latency_reduction=0.4, tolerance=0.05)
    plain, freed = (search_threshold(scores, cost, target, free=f) for f in (0.0, 0.1))
    for sel in (plain, freed):
        assert sel.cost == pytest.approx(cost.exact(sel.kept), rel=1e-12)
        assert 0.4 <= sel.reduction <= 0.45 + 1e-9
    assert search_threshold(scores, cost, target).kept == plain.kept  # off unless asked
    kept = lambda sel: sum(len(v) for v in sel.kept.values())  # noqa: E731
    assert kept(freed) > kept(plain)
    assert len(_mid_stair(graph, cost, freed.kept)) < len(_mid_stair(graph, cost, plain.kept))
