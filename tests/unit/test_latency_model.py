"""The latency cost model: interpolation, the cost-model contract (dense == soft(all ones) == exact({})),
monotonicity in widths, the profile's structure, JSON validation and the cache key. No timing value is asserted:
profiles here are either measured on tiny models with minimal budgets (structure only) or synthetic."""
import json
import random

import pytest
import torch
from torch import nn

from fixtures.latency import macs_profile
from fixtures.topologies import make
from secateurs.cost import latency_profile as lp
from secateurs.cost import profiling
from secateurs.cost.latency import LatencyModel
from secateurs.cost.latency_profile import LatencyProfile
from secateurs.cost.profiling import cached_profile, profile_latency
from secateurs.errors import CheckpointError
from secateurs.graph import build_channel_graph
from secateurs.cost.macs import MacsModel


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c3, self.b3 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)  # same signature as c2
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        x = torch.relu(self.b3(self.c3(x)))
        return self.fc(x.mean((2, 3)))


SHAPE = (3, 8, 8)
QUICK = dict(layer_budget_s=0.0, model_budget_s=0.0, calibration=1, held_out=1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Tiny().eval()
    graph = build_channel_graph(model, torch.randn(1, *SHAPE))
    return model, graph, profile_latency(model, graph, SHAPE, batch_size=2, threads=1, **QUICK)


def _macs_profile(model, graph, shape, beta=1.0, constant=0.0):
    return macs_profile(model, graph, shape, beta, constant)


def _random_kept(graph, seed):
    rng = random.Random(seed)
    return {g.id: sorted(rng.sample(range(g.width), rng.randint(1, g.width))) for g in graph.prunable_groups()}


@pytest.mark.parametrize("name", ["residual", "concat", "depthwise", "flatten_linear", "grouped", "split"])
def test_macs_tables_reproduce_the_macs_counter(name):
    model, x = make(name)
    graph = build_channel_graph(model, x)
    lm = LatencyModel(graph, _macs_profile(model, graph, tuple(x.shape[1:])))
    macs = MacsModel(graph)
    layer_macs = macs.dense - macs.constant
    assert lm.dense == pytest.approx(1e-6 * layer_macs, rel=1e-9)
    for seed in range(3):
        kept = _random_kept(graph, seed)
        assert lm.exact(kept) == pytest.approx(1e-6 * (macs.exact(kept) - macs.constant), rel=1e-9)
        hard = {g: torch.zeros(lm.widths[g], dtype=torch.float64).index_fill_(0, torch.tensor(idx), 1.0)
                for g, idx in kept.items()}
        assert lm.exact(kept) == pytest.approx(float(lm.soft(hard)), rel=1e-12)  # float path == torch path


def test_profile_structure(tiny):
    model, graph, prof = tiny
    assert len(prof.calls) == len(graph.layers) == 4
    assert len(prof.tables) == 3  # c2 and c3 share one table
    assert prof.calls[1]["table"] == prof.calls[2]["table"]
    first, shared, fc = (prof.tables[c["table"]] for c in (prof.calls[0], prof.calls[1], prof.calls[3]))
    assert first.in_grid == [3] and first.out_grid == [1, 2, 4, 6, 7, 8]  # the image channels are not prunable
    assert shared.in_grid == shared.out_grid == [1, 2, 4, 6, 7, 8]
    assert fc.out_grid == [4]  # the logits are not prunable
    for t in prof.tables:
        for i, row in enumerate(t.ms):
            for j, v in enumerate(row):  # monotone in both widths
                assert v >= 0 and (i == 0 or v >= t.ms[i - 1][j]) and (j == 0 or v >= row[j - 1])
    assert prof.key["batch_size"] == 2 and prof.key["threads"] == 1 and prof.key["runtime"] == "torch"
    assert len(prof.validation["held_out"]) == 1 and len(prof.validation["fit"]) == 5
    assert prof.beta >= 0 and prof.alpha >= 0 and prof.timing["threads"] == 1
    assert "loadavg_before" in prof.timing


def test_dense_equals_soft_ones_and_exact_empty(tiny):
    model, graph, prof = tiny
    lm = LatencyModel(graph, prof)
    ones = {g: torch.ones(w, dtype=torch.float64) for g, w in lm.widths.items()}
    counts = {g: torch.tensor(float(w), dtype=torch.float64) for g, w in lm.widths.items()}
    assert lm.dense == pytest.approx(prof.dense_ms, rel=1e-9)  # the fit goes through the measured dense point
    assert float(lm.soft(ones)) == pytest.approx(lm.dense, rel=1e-12)
    assert float(lm.soft(counts)) == pytest.approx(lm.dense, rel=1e-12)
    assert lm.exact({}) == pytest.approx(lm.dense, rel=1e-12) and lm.reduction({}) == pytest.approx(0.0)
    assert lm.name == "latency" and lm.unit == "ms" and lm.widths == {g.id: g.width for g in graph.prunable_groups()}


def test_monotone_in_widths_and_differentiable(tiny):
    model, graph, prof = tiny
    lm = LatencyModel(graph, prof)
    for gid, width in lm.widths.items():
        costs = [lm.exact({gid: list(range(k))}) for k in range(1, width + 1)]
        assert all(a <= b + 1e-12 for a, b in zip(costs, costs[1:])), gid
    gates = {g: torch.full((w,), 0.6, dtype=torch.float64, requires_grad=True) for g, w in lm.widths.items()}
    lm.soft(gates).backward()
    assert all(bool((v.grad >= 0).all()) for v in gates.values())
    assert all(v >= 0 for v in lm.per_channel().values()) and set(lm.per_channel()) == set(lm.widths)


def test_interpolation_between_grid_points():
    model, x = make("residual")
    graph = build_channel_graph(model, x)
    prof = _macs_profile(model, graph, tuple(x.shape[1:]), beta=2.0, constant=0.5)
    lm = LatencyModel(graph, prof)
    gid, width = next(iter(lm.widths.items()))
    lo, hi = lm.soft({gid: torch.tensor(float(width - 2))}), lm.soft({gid: torch.tensor(float(width))})
    mid = lm.soft({gid: torch.tensor(float(width - 1))})
    assert float(lo) < float(mid) < float(hi)
    assert float(mid) == pytest.approx((float(lo) + float(hi)) / 2)  # the MACs tables are linear in one width
    macs = MacsModel(graph)
    assert lm.constant == 0.5 and lm.dense == pytest.approx(0.5 + 2e-6 * (macs.dense - macs.constant))


def test_profile_of_another_architecture_is_refused(tiny):
    _, _, prof = tiny
    model, x = make("residual")
    with pytest.raises(ValueError, match="another architecture"):
        LatencyModel(build_channel_graph(model, x), prof)


def test_json_round_trip_and_validation(tmp_path, tiny):
    _, graph, prof = tiny
    path = tmp_path / "lat.json"
    prof.save(path)
    back = LatencyProfile.load(path)
    assert back.to_dict() == json.loads(path.read_text())
    assert LatencyModel(graph, back).dense == pytest.approx(LatencyModel(graph, prof).dense)
    good = json.loads(path.read_text())
    cases = [("format", lambda d: d.update(format="other")),
             ("key.threads", lambda d: d["key"].update(threads=0)),
             ("tables[0].in_grid", lambda d: d["tables"][0].update(in_grid=[2, 1])),
             ("tables[0].ms", lambda d: d["tables"][0].update(ms=[[-1.0]])),
             ("calls[0].table", lambda d: d["calls"][0].update(table=99)),
             ("fit.beta", lambda d: d["fit"].update(beta="x"))]
    for fld, breaks in cases:
        d = json.loads(json.dumps(good))
        breaks(d)
        path.write_text(json.dumps(d))
        with pytest.raises(CheckpointError, match=fld.replace("[", r"\[").replace("]", r"\]")):
            LatencyProfile.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(CheckpointError):
        LatencyProfile.load(path)


def test_cache_is_keyed_and_validated(tmp_path, monkeypatch, tiny):
    model, graph, prof = tiny
    monkeypatch.setenv("SECATEURS_CACHE", str(tmp_path))
    built = []

    def fake_profile(model, graph, shape, **kw):
        built.append(kw)
        key = lp.profile_key(model, graph, shape, batch_size=kw["batch_size"], threads=kw["threads"],
                             dtype=kw["dtype"], runtime=kw["runtime"])
        return LatencyProfile(key, prof.tables, prof.calls, prof.beta, prof.alpha, prof.constant_ms, prof.dense_ms)

    monkeypatch.setattr(profiling, "profile_latency", fake_profile)
    a = cached_profile(model, graph, SHAPE, batch_size=2, threads=1)
    assert len(built) == 1 and a.key["batch_size"] == 2
    files = list((tmp_path / "latency").glob("*.json"))
    assert len(files) == 1
    cached_profile(model, graph, SHAPE, batch_size=2, threads=1)
    assert len(built) == 1  # from the cache
    cached_profile(model, graph, SHAPE, batch_size=4, threads=1)
    cached_profile(model, graph, SHAPE, batch_size=2, threads=2)
    assert len(built) == 3 and len(list((tmp_path / "latency").glob("*.json"))) == 3
    files[0].write_text("{not json")
    logs = []
    cached_profile(model, graph, SHAPE, batch_size=2, threads=1, log=logs.append)
    assert len(built) == 4 and "not valid" in logs[0]
    assert LatencyProfile.load(files[0]).key["batch_size"] == 2  # replaced by a valid one
    other = lp.profile_key(Tiny(), graph, (3, 16, 16), batch_size=2, threads=1)
    assert other["model"] != a.key["model"]  # the input size is part of the model's identity
    monkeypatch.setattr(lp, "GRID_RULE", "below-8")  # a profile cached under another width-grid rule
    cached_profile(model, graph, SHAPE, batch_size=2, threads=1)
    assert len(built) == 5  # is not reused: measured again
    import secateurs.timing as timing

    other = "as found" if timing.allocator() == "glibc steady" else "glibc steady"
    monkeypatch.setattr(timing, "_allocator", other)  # a process timing under the other malloc regime
    assert lp.profile_key(model, graph, SHAPE, batch_size=2, threads=1)["allocator"] == other
    cached_profile(model, graph, SHAPE, batch_size=2, threads=1)
    assert len(built) == 6  # does not reuse the profile timed under the first one
    path = lp.cache_path(lp.profile_key(model, graph, SHAPE, batch_size=2, threads=1))
    stale = LatencyProfile.load(path)
    stale.constant_ms = -1.0  # fitted before _fit held the constant >= 0
    stale.save(path)
    logs = []
    cached_profile(model, graph, SHAPE, batch_size=2, threads=1, log=logs.append)
    assert len(built) == 7 and "negative constant" in logs[0]  # measured again
    assert LatencyProfile.load(path).constant_ms >= 0
    cached_profile(model, graph, SHAPE, batch_size=2, threads=1)
    assert len(built) == 7  # and reused from then on
    residue = LatencyProfile.load(path)
    residue.constant_ms = -1e-14  # a rounding residue at the bound is not a negative constant
    residue.save(path)
    cached_profile(model, graph, SHAPE, batch_size=2, threads=1)
    assert len(built) == 7


def test_grid_times_both_sides_of_its_multiples_of_8():
    """Kernel time is a staircase (16 channels fast, 17 as slow as 32): the grid has a point on each side of
    every step, so interpolation never spreads a step over a whole segment."""
    assert lp._grid(64, True) == [1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64]
    assert lp._grid(32, True) == [1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32]
    assert lp._grid(16, True) == [1, 4, 7, 8, 9, 12, 15, 16]
    assert lp._grid(32, True, multiple=4) == [4, 8, 12, 16, 20, 24, 28, 32]  # grouped: whole groups only
    assert lp._grid(24, False) == [24] and lp._grid(1, True) == [1]
    assert lp._grid(32, True, sides=(-1,)) == [1, 7, 8, 15, 16, 23, 24, 31, 32]  # the rule before (the ablation's)
    assert lp._grid(32, True, sides=(1,)) == [1, 8, 9, 16, 17, 24, 25, 32]


def test_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECATEURS_CACHE", str(tmp_path / "c"))
    assert lp.cache_dir() == tmp_path / "c" / "latency"
    monkeypatch.delenv("SECATEURS_CACHE")
    assert lp.cache_dir().parts[-3:] == (".cache", "secateurs", "latency")


def test_bad_arguments_and_missing_onnxruntime(monkeypatch, tiny):
    model, graph, _ = tiny
    with pytest.raises(ValueError, match="runtime"):
        profile_latency(model, graph, SHAPE, runtime="tvm")
    with pytest.raises(ValueError, match="dtype"):
        profile_latency(model, graph, SHAPE, dtype="int3")
    import builtins

    real = builtins.__import__

    def no_ort(name, *a, **kw):
        if name == "onnxruntime":
            raise ImportError("no")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ImportError, match="onnxruntime is not installed"):
        profile_latency(model, graph, SHAPE, runtime="onnxruntime")


