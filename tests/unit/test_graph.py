"""Channel groups: coupling on every test topology and zoo model, reasons for what cannot be pruned."""
import copy

import pytest
import torch

from fixtures.topologies import EXPECTED, TOPOLOGIES, ZOO_FAST, ZOO_SLOW, make, zoo_case
from secateurs.graph import _tp_adapter, build_channel_graph, explain

# prunable groups per zoo model, counted by hand from the architectures: resnet20/56: 3 residual streams + one inner
# width per block; vgg16: 13 convs + 1 hidden linear; densenet40: stem + 36 dense layers + 2 transitions;
# mobilenetv2: stem (with block 1's depthwise) + 16 expansions (expand+depthwise) + 7 stage streams + last 1x1 conv;
# googlenet: pre-layer + 9 inceptions x 7 branch convs; lenet5: 2 convs + 2 hidden fc; mlp: 2 hidden; cnn1d: 3 convs.
ZOO_GROUPS = {
    "resnet20": 12, "resnet56": 30, "vgg16": 14, "mobilenetv2": 25, "densenet40": 39, "lenet5": 4, "mlp": 2,
    "cnn1d": 3, "googlenet": 64,
}


def _graph(name):
    model, x = make(name)
    return model, x, build_channel_graph(model, x)


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_group_widths_and_unprunable(name):
    _, _, graph = _graph(name)
    assert sorted(g.width for g in graph.prunable_groups()) == EXPECTED[name]["widths"]
    has_fixed = any(not g.prunable for g in graph.groups if not g.id.startswith(("fc", "head", "fc2")))
    assert has_fixed == EXPECTED[name]["unprunable"]
    for g in graph.prunable_groups():
        assert g.producers() and g.consumers(), g.id
        for m in g.members:
            assert len(m.indices) == len(m.channels) and set(m.channels) <= set(range(g.width))


def _members(graph, gid):
    return {(m.module, m.kind): (m.indices, m.channels) for m in graph[gid].members}


def test_concat_members_carry_offsets():
    _, _, graph = _graph("concat")
    a = _members(graph, "a.0:out")
    assert a[("b.0", "in")] == ((6, 7, 8, 9), (0, 1, 2, 3))  # second operand of the first cat
    assert a[("c", "in")] == ((6, 7, 8, 9), (0, 1, 2, 3))
    assert _members(graph, "b.0:out")[("bn", "norm")][0] == (10, 11, 12, 13, 14)


def test_split_order_fixed_and_reported():
    # Torch-Pruning maps chunk pieces to consumers in traversal order (right.0 got channels 0..3); we repair it
    model, x, graph = _graph("split")
    raw = {(i.name, i.side): i for g in _tp_adapter.trace(copy.deepcopy(model), x).groups if g.root == "stem.0"
           for i in g.items}
    assert raw[("left.0", "in")].root_idxs == [0, 1, 2, 3] and raw[("right.0", "in")].root_idxs == [4, 5, 6, 7]
    # the chunk ties channel i of each half: one group channel per pair, pruned symmetrically
    stem = _members(graph, "stem.0:out")
    assert stem[("stem.0", "out")] == (tuple(range(8)), (0, 1, 2, 3, 0, 1, 2, 3))
    assert stem[("left.0", "in")] == stem[("right.0", "in")] == ((0, 1, 2, 3), (0, 1, 2, 3))
    assert graph["stem.0:out"].prunable and graph["stem.0:out"].width == 4


def test_depthwise_shared_flatten_se():
    _, _, dw = _graph("depthwise")
    assert ("dw.0", "dw") in _members(dw, "expand.0:out")
    _, _, shared = _graph("shared")
    assert {("shared", "out"), ("shared", "in")} <= set(_members(shared, "stem.0:out"))
    _, _, flat = _graph("flatten_linear")
    idx, ch = _members(flat, "c2:out")[("fc1", "in")]
    assert idx == tuple(range(80)) and ch == tuple(c for c in range(5) for _ in range(16))
    _, _, se = _graph("squeeze_excite")
    assert {("se_expand", "out"), ("se_reduce", "in"), ("fc", "in")} <= set(_members(se, "body.0:out"))


def test_reasons_for_what_torch_pruning_gets_wrong():
    _, _, grouped = _graph("grouped")  # groups=2 over 8 channels: channel i of each conv group tied to i + 4
    for gid in ("stem.0:out", "grouped.0:out"):
        conv = [m for m in grouped[gid].members if m.module == "grouped.0" and m.kind in ("in", "out")]
        assert grouped[gid].prunable and conv and dict(zip(conv[0].indices, conv[0].channels)) == {
            i: i % 4 for i in range(8)}
    _, _, att = _graph("spatial_attention")  # mean over channels: Torch-Pruning calls it channel-preserving
    assert "changes the output" in att["stem.0:out"].reason
    names = dict(att.unprunable)
    assert "stem.0 (out)" in names and "model input" in names["stem.0 (in)"]


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_classifier_never_prunable(name):
    _, _, graph = _graph(name)
    head = graph.layers[-1].module
    assert not graph[f"{head}:out"].prunable
    assert "model output" in graph[f"{head}:out"].reason


def test_ids_stable_and_model_untouched():
    model, x = make("residual")
    for p in model.parameters():
        p.requires_grad_(False)  # frozen weights (AutoBot) must still trace
    model.train()
    before = copy.deepcopy(model.state_dict())
    g1 = build_channel_graph(model, x)
    g2 = build_channel_graph(make("residual", seed=3)[0], x)
    assert [(g.id, g.members) for g in g1.groups] == [(g.id, g.members) for g in g2.groups]
    assert model.training and not any(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_ignored_and_output_layers():
    model, x = make("residual")
    graph = build_channel_graph(model, x, ignored_layers=["b1.0.0"], output_layers=[model.b2[1]])
    assert "ignored_layers" in graph["b1.0.0:out"].reason
    assert "model output" in graph["b2.1:out"].reason


def test_explain_table():
    model, x = make("concat")
    e = explain(model, x)
    table = e.table()
    assert "a.0:out" in table and "cannot be pruned" in table and "model input" in table
    info = {g.id: g for g in e.groups}
    assert info["fc:out"].macs_all == 0 and info["a.0:out"].macs_all > 0
    assert 0 < info["c:out"].macs_share < 1


@pytest.mark.parametrize("name", ZOO_FAST + [pytest.param(n, marks=pytest.mark.slow) for n in ZOO_SLOW])
def test_zoo_groups(name):
    _, _, graph, _ = zoo_case(name)
    assert len(graph.prunable_groups()) == ZOO_GROUPS[name]
    assert [g for g in graph.groups if not g.prunable] == [graph[f"{graph.layers[-1].module}:out"]]


def test_gate_vectors_in_another_dtype_gate_exactly():
    """Gates built as CPU float32 masks gate a float64 model exactly. (The same hook moves gates to the
    activation's device; that path needs a GPU and is not exercised by the CPU suite.)"""
    import torch
    from torch import nn

    from secateurs.graph import ChannelGate, build_channel_graph

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)).double().eval()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    graph = build_channel_graph(model, x)
    gid = graph.prunable_groups()[0].id
    gate = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float32)  # CPU float32 vs float64 activations
    with ChannelGate(model, graph, {gid: gate}):
        gated = model(x)
    with torch.no_grad():
        model[0].weight[[1, 3]] = 0
        model[0].bias[[1, 3]] = 0
    torch.testing.assert_close(gated, model(x))
