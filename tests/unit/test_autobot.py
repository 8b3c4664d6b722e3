"""AutoBot pieces: loss terms, F(λ=1) = exact MACs, frozen training, the best-score rule, the threshold search."""
import copy
import math

import pytest

from secateurs.structured.target import TargetError
import torch

from fixtures.topologies import make, zoo_case
from secateurs.flops import count_macs
from secateurs.graph import build_channel_graph
from secateurs.cost.macs import MacsModel
from secateurs.structured.autobot import (
    AutoBotConfig, Bottlenecks, best_window_start, binarization_loss, flops_loss, search_threshold,
    train_bottlenecks, training_batches,
)


def test_flops_loss_piecewise_linear():
    T, Fmax = 40.0, 100.0
    at = lambda f: float(flops_loss(torch.tensor(f, dtype=torch.float64), T, Fmax))  # noqa: E731
    assert at(T) == 0 and at(Fmax) == 1 and at(0.0) == 1
    assert at(70.0) == pytest.approx(0.5) and at(20.0) == pytest.approx(0.5)
    f = torch.tensor(70.0, dtype=torch.float64, requires_grad=True)
    flops_loss(f, T, Fmax).backward()
    assert float(f.grad) == pytest.approx(1 / (Fmax - T))  # above T: pushes F down
    f = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)
    flops_loss(f, T, Fmax).backward()
    assert float(f.grad) == pytest.approx(-1 / T)  # below T: pushes F up
    with pytest.raises(ValueError, match="target MACs"):
        flops_loss(torch.tensor(1.0), Fmax, Fmax)


def test_binarization_loss_values_and_direction():
    a = torch.tensor([0.5, 0.9], requires_grad=True)
    b = torch.tensor([0.1, 1.0, 0.0, 0.25], requires_grad=True)
    loss = binarization_loss({"a": a, "b": b})
    assert float(loss.detach()) == pytest.approx(((0.5 + 0.1) / 2 + (0.1 + 0 + 0 + 0.25) / 4) / 2)
    loss.backward()
    assert a.grad[1] < 0 and b.grad[0] > 0 and b.grad[3] > 0  # descent moves 0.9 up, 0.1 and 0.25 down


@pytest.mark.parametrize("name", ["residual", "concat", "depthwise", "flatten_linear"])
def test_soft_macs_at_full_scores_equals_exact_counter(name):
    model, x = make(name)
    graph = build_channel_graph(model, x[:1])
    soft = MacsModel(graph)
    bn = Bottlenecks(graph, init=0.9)
    ones = {g: torch.ones_like(s) for g, s in bn.scores().items()}
    assert round(float(soft(ones))) == count_macs(model, x.shape[1:]) == soft.dense
    assert float(soft(bn.scores()).detach()) < soft.dense  # λ = 0.9 < 1: the soft count is below the dense count


def test_soft_macs_full_scores_zoo_resnet20():
    model, x, graph, shape = zoo_case("resnet20")
    soft = MacsModel(graph)
    ones = {g: torch.ones(w, dtype=torch.float64) for g, w in soft.widths.items()}
    assert round(float(soft(ones))) == count_macs(model, shape)


def test_best_window_start():
    assert best_window_start(200, 0.4) == 120
    assert best_window_start(10, 0.4) == 6
    assert best_window_start(1, 0.4) == 0
    assert best_window_start(3, 1.0) == 0


def _tiny_data(x, n=8, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *x.shape[1:], generator=g), torch.randint(0, classes, (n,), generator=g))
            for _ in range(3)]


def _train(model, graph, data, steps, **kw):
    soft = MacsModel(graph)
    bn = Bottlenecks(graph)
    run = train_bottlenecks(model, bn, soft, training_batches(data, 8, 0), steps=steps,
                            target_macs=0.5 * soft.dense, beta=6.0, gamma=0.2, lr=0.5, progress=False, **kw)
    return run, bn


