"""Attention heads are prunable groups (issue 10.3c): q/k/v rows and out-projection columns per head, for
``nn.MultiheadAttention`` (packed in-projection) and for attention written with Linears (timm's qkv / q,k,v)."""
import copy
import random

import pytest
import torch
import torch.nn as nn

from fixtures.real_world import TimmAttention, make
from secateurs.flops import count_model
from secateurs.graph import ChannelGate, build_channel_graph
from secateurs.graph._attention import PrunedMultiheadAttention
from secateurs.cost.macs import MacsModel
from secateurs.structured import PruningPlan, apply_plan, channel_scores, mask_model, select_channels

ATTENTION = ["vit", "timm_vit", "timm_vit_qkv_separate"]


def _attn_modules(model):
    return [m for m in model.modules() if isinstance(m, (nn.MultiheadAttention, PrunedMultiheadAttention,
                                                          TimmAttention))]


@pytest.mark.parametrize("name", ATTENTION)
def test_every_attention_module_has_a_prunable_head_group(name):
    model, x = make(name)
    graph = build_channel_graph(model, x)
    heads = [g for g in graph.groups if g.id.endswith(":heads")]
    assert len(heads) == len(_attn_modules(model)) == len(graph.attention) == 2
    assert all(g.prunable and g.width == _attn_modules(model)[0].num_heads for g in heads)
    # Torch-Pruning's blocked groups of the projections are replaced, not left beside the head group
    assert not any(g.id.endswith(("qkv:out", "attn.q:out")) for g in graph.groups)


@pytest.mark.parametrize("name", ATTENTION)
@pytest.mark.parametrize("seed", [0, 1])
def test_removing_heads_equals_masking_them(name, seed):
    model, x = make(name)
    graph = build_channel_graph(model, x)
    rng = random.Random(seed)
    kept = {g.id: sorted(rng.sample(range(g.width), rng.randint(1, g.width - 1))) for g in graph.prunable_groups()
            if g.id.endswith(":heads")}
    plan = PruningPlan.from_kept(graph, kept)
    x3 = torch.randn(3, 3, 8, 8)  # another batch size than the one traced
    with torch.no_grad(), mask_model(model, graph, plan):
        masked = model(x3)
    pruned = copy.deepcopy(model)
    report = apply_plan(pruned, plan, x, graph=graph)  # verified: MACs, params, scale-aware equivalence
    assert [m.num_heads for m in _attn_modules(pruned)] == [len(k) for k in kept.values()]
    assert report.macs_after == count_model(pruned, (3, 8, 8)).macs < report.macs_before
    with torch.no_grad():
        assert torch.allclose(pruned(x3), masked, atol=1e-6)


def test_head_pruning_scales_the_attention_matmuls():
    """timm-style ViT, one head of four removed in each block: the count falls by exactly the head's share of qkv,
    proj, QKᵀ and AV (hand formula)."""
    model, x = make("timm_vit")
    graph = build_channel_graph(model, x[:1])
    plan = PruningPlan.from_kept(graph, {a.group: [0, 1, 2] for a in graph.attention})
    pruned = copy.deepcopy(model)
    apply_plan(pruned, plan, x[:1], graph=graph)
    t, d, hd = 5, 16, 4  # tokens, embedding, head_dim
    per_head = t * d * 3 * hd + t * hd * d + 2 * t * t * hd
    assert count_model(model, (3, 8, 8)).macs - count_model(pruned, (3, 8, 8)).macs == 2 * per_head
    assert graph.attention[0].macs == 2 * t * t * hd * 4


def test_heads_trade_against_mlp_neurons():
    """The criteria score heads and the selection spends the budget on heads and MLP neurons alike."""
    model, x = make("timm_vit")
    graph = build_channel_graph(model, x[:1])
    scores = channel_scores(model, graph, "l1")
    assert all(scores[a.group].shape == (4,) for a in graph.attention)
    soft = MacsModel(graph)
    per = soft.per_channel()
    assert per["blocks.0.attn:heads"] > per["blocks.0.mlp.0:out"] > 0  # a head costs more than a neuron
    for a in graph.attention:  # make heads cheap to remove: the selection must take them
        scores[a.group] = torch.tensor([1e-6, 1.0, 1.0, 1.0], dtype=torch.float64)
    sel = select_channels(graph, scores, 0.3)
    assert any(len(sel.plan.groups[a.group]) < 4 for a in graph.attention)
    pruned = copy.deepcopy(model)
    report = apply_plan(pruned, sel.plan, x[:1], graph=graph)
    assert report.macs_reduction >= 0.3


def test_mha_gate_puts_the_parameter_back_in_place():
    model, x = make("vit")
    graph = build_channel_graph(model, x)
    mha = model.encoder.layers[0].self_attn
    weight, keys = mha.out_proj.weight, list(model.state_dict())
    gid = "encoder.layers.0.self_attn:heads"
    gate = torch.tensor([1.0, 0.5], requires_grad=True)
    with ChannelGate(model, graph, {gid: gate}):
        model(x).sum().backward()
        assert gate.grad is not None and gate.grad.abs().sum() > 0  # differentiable: AutoBot can train it
        with pytest.raises(RuntimeError):
            model(torch.randn(2, 4, 8, 8))  # a failing call still restores the parameter
    assert mha.out_proj.weight is weight and isinstance(weight, nn.Parameter)
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_pruned_mha_with_all_heads_equals_nn_multiheadattention(batch_first, need_weights):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(12, 3, batch_first=batch_first).eval()
    with torch.no_grad():
        mha.in_proj_bias.uniform_(-1, 1)
        mha.out_proj.bias.uniform_(-1, 1)
    new = PrunedMultiheadAttention.from_module(mha, [0, 1, 2])
    q, kv = torch.randn(2, 5, 12), torch.randn(2, 7, 12)
    if not batch_first:
        q, kv = q.transpose(0, 1), kv.transpose(0, 1)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, -2:] = True
    masks = [None, torch.ones(5, 7, dtype=torch.bool).triu(3), torch.randn(2 * 3, 5, 7)]
    for mask in masks:
        kp = pad if mask is None or mask.dtype == torch.bool else torch.zeros(2, 7).masked_fill(pad, float("-inf"))
        with torch.no_grad():
            want = mha(q, kv, kv, key_padding_mask=kp, attn_mask=mask, need_weights=need_weights)
            got = new(q, kv, kv, key_padding_mask=kp, attn_mask=mask, need_weights=need_weights)
        assert torch.allclose(got[0], want[0], atol=1e-6)
        assert (got[1] is None) == (want[1] is None)
        if want[1] is not None:
            assert torch.allclose(got[1], want[1], atol=1e-6)