def test_fit_recovers_exact_coefficients_and_chooses_by_cross_validation():
    sums = [100.0, 80.0, 50.0, 30.0, 70.0, 40.0]
    elems = [10.0, 7.0, 6.0, 2.0, 8.0, 3.0]
    ms = [5 + 0.8 * s + 0.3 * e for s, e in zip(sums, elems)]
    beta, alpha, form = profiling._fit(sums, elems, ms)
    assert form == "beta+alpha" and beta == pytest.approx(0.8) and alpha == pytest.approx(0.3)
    ms = [5 + 1.7 * s for s in sums]
    beta, alpha, form = profiling._fit(sums, elems, ms)
    assert beta == pytest.approx(1.7) and alpha == pytest.approx(0.0, abs=1e-9)
    ms = [5 + 1.0 * s + 0.5 * e for s, e in zip(sums, elems)]
    assert profiling._fit(sums, elems, ms)[:2] == pytest.approx((1.0, 0.5))
    assert profiling._fit([1.0], [1.0], [2.0]) == (1.0, 0.0, "beta")  # dense only: tables at face value


def test_fit_never_implies_a_negative_constant():
    # a fit that explains more than the dense latency would predict below 0 ms towards the smallest widths
    # (VGG-16 at batch 64: constant -5 ms, reachable 1.009); the constant is held >= 0 like beta and alpha
    sums = [100.0, 80.0, 50.0, 30.0, 70.0, 40.0]
    elems = [10.0, 7.0, 6.0, 2.0, 8.0, 3.0]
    for ms in ([-5 + 1.1 * s for s in sums], [-5 + 0.8 * s + 0.9 * e for s, e in zip(sums, elems)],
               [-20 + 1.0 * s + 0.5 * e for s, e in zip(sums, elems)]):
        beta, alpha, form = profiling._fit(sums, elems, ms)
        assert ms[0] - beta * sums[0] - alpha * elems[0] >= -1e-9, (form, beta, alpha)
        assert beta >= 0 and alpha >= 0 and (form != "beta" or alpha == 0.0)  # the form is the one used
    ms = [-5 + 1.1 * s for s in sums]
    beta, alpha, _ = profiling._fit(sums, elems, ms)
    assert ms[0] - beta * sums[0] - alpha * elems[0] == pytest.approx(0.0, abs=1e-9)  # the bound holds, at 0
    assert profiling._fit(sums, [0.0] * 6, ms)[:2] == pytest.approx((1.05, 0.0))  # beta alone: ms_0 / sums_0
    assert profiling._fit([10.0], [1.0], [2.0])[:2] == pytest.approx((0.2, 0.0))  # dense only, capped too