def test_frozen_eval_mode_and_clean_removal():
    model, x = make("residual")
    model.train()
    model.fc.bias.requires_grad_(False)  # flags are restored, not set to True
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    state = copy.deepcopy(model.state_dict())
    graph = build_channel_graph(model, x[:1])
    run, bn = _train(model, graph, _tiny_data(x), steps=5)
    after = model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], state[k]) for k in state)  # weights and BN running stats untouched
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # mode restored
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    alpha0 = math.log(0.9 / 0.1)
    assert all(not torch.allclose(a, torch.full_like(a, alpha0)) for a in bn.alphas.values())  # all trained
    assert set(run.scores) == {g.id for g in graph.prunable_groups()}


def test_progress_bar_shows_loss_terms_and_soft_macs(capsys):
    model, x = make("concat")
    graph = build_channel_graph(model, x[:1])
    soft = MacsModel(graph)
    train_bottlenecks(model, Bottlenecks(graph), soft, training_batches(_tiny_data(x), 8, 0), steps=3,
                      target_macs=0.5 * soft.dense, beta=6.0, gamma=0.2, lr=0.5, progress=True)
    err = capsys.readouterr().err
    assert all(k in err for k in ("bottlenecks", "ce=", "l_f=", "l_b=", "macs="))  # the bar's postfix
    assert "best step" in err and "soft MACs" in err  # the closing line


def test_best_score_rule_keeps_scores_of_lowest_loss_step_in_last_40_percent():
    model, x = make("residual")
    graph = build_channel_graph(model, x[:1])
    data = _tiny_data(x)
    run, _ = _train(model, graph, data, steps=10)
    window = [r["loss"] for r in run.history[6:]]
    assert 6 <= run.best_step < 10 and run.best_loss == min(window) == run.history[run.best_step]["loss"]
    # the kept scores are those the best step's loss was computed with: the state after best_step updates
    _, bn = _train(model, graph, data, steps=run.best_step)
    for g, a in run.alphas.items():
        torch.testing.assert_close(bn.alphas[g].detach().double(), a, rtol=0, atol=1e-6)
    assert torch.allclose(run.scores[next(iter(run.scores))], run.alphas[next(iter(run.alphas))].sigmoid())