def test_pruned_mha_is_causal_follows_nn_multiheadattention():
    """is_causal is a hint about attn_mask: without one nn.MultiheadAttention refuses (the pruned module built a
    CPU mask instead, wrong on CUDA); with one the outputs agree. The meta device checks that every tensor the
    module makes follows its inputs' device."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(12, 3, batch_first=True).eval()
    new = PrunedMultiheadAttention.from_module(mha, [0, 1, 2])
    x = torch.randn(2, 5, 12)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    for m in (mha, new):
        with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
            m(x, x, x, is_causal=True, need_weights=False)
    with torch.no_grad():
        want = mha(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0]
        got = new(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0]
        assert torch.allclose(got, want, atol=1e-6)
        meta = copy.deepcopy(new).to("meta")
        out = meta(x.to("meta"), x.to("meta"), x.to("meta"), attn_mask=torch.ones(5, 5, dtype=torch.bool, device="meta").triu(1),
                   key_padding_mask=torch.zeros(2, 5, dtype=torch.bool, device="meta"), need_weights=True)
    assert out[0].device.type == "meta" and out[0].shape == (2, 5, 12)


def test_pruned_mha_per_head_mask_follows_the_kept_heads():
    """A (batch * heads, L, S) mask: the pruned module applies the rows of the heads it kept."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(12, 3, batch_first=True).eval()
    x, mask = torch.randn(2, 5, 12), torch.randn(2 * 3, 5, 5)
    gated = copy.deepcopy(mha)
    with torch.no_grad():
        gated.out_proj.weight[:, 4:8] = 0  # head 1 silenced
        want = gated(x, x, x, attn_mask=mask, need_weights=False)[0]
        got = PrunedMultiheadAttention.from_module(mha, [0, 2])(x, x, x, attn_mask=mask, need_weights=False)[0]
    assert torch.allclose(got, want, atol=1e-6)


def test_autobot_scores_heads_and_meets_the_target():
    from secateurs.structured.autobot import AutoBotConfig, autoprune

    model, x = make("timm_vit")
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 5, (4,), generator=gen)) for _ in range(4)]
    result = autoprune(model, data, 0.4, config=AutoBotConfig(batches=12, batch_size=4, augment=False),
                       example_inputs=x[:1], progress=False)
    assert {"blocks.0.attn:heads", "blocks.1.attn:heads"} <= set(result.scores)
    assert 0.4 <= result.report.macs_reduction <= 0.4 + result.config.tolerance  # the budget window
    assert result.report.macs_after == count_model(model, (3, 8, 8)).macs


def test_head_pruned_vit_exports_to_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from secateurs.structured import export_onnx

    model, x = make("vit")
    graph = build_channel_graph(model, x[:1])
    apply_plan(model, PruningPlan.from_kept(graph, {a.group: [1] for a in graph.attention}), x[:1], graph=graph)
    path = export_onnx(model, x, tmp_path / "vit.onnx")
    x3 = torch.randn(3, 3, 8, 8)
    try:
        import onnxruntime as ort

        out = ort.InferenceSession(str(path)).run(None, {"input": x3.numpy()})[0]
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        out = ReferenceEvaluator(onnx.load(str(path))).run(None, {"input": x3.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), model.eval()(x3), atol=1e-4)


def test_zoo_vit_heads_prune_and_the_checkpoint_replays(tmp_path):
    """The zoo's ViT (timm-style attention): head groups beside the MLP groups, and a head-pruned checkpoint is
    rebuilt by replaying its plan (the file holds no code)."""
    from secateurs.io import ModelSpec, load, save
    from secateurs.models import create_model

    torch.manual_seed(0)
    model = create_model("vit_tiny", num_classes=10, in_channels=1, input_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    graph = build_channel_graph(model, x[:1])
    # the class-token concatenation is along tokens, not channels: no stray one-channel group of the residual stream
    assert sorted(g.id for g in graph.prunable_groups()) == sorted(
        [f"blocks.{i}.attn:heads" for i in range(4)] + [f"blocks.{i}.fc1:out" for i in range(4)])
    plan = PruningPlan.from_kept(graph, {"blocks.0.attn:heads": [0, 3], "blocks.2.attn:heads": [1],
                                         "blocks.1.fc1:out": list(range(0, 128, 2))})
    apply_plan(model, plan, x[:1], graph=graph)
    assert [b.attn.num_heads for b in model.blocks] == [2, 4, 1, 4]
    assert model.blocks[0].attn.attn_dim == 32 and model.blocks[0].attn.qkv.out_features == 96
    spec = ModelSpec(name="vit_tiny", kwargs={"num_classes": 10, "in_channels": 1, "input_size": 28},
                     input_shape=[1, 28, 28], num_classes=10, plan=plan.to_dict())
    save(tmp_path / "ckpt", model, spec)
    loaded = load(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