def test_onnxruntime_profile_structure():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    graph = build_channel_graph(model, torch.randn(1, 4))
    prof = profile_latency(model, graph, (4,), batch_size=1, runtime="onnxruntime", **QUICK)
    assert prof.key["runtime"] == "onnxruntime" and "onnxruntime" in prof.key
    assert [len(t.in_grid) * len(t.out_grid) for t in prof.tables] == [6, 6]  # widths 1, 2, 4, 6, 7, 8
    lm = LatencyModel(graph, prof)
    assert lm.exact({}) == pytest.approx(prof.dense_ms) and lm.exact({"0:out": [0]}) <= lm.dense + 1e-12


def test_built_by_name_like_every_cost_model(tiny):
    from secateurs.cost import CostModel, LatencyModel as ByName, cost_model

    _, graph, prof = tiny
    lm = cost_model("latency", graph, profile=prof)
    assert isinstance(lm, CostModel) and isinstance(lm, ByName) and lm.dense == pytest.approx(prof.dense_ms)
    assert float(lm(None)) == pytest.approx(lm.dense)  # __call__ is soft


def test_monotone_tables_clip_spikes_instead_of_spreading_them():
    spiky = [[1.0, 2.0, 3.0], [1.5, 9.0, 3.5], [2.0, 3.0, 4.0]]  # one disturbed point in the middle
    assert profiling._monotone(spiky) == [[1.0, 2.0, 3.0], [1.5, 3.0, 3.5], [2.0, 3.0, 4.0]]