def _scores(graph, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {grp.id: torch.rand(grp.width, generator=g, dtype=torch.float64) for grp in graph.prunable_groups()}


@pytest.mark.parametrize("reduction", [0.3, 0.5, 0.65])
def test_threshold_search_meets_exact_target(reduction):
    model, x, graph, shape = zoo_case("resnet20")
    soft = MacsModel(graph)
    scores = _scores(graph)
    scores["layer1.0.conv1:out"] = torch.full((16,), 1e-6, dtype=torch.float64)  # below any θ: keeps one channel
    sel = search_threshold(scores, soft, reduction, tolerance=0.005)
    assert abs(sel.reduction - reduction) <= 0.005 and sel.macs == soft.exact(sel.kept)
    assert all(len(k) >= 1 for k in sel.kept.values()) and set(sel.kept) == set(scores)
    assert len(sel.kept["layer1.0.conv1:out"]) == 1
    if sel.method == "threshold":  # a global threshold: every kept score beats every removed one (bar the minimum)
        for g, s in scores.items():
            kept = set(sel.kept[g])
            assert all(s[i] > sel.threshold for i in kept if len(kept) > 1)
            assert all(s[i] <= sel.threshold for i in range(len(s)) if i not in kept)


@pytest.mark.parametrize("round_to", [1, 4])
def test_min_fraction_keeps_that_share_of_every_group(round_to):
    model, x, graph, shape = zoo_case("resnet20")
    soft = MacsModel(graph)
    scores = _scores(graph)
    scores["layer1.0.conv1:out"] = torch.full((16,), 1e-6, dtype=torch.float64)  # alone it would keep one channel
    free = search_threshold(scores, soft, 0.5, tolerance=0.01, round_to=round_to)
    held = search_threshold(scores, soft, 0.5, tolerance=0.01, round_to=round_to, min_fraction=0.5)
    assert len(free.kept["layer1.0.conv1:out"]) == round_to
    assert 0.5 <= held.reduction <= 0.51 and held.macs == soft.exact(held.kept)
    for g, w in soft.widths.items():
        assert len(held.kept[g]) >= w / 2, g
    # the floor is the best half by α: the forced channels of a tied group are its lowest indices
    assert held.kept["layer1.0.conv1:out"] == list(range(8))
    assert search_threshold(scores, soft, 0.5, tolerance=0.01, round_to=round_to, min_fraction=0.0).kept == free.kept
    with pytest.raises(TargetError, match="min_fraction=0.9"):
        search_threshold(scores, soft, 0.5, tolerance=0.01, min_fraction=0.9)
    with pytest.raises(ValueError, match="min_fraction"):
        search_threshold(scores, soft, 0.5, min_fraction=1.0)


def test_min_fraction_floor_rounds_up_to_round_to():
    # a floor of ceil(0.3 * 16) = 5 channels with round_to 4 keeps 8, never 4 (the nearest multiple is below it)
    from secateurs.structured.select.threshold import autobot_floor

    model, x, graph, shape = zoo_case("resnet20")
    soft = MacsModel(graph)
    scores = {g: torch.full((w,), 1e-6, dtype=torch.float64) for g, w in soft.widths.items()}
    sel = search_threshold(scores, soft, 0.4, tolerance=0.02, round_to=4, min_fraction=0.3)
    for g, w in soft.widths.items():
        assert len(sel.kept[g]) >= math.ceil(0.3 * w) and (len(sel.kept[g]) % 4 == 0 or len(sel.kept[g]) == w), g
    assert [autobot_floor(16, 4, f) for f in (0.0, 0.3, 0.5, 0.625, 0.99)] == [4, 8, 8, 12, 16]
    assert autobot_floor(16) == 1 and autobot_floor(3, 4) == 3


def test_threshold_search_ties_fall_back_to_ranked_sweep():
    model, x, graph, shape = zoo_case("resnet20")
    soft = MacsModel(graph)
    scores = {g: torch.full((w,), 0.9, dtype=torch.float64) for g, w in soft.widths.items()}  # θ cannot split
    sel = search_threshold(scores, soft, 0.5, tolerance=0.005)
    assert sel.method in ("ranked", "greedy") and abs(sel.reduction - 0.5) <= 0.005


def test_threshold_search_errors_explain():
    model, x = make("residual")
    graph = build_channel_graph(model, x[:1])
    soft = MacsModel(graph)
    with pytest.raises(ValueError, match="out of reach"):
        search_threshold(_scores(graph), soft, 0.999)
    model, x = make("conv1d")  # one group of 8 channels: reachable reductions are 0.21, 0.40, 0.57, ...
    graph = build_channel_graph(model, x[:1])
    with pytest.raises(ValueError, match=r"no selection reaches .* nearest reachable reductions are 0.4035 and 0.2146"):
        search_threshold(_scores(graph), MacsModel(graph), 0.3)


def test_config_validates_with_field_names():
    with pytest.raises(ValueError, match="AutoBotConfig.batches"):
        AutoBotConfig(batches=0)
    with pytest.raises(ValueError, match="AutoBotConfig.lr"):
        AutoBotConfig(lr=-1)


def test_cost_power_same_cost_value_pull_in_proportion_to_cost_power():
    """cost_power p: L_F's value is unchanged and, at full width, each channel's gate gets a gradient from it
    proportional to (its channel's cost)^p, with the same total as the paper's plain gradient (p = 1)."""
    from secateurs.structured.autobot.training import pressure_weights, priced_scores

    model, x, graph, shape = zoo_case("resnet20")
    soft = MacsModel(graph)
    per = soft.per_channel()
    assert max(per.values()) > 1.5 * min(per.values())  # stage 1's channels cost more than stage 3's
    assert pressure_weights(soft, 1.0) is None
    cost = torch.cat([torch.full((n,), per[g], dtype=torch.float64) for g, n in soft.widths.items()])
    grads = {}
    for p in (1.0, 0.5, 0.0):
        ones = {g: torch.ones(n, dtype=torch.float64, requires_grad=True) for g, n in soft.widths.items()}
        value = soft(priced_scores(ones, pressure_weights(soft, p)))
        assert float(value.detach()) == pytest.approx(soft.dense)  # same value
        flops_loss(value, 0.5 * soft.dense, soft.dense).backward()
        grads[p] = torch.cat([v.grad for v in ones.values()])
        ratio = grads[p] / cost ** p
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio.mean())))  # pull ∝ cost^p
        assert float(grads[p].sum()) == pytest.approx(float(grads[1.0].sum()))  # the same total pull
    assert float(grads[1.0].max() / grads[1.0].min()) > 1.5
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="cost power"):
            pressure_weights(soft, bad)
    with pytest.raises(ValueError, match="AutoBotConfig.cost_power"):
        AutoBotConfig(cost_power=2.0)


