"""The sparsifier lifecycle: exact counts, zero invariants, regrowth at restarts, variants, resume, diagnostics."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from secateurs.schedules import GMP, Cyclical, OneShot
from secateurs.unstructured import (CyclicalSparsifier, magnitude_masks, num_pruned, reestimate_batchnorm,
                                    select_prunable)

torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 6, 3, padding=1)
        self.bn = nn.BatchNorm1d(6)
        self.fc1 = nn.Linear(6 * 8, 33)
        self.fc2 = nn.Linear(33, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _make(seed=0, opt="sgd"):
    torch.manual_seed(seed)
    model = Net()
    if opt == "sgd":
        optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    else:
        optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, optim


def _train_step(model, optim, step):
    x, y = _data(seed=step)
    optim.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optim.step()


def _zeros_outside_mask(sp):
    return all(bool((t.param.detach()[~sp.masks[t.name]] == 0).all()) for t in sp.targets)


# ---------------------------------------------------------------------------------------------- selection
def test_default_selection_is_conv_and_linear_weights():
    names = [t.name for t in select_prunable(Net())]
    assert names == ["conv.weight", "fc1.weight", "fc2.weight"]
    assert [t.name for t in select_prunable(Net(), keep_first_dense=True, keep_last_dense=True)] == ["fc1.weight"]
    assert [t.name for t in select_prunable(Net(), include=["fc*"], exclude=["*2.weight"])] == ["fc1.weight"]
    assert [t.name for t in select_prunable(Net(), layer_types=[nn.Conv1d])] == ["conv.weight"]


def test_ddp_style_wrapper_is_looked_through():
    model = Net()
    wrapped = nn.DataParallel(model)
    assert [t.param for t in select_prunable(wrapped)] == [t.param for t in select_prunable(model)]


# ---------------------------------------------------------------------------------------------- masks
def test_mask_counts_are_exact():
    torch.manual_seed(0)
    scores = {"a": torch.rand(7, 3), "b": torch.rand(50)}
    for s in (0.0, 0.1, 0.5, 0.9, 0.99):
        layer = magnitude_masks(scores, s, "layer")
        for n, m in layer.items():
            assert int((~m).sum()) == num_pruned(s, m.numel())
        glob = magnitude_masks(scores, s, "global")
        assert sum(int((~m).sum()) for m in glob.values()) == num_pruned(s, 71)
        # global keeps the largest scores overall
        kept_min = min(scores[n][m].min() for n, m in glob.items() if m.any()) if s < 0.99 else None
        pruned_max = max((scores[n][~m].max() for n, m in glob.items() if (~m).any()), default=None)
        if kept_min is not None and pruned_max is not None:
            assert kept_min >= pruned_max
    assert num_pruned(0.5, 3) == 2 and num_pruned(0.25, 2) == 1  # round half up


def test_cumulative_masks_never_regrow():
    scores = {"a": torch.arange(10.0)}
    first = magnitude_masks(scores, 0.3, "layer")  # prunes 0, 1, 2
    flipped = {"a": torch.arange(10.0).flip(0)}  # now 0, 1, 2 are the largest
    again = magnitude_masks(flipped, 0.5, "layer", forced={"a": ~first["a"]})
    assert not again["a"][:3].any() and int((~again["a"]).sum()) == 5


def test_min_kept_protects_a_small_tensor_from_global_ranking_and_keeps_the_count_exact():
    scores = {"small": torch.full((10,), 1e-3) + torch.arange(10.0) * 1e-4, "big": torch.rand(990) + 1.0}
    plain = magnitude_masks(scores, 0.98, "global")
    assert not plain["small"].any()  # the failure mode: a whole tensor pruned away
    guarded = magnitude_masks(scores, 0.98, "global", min_kept={"small": 2, "big": 1})
    assert int(guarded["small"].sum()) == 2 and bool(guarded["small"][-2:].all())  # its two largest
    assert sum(int((~m).sum()) for m in guarded.values()) == num_pruned(0.98, 1000)
    with pytest.raises(ValueError, match="minimums"):
        magnitude_masks(scores, 0.999, "global", min_kept={"small": 2, "big": 1})
    with pytest.raises(ValueError, match="small"):
        magnitude_masks(scores, 0.9, "layer", min_kept={"small": 2})


def test_min_density_keeps_every_layer_alive_under_global_ranking():
    model, optim = _make()
    with torch.no_grad():
        model.fc2.weight.mul_(1e-4)  # the classifier's weights are tiny: global ranking takes them all
    for min_density, alive in ((0.0, False), (0.02, True)):
        m = _make()[0]
        m.load_state_dict(model.state_dict())
        # live_outputs off: the guard would keep fc2's rows alive by itself (tests/unit/test_live_outputs.py)
        sp = CyclicalSparsifier(m, OneShot(0.97, 1), scope="global", min_density=min_density, live_outputs=False)
        assert bool(sp.masks["fc2.weight"].any()) == alive
        if alive:
            assert all(int(mask.sum()) >= -(-0.02 * mask.numel() // 1) for mask in sp.masks.values())
        total = sum(mk.numel() for mk in sp.masks.values())
        assert sum(int((~mk).sum()) for mk in sp.masks.values()) == num_pruned(0.97, total)
    with pytest.raises(ValueError, match="min_density=0.05"):
        CyclicalSparsifier(_make()[0], GMP(0.97, 10), scope="global", min_density=0.05)
    with pytest.raises(ValueError, match="min_density=0.2.*layer"):
        CyclicalSparsifier(_make()[0], GMP(0.9, 10), scope="layer", min_density=0.2)
    with pytest.raises(ValueError, match="min_density"):
        CyclicalSparsifier(_make()[0], GMP(0.9, 10), min_density=1.0)
    # the check uses the schedule's peak, here a restart sparsity above the final one, and says what would fit
    with pytest.raises(ValueError, match=r"peak sparsity 0.99 .*at most 0.0\d+ fits"):
        CyclicalSparsifier(_make()[0], Cyclical(0.5, 30, cycles=3, restart_sparsity=0.99), scope="global",
                           min_density=0.02)


def test_min_density_with_cumulative_masks_keeps_the_floor_and_the_count():
    model, optim = _make()
    with torch.no_grad():
        model.fc2.weight.mul_(1e-4)
    sp = CyclicalSparsifier(model, GMP(0.97, 12), scope="global", cumulative=True, min_density=0.02,
                            update_every=2, optimizer=optim)
    for step in range(12):
        _train_step(model, optim, step)
    total = sum(mk.numel() for mk in sp.masks.values())
    assert sum(int((~mk).sum()) for mk in sp.masks.values()) == num_pruned(0.97, total)
    assert all(int(mk.sum()) >= -(-0.02 * mk.numel() // 1) for mk in sp.masks.values())


def test_state_saved_before_min_density_existed_still_loads():
    sp = CyclicalSparsifier(_make()[0], GMP(0.5, 10))
    state = sp.state_dict()
    del state["config"]["min_density"]
    CyclicalSparsifier(_make()[0], GMP(0.5, 10)).load_state_dict(state)  # strict: must not raise
    with pytest.raises(ValueError, match=r"configuration differs in min_density \(saved 0.0, here 0.01\), "
                                         r"scope \(saved 'layer', here 'global'\)"):
        CyclicalSparsifier(_make()[0], GMP(0.5, 10), scope="global", min_density=0.01).load_state_dict(state)


# ---------------------------------------------------------------------------------------------- lifecycle
@pytest.mark.parametrize("variant", ["project", "shadow", "ste"])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_finalize_leaves_plain_model_at_exact_sparsity(variant, scope):
    model, optim = _make()
    ref_types = [type(m) for m in model.modules()]
    params_before = list(model.parameters())
    sp = CyclicalSparsifier(model, Cyclical(0.9, 40, cycles=2), update_every=5, scope=scope, variant=variant,
                            optimizer=optim)
    for step in range(40):
        _train_step(model, optim, step)
    summary = sp.finalize()
    assert [type(m) for m in model.modules()] == ref_types
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert all(type(p) is nn.Parameter for p in model.parameters())
    # the very same Parameter objects, in the same order: the optimizer still owns them
    assert [id(p) for p in model.parameters()] == [id(p) for p in params_before]
    assert not optim._optimizer_step_post_hooks
    assert list(model.state_dict()) == list(Net().state_dict())
    zeros = {t.name: int((t.param == 0).sum()) for t in sp.targets}
    if scope == "layer":
        assert zeros == {t.name: num_pruned(0.9, t.numel) for t in sp.targets}
    else:
        assert sum(zeros.values()) == num_pruned(0.9, sum(t.numel for t in sp.targets))
    assert summary["sparsity"] == sum(zeros.values()) / sum(t.numel for t in sp.targets)
    assert model.fc1.bias.ne(0).all() and model.bn.weight.ne(0).all()  # biases and norms stay dense
    with pytest.raises(RuntimeError, match="finalize"):
        sp.step()


def test_finalize_early_still_reaches_the_target():
    model, optim = _make()
    sp = CyclicalSparsifier(model, GMP(0.8, 100), update_every=10, optimizer=optim)
    for step in range(12):
        _train_step(model, optim, step)
    assert sp.mask_sparsity < 0.8
    sp.finalize()
    assert all(int((t.param == 0).sum()) == num_pruned(0.8, t.numel) for t in sp.targets)
    assert sp.history[-1]["note"] == "finalize"


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_pruned_weights_stay_zero_and_regrow_at_restart(opt):
    model, optim = _make(opt=opt)
    sched = Cyclical(0.9, 90, cycles=3, ramp=0.6)  # cycles start at 0, 30, 60; holds at 18, 48, 78
    sp = CyclicalSparsifier(model, sched, update_every=4, optimizer=optim)
    regrown_at_restart = 0
    for step in range(90):
        zero_before = {t.name: t.param.detach() == 0 for t in sp.targets}
        _train_step(model, optim, step)
        t_now = sp.step_count
        # invariant after every step: pruned weights and their optimizer state are exactly zero
        assert _zeros_outside_mask(sp)
        for t in sp.targets:
            for v in optim.state[t.param].values():
                if v.shape == t.param.shape:
                    assert (v[~sp.masks[t.name]] == 0).all()
        if not sp.is_update_step(t_now):  # inside a cycle, between updates: zeros remain zeros
            for t in sp.targets:
                assert (t.param.detach()[zero_before[t.name] & ~sp.masks[t.name]] == 0).all()
        if t_now in (30, 60):  # restart: s_restart = 0, every weight may regrow
            assert sp.mask_sparsity == 0.0
            regrown_at_restart += sum(int((zero_before[t.name] & (t.param.detach() != 0)).sum())
                                      for t in sp.targets)
    assert regrown_at_restart > 100
    summary = sp.finalize()
    assert 0 < summary["recovered_fraction"] <= 1


def test_final_hold_is_frozen():
    model, optim = _make()
    sched = Cyclical(0.8, 60, cycles=2, ramp=0.5)  # last hold starts at 45
    sp = CyclicalSparsifier(model, sched, update_every=1, optimizer=optim)
    masks_at = {}
    for step in range(60):
        _train_step(model, optim, step)
        masks_at[sp.step_count] = {n: m.clone() for n, m in sp.masks.items()}
    assert sched.freeze_step == 45 and sp.history[-1]["step"] == 45
    for t in range(46, 61):
        assert all(torch.equal(masks_at[t][n], masks_at[45][n]) for n in sp.masks)
    assert sp.mask_sparsity == 0.8


def test_update_steps_follow_update_every_and_boundaries():
    model, optim = _make()
    sched = Cyclical(0.9, 100, cycles=3, ramp=0.75)  # starts 0, 33, 66; holds 0+ceil(24.75), 33+25, 66+ceil(25.5)
    sp = CyclicalSparsifier(model, sched, update_every=20, optimizer=optim)
    for step in range(100):
        _train_step(model, optim, step)
    assert [h["step"] for h in sp.history] == [0, 20, 25, 33, 40, 58, 60, 66, 80, 92]
    assert [h["planned"] for h in sp.history] == [sched.sparsity_at(h["step"]) for h in sp.history]


def test_ramp_shorter_than_update_every_warns_and_adapts():
    """A 15-step run with 3 cycles and update_every=50 must still ramp gradually inside every cycle."""
    model, optim = _make()
    sched = Cyclical(0.95, 15, cycles=3)  # cycles of 5 steps, ramps of ceil(3.75) = 4 steps
    with pytest.warns(UserWarning, match="update_every=50"):
        sp = CyclicalSparsifier(model, sched, update_every=50, optimizer=optim)
    assert sp.requested_update_every == 50 and sp.update_every == 1
    for step in range(15):
        _train_step(model, optim, step)
    planned = [h["planned"] for h in sp.history]
    # inside each ramp the mask passes through intermediate sparsities, not only 0 and 0.95
    assert sum(0.0 < p < 0.95 for p in planned) >= 3 * 3
    assert sp.finalize()["sparsity"] == pytest.approx(0.95, abs=1e-3)


def test_long_ramps_keep_update_every_without_warning():
    import warnings

    model, optim = _make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sp = CyclicalSparsifier(model, Cyclical(0.9, 100, cycles=3), update_every=20, optimizer=optim)
    assert sp.update_every == 20


def test_cumulative_never_recovers_and_rerank_does():
    results = {}
    for cumulative in (True, False):
        model, optim = _make(seed=3)
        sp = CyclicalSparsifier(model, Cyclical(0.9, 90, cycles=3), update_every=3, cumulative=cumulative,
                                optimizer=optim)
        pruned_ever = {n: torch.zeros_like(m) for n, m in sp.masks.items()}
        for step in range(90):
            _train_step(model, optim, step)
            if cumulative:  # once pruned, pruned for good
                assert all(not (sp.masks[n] & pruned_ever[n]).any() for n in sp.masks)
            for n in sp.masks:
                pruned_ever[n] |= ~sp.masks[n]
        results[cumulative] = sp.finalize()["recovered_fraction"]
    assert results[True] == 0.0
    assert results[False] > 0


def test_iht_finds_the_support_of_a_sparse_regression():
    """One-shot at step 0 + update_every=1 + no freeze = iterative hard thresholding: w <- H_k(w - lr grad).
    Starting from a random dense init, the mask must move onto the true support (it re-ranks every step)."""
    g = torch.Generator().manual_seed(0)
    d, k, n = 40, 4, 120
    x = torch.randn(n, d, generator=g) / n ** 0.5
    w_true = torch.zeros(d)
    w_true[torch.randperm(d, generator=g)[:k]] = torch.tensor([3.0, -2.0, 2.5, -3.5])
    y = x @ w_true
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g))
    optim = torch.optim.SGD(model.parameters(), lr=1.0 / torch.linalg.matrix_norm(x, 2).item() ** 2)
    sp = CyclicalSparsifier(model, OneShot(1 - k / d, 300, prune_step=0), update_every=1, freeze_final=False,
                            optimizer=optim)
    initial = sp.masks["weight"].clone()
    for _ in range(300):
        optim.zero_grad()
        (0.5 * (model(x).squeeze(1) - y).pow(2).sum()).backward()
        optim.step()
    assert len(sp.history) == 301 and all(h["planned"] == 0.9 for h in sp.history)
    assert torch.equal(sp.masks["weight"][0], w_true != 0)
    assert not torch.equal(initial, sp.masks["weight"])
    assert torch.allclose(model.weight[0], w_true, atol=1e-3)


# ---------------------------------------------------------------------------------------------- variants
@pytest.mark.parametrize("variant", ["shadow", "ste"])
def test_forward_mask_equals_physically_pruned_twin(variant):
    model, optim = _make()
    sp = CyclicalSparsifier(model, OneShot(0.6, 10), variant=variant, optimizer=optim)
    for step in range(3):
        _train_step(model, optim, step)
    twin = Net()
    twin.load_state_dict({k.replace("parametrizations.", "").replace(".original", ""): v
                          for k, v in model.state_dict().items()})
    with torch.no_grad():
        for t in sp.targets:
            twin.get_submodule(t.name.rsplit(".", 1)[0]).weight.mul_(sp.masks[t.name])
    model.eval(), twin.eval()
    x, _ = _data(seed=99)
    assert torch.equal(model(x), twin(x))


def test_variant_semantics_for_pruned_weights():
    changed = {}
    for variant in ("shadow", "ste"):
        torch.manual_seed(0)
        model = Net()
        optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)  # no weight decay
        sp = CyclicalSparsifier(model, OneShot(0.5, 20), variant=variant, optimizer=optim)
        before = {t.name: t.param.detach().clone() for t in sp.targets}
        for step in range(5):
            _train_step(model, optim, step)
        changed[variant] = [bool((t.param.detach() != before[t.name])[~sp.masks[t.name]].any())
                            for t in sp.targets]
        # the stored (shadow) values of pruned weights are not zero: the mask lives in the forward pass
        assert all(bool((t.param.detach()[~sp.masks[t.name]] != 0).any()) for t in sp.targets)
    assert changed["shadow"] == [False, False, False]  # stale: no gradient reaches them
    assert changed["ste"] == [True, True, True]  # straight-through: they keep learning


def test_validation_errors():
    model = Net()
    with pytest.raises(ValueError, match="scope"):
        CyclicalSparsifier(model, GMP(0.5, 10), scope="net")
    with pytest.raises(ValueError, match="variant"):
        CyclicalSparsifier(model, GMP(0.5, 10), variant="magic")
    with pytest.raises(ValueError, match="update_every"):
        CyclicalSparsifier(model, GMP(0.5, 10), update_every=0)
    with pytest.raises(ValueError, match="no prunable"):
        CyclicalSparsifier(model, GMP(0.5, 10), include=["nothing*"])
    with pytest.raises(TypeError, match="Schedule"):
        CyclicalSparsifier(model, 0.5)


# ---------------------------------------------------------------------------------------------- resume
def _run(variant, steps, state=None, until=None):
    """Train ``steps`` steps; return (model, optim, sp). With ``until``, stop there and return a checkpoint."""
    model, optim = _make(seed=1 if state is None else 7)  # a resumed run starts from a *different* init
    sp = CyclicalSparsifier(model, Cyclical(0.9, steps, cycles=3, ramp=0.5), update_every=3, variant=variant,
                            optimizer=optim)
    start = 0
    if state is not None:
        state = torch.load(io.BytesIO(state), weights_only=False)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        sp.load_state_dict(state["sparsifier"])
        start = sp.step_count
    for step in range(start, steps if until is None else until):
        _train_step(model, optim, step)
    if until is not None:
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "optim": optim.state_dict(), "sparsifier": sp.state_dict()}, buf)
        return buf.getvalue()
    return model, optim, sp


@pytest.mark.parametrize("variant", ["project", "ste"])
def test_resume_is_bit_identical(variant):
    ref_model, _, ref_sp = _run(variant, 60)
    ckpt = _run(variant, 60, until=35)  # mid-cycle, between mask updates
    model, _, sp = _run(variant, 60, state=ckpt)
    assert sp.step_count == ref_sp.step_count == 60
    assert all(torch.equal(sp.masks[n], ref_sp.masks[n]) for n in sp.masks)
    assert sp.history == ref_sp.history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()))
    assert sp.finalize() == ref_sp.finalize()


def test_load_state_dict_rejects_another_schedule():
    model, optim = _make()
    sp = CyclicalSparsifier(model, Cyclical(0.9, 60, cycles=3), optimizer=optim)
    other = CyclicalSparsifier(Net(), Cyclical(0.9, 60, cycles=2))
    with pytest.raises(ValueError, match="schedule"):
        other.load_state_dict(sp.state_dict())


# ---------------------------------------------------------------------------------------------- BN
def test_batchnorm_reestimation_matches_direct_statistics():
    model, optim = _make()
    sp = CyclicalSparsifier(model, OneShot(0.9, 5), optimizer=optim)
    for step in range(5):
        _train_step(model, optim, step)
    batches = [_data(32, seed=s)[0] for s in range(3)]
    sp.finalize(bn_data=batches)
    with torch.no_grad():
        act = torch.cat([model.conv(x) for x in batches])  # (N, C, L)
    mean = act.mean(dim=(0, 2))
    assert torch.allclose(model.bn.running_mean, mean, atol=1e-5)
    assert reestimate_batchnorm(nn.Linear(2, 2), batches) == 0


def test_summary_and_history_diagnostics():
    model, optim = _make()
    sp = CyclicalSparsifier(model, Cyclical(0.9, 60, cycles=3), update_every=5, optimizer=optim)
    for step in range(60):
        _train_step(model, optim, step)
    s = sp.finalize()
    assert set(s) >= {"sparsity", "sparsity_per_layer", "recovered_fraction", "mean_churn", "schedule"}
    assert s["schedule"]["kind"] == "cyclical"
    for h in sp.history:
        assert 0 <= h["churn"] <= 1 and 0 <= h["recovered_fraction"] <= 1
        assert set(h["sparsity_per_layer"]) == {t.name for t in sp.targets}
    restarts = [h for h in sp.history if h["step"] in (20, 40)]
    assert all(h["sparsity"] == 0.0 and h["churn"] > 0.5 for h in restarts)  # back to dense


# ---------------------------------------------------------------------------------------------- callback
def test_callback_state_round_trip_before_train_begin():
    from types import SimpleNamespace

    from secateurs.unstructured import SparsifierCallback

    def factory(m, total):
        return CyclicalSparsifier(m, Cyclical(0.8, total, cycles=2), update_every=2)

    model, optim = _make()
    cb = SparsifierCallback(factory, bn_batches=0)
    cb.on_train_begin(SimpleNamespace(model=model, optimizer=optim, total_steps=20))
    for step in range(7):
        _train_step(model, optim, step)
    saved = cb.state_dict()
    model2, optim2 = _make(seed=5)
    cb2 = SparsifierCallback(factory, bn_batches=0)
    cb2.load_state_dict(saved)  # before the sparsifier exists: kept until on_train_begin
    assert cb2.sparsifier is None
    cb2.on_train_begin(SimpleNamespace(model=model2, optimizer=optim2, total_steps=20))
    assert cb2.sparsifier.step_count == 7
    assert all(torch.equal(cb2.sparsifier.masks[n], m) for n, m in cb.sparsifier.masks.items())


def test_bn_reestimation_keeps_statistics_when_no_batch_runs_or_a_batch_fails():
    import pytest
    from torch import nn

    from secateurs.unstructured import reestimate_batchnorm

    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3)).eval()
    model[1].running_mean.fill_(2.0)
    model[1].running_var.fill_(5.0)
    assert reestimate_batchnorm(model, []) == 0
    assert torch.all(model[1].running_mean == 2.0) and torch.all(model[1].running_var == 5.0)

    def broken():
        yield torch.randn(4, 1, 5, 5)
        raise RuntimeError("loader died")

    with pytest.raises(RuntimeError, match="loader died"):
        reestimate_batchnorm(model, broken())
    assert torch.all(model[1].running_mean == 2.0) and not model.training
    assert reestimate_batchnorm(model, [torch.randn(8, 1, 5, 5)]) == 1
    assert not torch.all(model[1].running_mean == 2.0)