def _attention_model(name):
    if name == "vit_tiny":
        from secateurs.models import create_model

        torch.manual_seed(0)
        return create_model("vit_tiny", num_classes=10, in_channels=3, input_size=16).eval(), torch.randn(1, 3, 16, 16)
    from fixtures.real_world import make as make_real

    return make_real(name)


@pytest.mark.parametrize("name", ["vit_tiny", "vit"])
def test_attention_heads_are_priced(name):
    """Attention terms (appended after the layer calls) crashed the model with an IndexError; now their matmuls
    are priced at the tables' ms per MAC, so a MACs-valued profile reproduces the whole MACs model, heads too."""
    model, x = _attention_model(name)
    graph = build_channel_graph(model, x)
    assert graph.attention
    lm = LatencyModel(graph, _macs_profile(model, graph, tuple(x.shape[1:])))
    macs = MacsModel(graph)
    assert lm.ms_per_mac == pytest.approx(1e-6, rel=1e-9)
    assert lm.dense == pytest.approx(1e-6 * (macs.dense - macs.constant), rel=1e-9)
    for seed in range(2):
        kept = _random_kept(graph, seed)
        assert lm.exact(kept) == pytest.approx(1e-6 * (macs.exact(kept) - macs.constant), rel=1e-9)
        assert lm.features(kept)[0] == pytest.approx(lm.exact(kept), rel=1e-9)
    names = [m for m, _ in lm.layer_ms()]
    assert names[len(graph.layers):] == [a.module for a in graph.attention]
    gid = lm._heads[0].out.groups[0][0]  # the first attention module's head group
    assert lm.exact({gid: [0]}) < lm.dense  # fewer heads: predicted faster