def test_cost_power_trains_other_scores_and_autoprune_meets_target():
    from secateurs.structured.autobot import autoprune

    model, x = make("residual")
    graph = build_channel_graph(model, x[:1])
    data = _tiny_data(x)
    plain, _ = _train(model, graph, data, steps=6)
    equal, _ = _train(model, graph, data, steps=6, cost_power=0.0)
    assert any(not torch.equal(plain.alphas[g], equal.alphas[g]) for g in plain.alphas)
    m = copy.deepcopy(model)
    res = autoprune(m, data, 0.4, config=AutoBotConfig(batches=6, cost_power=0.0, tolerance=0.2),
                    example_inputs=x[:1], progress=False)
    assert 0.4 <= res.report.macs_reduction <= 0.6 and res.plan.meta["cost_power"] == 0.0
    assert round(count_macs(m, x.shape[1:])) == round(res.report.macs_after)


def test_local_scope_keeps_autobots_best_channels_at_one_fraction_per_group():
    """scope="local" (an ablation): AutoBot's trained scores choose the channels, the widths are the criteria's
    local allocation (the same fraction of every group), and the target is met as with the global search."""
    from secateurs.structured.autobot import autoprune
    from secateurs.structured.select import select_channels

    model, x = make("residual")
    graph = build_channel_graph(model, x[:1])
    res = {}
    for scope in ("global", "local"):
        m = copy.deepcopy(model)
        res[scope] = autoprune(m, _tiny_data(x), 0.4, config=AutoBotConfig(batches=6, tolerance=0.1, scope=scope),
                               example_inputs=x[:1], progress=False)
        assert 0.4 <= res[scope].report.macs_reduction <= 0.5 and res[scope].plan.meta["scope"] == scope
        assert round(count_macs(m, x.shape[1:])) == round(res[scope].report.macs_after)
    local = res["local"]
    torch.testing.assert_close(local.scores, res["global"].scores)  # the same training; only the selection differs
    alphas = {g: torch.logit(s) for g, s in local.scores.items()}  # the ranking key (λ = sigmoid(α); unsaturated)
    assert local.selection.kept == select_channels(graph, alphas, local.target, scope="local", normalize=None).kept
    assert "local (every group keeps the same fraction" in str(local)
    for gid, kept in local.selection.kept.items():  # each group keeps its best-scored channels (ties: the later)
        best = torch.argsort(alphas[gid], stable=True)[len(alphas[gid]) - len(kept):]
        assert sorted(kept) == sorted(best.tolist())
    with pytest.raises(ValueError, match="AutoBotConfig.scope"):
        AutoBotConfig(scope="layer")
    with pytest.raises(ValueError, match="min_fraction"):
        AutoBotConfig(scope="local", min_fraction=0.5)