def test_interpolation_is_held_below_the_smallest_grid_width():
    """A steep first segment extrapolated below the grid predicted negative ms for soft counts < 1."""
    from secateurs.cost.latency import _interp2
    from secateurs.cost.latency_profile import LayerTable

    table = LayerTable("sig", [1, 2, 4], [1, 2], [[0.1, 0.2], [1.0, 2.0], [2.0, 4.0]])
    c = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    low = _interp2(table, c, 1.0, False)
    assert float(low) == pytest.approx(0.1)  # held at the smallest point, not 0.1 - 0.8 * 0.9 < 0
    assert float(_interp2(table, 0.0, 0.0, False)) == pytest.approx(0.1)
    assert float(_interp2(table, 1.5, 1.0, False)) == pytest.approx(0.55)  # inside the grid: bilinear as before
    assert float(_interp2(table, 8.0, 2.0, False)) == pytest.approx(8.0)  # above: the last segment extended


def test_onnxruntime_with_bfloat16_is_refused_by_the_library():
    from secateurs.cost.measured import measure_latency
    from secateurs.errors import ArgumentError
    from secateurs.structured.latency import LatencyConfig

    model = Tiny().eval()
    graph = build_channel_graph(model, torch.randn(1, *SHAPE))
    with pytest.raises(ValueError, match="bfloat16"):
        profile_latency(model, graph, SHAPE, runtime="onnxruntime", dtype="bfloat16", **QUICK)
    with pytest.raises(ValueError, match="bfloat16"):
        measure_latency(model, model, SHAPE, runtime="onnxruntime", dtype="bfloat16", budget_s=0.0)
    with pytest.raises(ArgumentError) as exc:
        LatencyConfig(runtime="onnxruntime", dtype="bfloat16")
    assert exc.value.argument == "dtype"
    assert LatencyConfig(dtype="bfloat16").dtype == "bfloat16"  # torch measures bfloat16


def test_secant_keeps_each_grids_corners():
    from secateurs.cost.latency import _secant
    from secateurs.cost.latency_profile import LayerTable

    for full in (16, 24, 64):
        g = lp._grid(full, True)
        t = _secant(LayerTable("s", g, [5], [[float(v)] for v in g]))
        assert t.in_grid == [1, full] and t.out_grid == [5] and [r[0] for r in t.ms] == [1.0, float(full)]
        both = _secant(LayerTable("s", g, g, [[float(i * o) for o in g] for i in g]))
        assert both.in_grid == both.out_grid == [1, full]
        assert both.ms == [[1.0, float(full)], [float(full), float(full * full)]]


def test_soft_reads_the_staircase_secant_and_exact_its_steps():
    """On a staircase table exact() has the steps; soft() (AutoBot's loss) the secant between one channel and full
    width: the two agree at full width and at one channel, soft's gradient at full width is the secant's slope
    (not the zero of the flat top stair, nor of a flat segment between grid points on one stair), and soft at hard
    gates is not exact() between the corners."""
    from fixtures.topologies import zoo_case

    model, x, graph, _ = zoo_case("resnet56")
    lm = LatencyModel(graph, macs_profile(model, graph, tuple(x.shape[1:]), stairs=16))
    gid, width = max(lm.widths.items(), key=lambda kv: kv[1])
    assert width == 64
    assert float(lm.soft({})) == pytest.approx(lm.exact({})) == pytest.approx(lm.dense)
    assert float(lm.soft({gid: torch.tensor(1.0)})) == pytest.approx(lm.exact({gid: [0]}))
    g = torch.ones(width, dtype=torch.float64, requires_grad=True)
    lm.soft({gid: g}).backward()
    top = lm.exact({gid: list(range(width))}) - lm.exact({gid: list(range(width - 15))})
    assert top == pytest.approx(0.0, abs=1e-12)  # the top stair (49-64) is flat in exact()
    slope = (lm.exact({}) - lm.exact({gid: [0]})) / (width - 1)
    assert float(g.grad.sum()) == pytest.approx(slope * width, rel=1e-6)  # the secant prices every channel alike
    mid = width - 3  # inside the top stair
    assert float(lm.soft({gid: torch.tensor(float(mid))})) < lm.exact({gid: list(range(mid))})


def test_soft_prices_a_group_whose_grid_points_share_a_stair():
    """Stairs of 32 channels on a 64-wide group: the grid's last quarter (48-64) lies on one stair, so a read with
    points at 48 and 64 (the quarters) is flat at full width; the secant still gives every channel a price, and the
    per-channel worth of the group is never zero while its exact cost from one channel to full width rises."""
    from fixtures.topologies import zoo_case

    model, x, graph, _ = zoo_case("resnet56")
    lm = LatencyModel(graph, macs_profile(model, graph, tuple(x.shape[1:]), stairs=32))
    worth = lm.per_channel()
    for gid, width in lm.widths.items():
        rises = lm.exact({}) > lm.exact({gid: [0]})
        assert (worth[gid] > 0) == rises, gid
    gid = max(lm.widths, key=lm.widths.get)
    assert lm.exact({gid: list(range(48))}) == pytest.approx(lm.exact({}))  # flat: the case this guards
    assert worth[gid] > 0


@pytest.mark.parametrize("tables", ["together", "each"])
def test_layer_tables_timed_together_or_each_fill_their_own_cells(monkeypatch, tiny, tables):
    """``tables="together"`` times every table's points in one interleaved run (each round visits every layer, so
    load that drifts over the profile's seconds slows all tables alike); ``"each"`` one table after another. In
    both, each point's time lands in its own table's (c_in, c_out) cell. Times are faked: the widths of each
    runner's layer, so a misplaced slice shows."""
    model, graph, _ = tiny
    import secateurs.timing as timing

    def fake_runner(runtime, layer, x, threads):
        w = (layer.in_features, layer.out_features) if isinstance(layer, nn.Linear) else \
            (layer.in_channels, layer.out_channels)
        fn = lambda: None  # noqa: E731
        fn.ms = 1000.0 * w[0] + w[1]
        return fn

    calls = []

    def fake_interleaved(fns, budget_s, **kw):
        calls.append((len(fns), budget_s))
        return timing.Timing(ms=[f.ms for f in fns], best_ms=[f.ms for f in fns], ratios=[1.0] * len(fns), rounds=3,
                             calls_per_block=[1] * len(fns), threads=1, loadavg_before=None, loadavg_after=None,
                             elapsed_s=0.0)

    monkeypatch.setattr(profiling, "_runner", fake_runner)
    monkeypatch.setattr(timing, "interleaved", fake_interleaved)
    _, _, grids = lp.layer_grids(model, graph, SHAPE)
    out = profiling._time_tables(grids, runtime="torch", batch_size=2, threads=1, dtype=torch.float32,
                                 device=torch.device("cpu"), gen=torch.Generator().manual_seed(0), budget_s=0.5,
                                 tables=tables, log=lambda s: None)
    sizes = [len(t.in_grid) * len(t.out_grid) for _, t in grids]
    assert len(out) == len(grids) == 3
    if tables == "together":
        assert calls == [(sum(sizes), 0.5 * len(grids))]  # one timing, the tables' budgets summed
    else:
        assert calls == [(n, 0.5) for n in sizes]
    for t in out:
        assert t.ms == [[1000.0 * ci + co for co in t.out_grid] for ci in t.in_grid]
    with pytest.raises(ValueError, match="tables"):
        profile_latency(model, graph, SHAPE, tables="sometimes")
    key = lambda **kw: lp.profile_key(model, graph, SHAPE, batch_size=2, threads=1, **kw)  # noqa: E731
    assert key()["tables"] == "each" and key(tables="together") != key()  # a cached profile says how it was timed
