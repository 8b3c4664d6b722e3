"""Attention heads as channel groups: one group per attention module whose channels are its heads.

Why heads and not projection channels. Removing channel ``j`` of one head's query/key changes that head's attention
scores (``q·kᵀ`` sums over ``j``), so a q/k channel is not "zeroed" by any gate; but removing a *whole head* ``h``
removes its rows in q, k and v and its columns in the output projection, and the output projection is the only
place the head's result is read. So gating head ``h`` at the output projection's input (its ``head_dim`` columns)
is exactly removing it, like any other group gated at its consumers (``gates.py``).

Two ways attention is written, both recognised by their structure (verification then proves the coupling on the
example batch, as for every group, so a module that only looks like attention is blocked, never mis-pruned):

* ``nn.MultiheadAttention`` (packed ``in_proj_weight``, ``out_proj`` applied functionally): one member of kind
  ``mha`` whose indices are the in-projection rows of each head (q, k and v). The gate scales the head's columns of
  ``out_proj.weight`` for the duration of the call. Surgery replaces the module by ``PrunedMultiheadAttention``
  (``nn.MultiheadAttention`` requires ``embed_dim == num_heads * head_dim``, which removing heads breaks); the
  replacement takes the same call signature and returns the same ``(output, weights)``.
* attention written with Linears (timm's ``Attention``: a ``qkv`` Linear viewed as (3, heads, head_dim), or ``q``,
  ``k``, ``v`` Linears; the output Linear ``proj``/``out_proj``/``o_proj``; an integer ``num_heads``): ordinary
  Linear members (the heads' rows of the input projections, the heads' columns of the output projection) plus a
  member of kind ``heads`` on the attention module, whose ``num_heads`` (and ``attn_dim``-style widths) surgery
  updates. Torch-Pruning's own groups of those projections (blocked today: the unbind of q/k/v, the reshape into
  heads) are replaced by the head group.

Cost: the MACs no Linear layer call covers inside the module (the QKᵀ and AV matmuls; for ``nn.MultiheadAttention``
also its functional projections) scale with the number of kept heads (``AttentionCall``; ``cost.macs``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .types import AttentionCall, ChannelGroup, Member, block

_OUT_NAMES = ("proj", "out_proj", "o_proj")
_QKV_NAMES = (("q", "k", "v"), ("q_proj", "k_proj", "v_proj"))
_WIDTH_ATTRS = ("attn_dim", "all_head_size", "inner_dim")  # widths some implementations keep = heads * head_dim


@dataclass(frozen=True)
class _Found:
    name: str
    kind: str  # 'mha' | 'linear'
    heads: int
    head_dim: int
    qkv: tuple[str, ...] = ()  # packed ('qkv',) or separate (q, k, v) Linear names (full module names)
    proj: str = ""


def is_packed(module: nn.Module) -> bool:
    """``nn.MultiheadAttention`` or its pruned replacement: packed in-projection, functional out-projection."""
    return isinstance(module, (nn.MultiheadAttention, PrunedMultiheadAttention))


def _find(model: nn.Module) -> list[_Found]:
    found = []
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            if m._qkv_same_embed_dim and m.bias_k is None and m.in_proj_weight is not None:
                found.append(_Found(name, "mha", m.num_heads, m.head_dim))
            continue
        if isinstance(m, PrunedMultiheadAttention):
            found.append(_Found(name, "mha", m.num_heads, m.head_dim))
            continue
        heads = getattr(m, "num_heads", None)
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
            continue
        children = dict(m.named_children())
        proj = next((n for n in _OUT_NAMES if isinstance(children.get(n), nn.Linear)), None)
        if proj is None or children[proj].in_features % heads:
            continue
        width = children[proj].in_features
        qkv = children.get("qkv")
        if isinstance(qkv, nn.Linear) and qkv.out_features == 3 * width:
            names: tuple[str, ...] = ("qkv",)
        else:
            names = next((t for t in _QKV_NAMES if all(isinstance(children.get(n), nn.Linear)
                                                         and children[n].out_features == width for n in t)), ())
        if names:
            prefix = f"{name}." if name else ""
            found.append(_Found(name, "linear", heads, width // heads, tuple(prefix + n for n in names),
                                prefix + proj))
    return found


def head_groups(model: nn.Module, groups: list[ChannelGroup], calls: Sequence, module_macs: dict[str, int]
                ) -> tuple[list[ChannelGroup], list[AttentionCall]]:
    """Add one head group per attention module of ``model`` (module docstring) that ran in the traced forward;
    Torch-Pruning's groups of its projections are replaced. Returns the new group list and the attention calls."""
    called = {c.module for c in calls}
    attention: list[AttentionCall] = []
    for f in _find(model):
        if f.name not in module_macs:
            continue  # not run by the example forward
        gid = f"{f.name}:heads"
        if f.kind == "mha":
            width = f.heads * f.head_dim
            rows = [s * width + h * f.head_dim + j for h in range(f.heads) for s in range(3) for j in range(f.head_dim)]
            members = [Member(f.name, "mha", tuple(rows), tuple(r % width // f.head_dim for r in rows))]
            group = ChannelGroup(gid, f.heads, members)
        else:
            if not all(n in called for n in (*f.qkv, f.proj)):
                continue  # projections used functionally (weights read directly): the tracer cannot see them
            mine = {(n, "out") for n in f.qkv} | {(f.proj, "in")}
            touching = [g for g in groups if any((m.module, m.side) in mine for m in g.members)]
            if any((m.module, m.side) not in mine for g in touching for m in g.members):
                continue  # the projections are coupled to more than this attention: leave Torch-Pruning's groups
            groups = [g for g in groups if g not in touching]
            width = f.heads * f.head_dim
            members = [Member(n, "out", *_rows(f, len(f.qkv) == 1)) for n in f.qkv]
            members.append(Member(f.proj, "in", *_rows(f, False)))
            members.append(Member(f.name, "heads", tuple(range(f.heads)), tuple(range(f.heads))))
            group = ChannelGroup(gid, f.heads, members)
        if f.heads < 2:
            block(group, f"{f.name} has a single head")
        inner = sum(c.macs for c in calls if c.module.startswith(f"{f.name}.") or c.module == f.name)
        attention.append(AttentionCall(f.name, gid, f.heads, f.head_dim, max(module_macs[f.name] - inner, 0)))
        groups.append(group)
    return groups, attention


def _rows(f: _Found, packed: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Indices (and their head) of every head's features in a projection of width heads * head_dim (three such
    blocks, q/k/v, in a packed qkv Linear: timm's (3, heads, head_dim) layout)."""
    width, blocks = f.heads * f.head_dim, 3 if packed else 1
    idx = [s * width + h * f.head_dim + j for s in range(blocks) for h in range(f.heads) for j in range(f.head_dim)]
    return tuple(idx), tuple(i % width // f.head_dim for i in idx)


def remove_heads(model: nn.Module, name: str, indices: Sequence[int]) -> None:
    """Surgery for the ``heads``/``mha`` members of ``name`` (their indices; see ``head_groups``)."""
    module = model.get_submodule(name)
    if is_packed(module):
        width = module.num_heads * module.head_dim
        drop = sorted({int(r) % width // module.head_dim for r in indices})
        keep = [h for h in range(module.num_heads) if h not in drop]
        new = PrunedMultiheadAttention.from_module(module, keep)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
        return
    before = module.num_heads
    module.num_heads = before - len(set(indices))
    for attr in _WIDTH_ATTRS:
        value = getattr(module, attr, None)
        if isinstance(value, int) and value == before * (value // before) and value % before == 0:
            setattr(module, attr, value // before * module.num_heads)


def params_delta(module: nn.Module, rows: int) -> int:
    """Parameters a packed attention module loses when ``rows`` in-projection rows (3 per head feature) go."""
    if not is_packed(module):
        return 0  # Linear-style: the projections are members of their own; the module keeps no weights
    e_in = module.in_proj_weight.shape[1]
    bias = module.in_proj_bias is not None
    cols = rows // 3
    return -(rows * e_in + bias * rows + cols * module.out_proj.weight.shape[0])


class PrunedMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with some heads removed: q/k/v projections of ``num_heads * head_dim`` features
    over an ``embed_dim`` input, output projection back to ``embed_dim``. Same call signature and return value;
    ``attn_mask`` may be 2-D (L, S) or per head (batch * original heads, L, S). ``_qkv_same_embed_dim`` is False so
    ``nn.TransformerEncoderLayer`` never hands it to the fused kernel (which assumes ``embed_dim`` features)."""

    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, *, bias: bool = True, dropout: float = 0.0,
                 batch_first: bool = False, head_index: Sequence[int] | None = None, original_heads: int = 0):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.dropout, self.batch_first = dropout, batch_first
        self.head_index = tuple(head_index if head_index is not None else range(num_heads))
        self.original_heads = original_heads or num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * num_heads * head_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * num_heads * head_dim)) if bias else None
        self.out_proj = nn.Linear(num_heads * head_dim, embed_dim, bias=bias)

    @classmethod
    def from_module(cls, m: nn.Module, keep: Sequence[int]) -> "PrunedMultiheadAttention":
        keep = list(keep)
        d, width = m.head_dim, m.num_heads * m.head_dim
        w = m.in_proj_weight
        rows = torch.tensor([s * width + h * d + j for s in range(3) for h in keep for j in range(d)],
                            dtype=torch.long, device=w.device)
        cols = rows[: len(keep) * d]
        old_index = getattr(m, "head_index", tuple(range(m.num_heads)))
        new = cls(m.embed_dim, len(keep), d, bias=m.in_proj_bias is not None, dropout=m.dropout,
                  batch_first=m.batch_first, head_index=[old_index[h] for h in keep],
                  original_heads=getattr(m, "original_heads", m.num_heads))
        new = new.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.in_proj_weight.copy_(w[rows])
            if m.in_proj_bias is not None:
                new.in_proj_bias.copy_(m.in_proj_bias[rows])
            new.out_proj.weight.copy_(m.out_proj.weight[:, cols])
            if m.out_proj.bias is not None:
                new.out_proj.bias.copy_(m.out_proj.bias)
        for p_new, p_old in ((new.in_proj_weight, w), (new.out_proj.weight, m.out_proj.weight)):
            p_new.requires_grad_(p_old.requires_grad)
        return new.train(m.training)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if self.batch_first and not unbatched:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        (tgt, b, _), src = query.shape, key.shape[0]
        h, d = self.num_heads, self.head_dim
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3

        def heads(x, w, bias, n):  # (n, b, e) -> (b, h, n, d)
            return F.linear(x, w, bias).view(n, b, h, d).permute(1, 2, 0, 3)

        q, k, v = heads(query, w_q, b_q, tgt), heads(key, w_k, b_k, src), heads(value, w_v, b_v, src)
        mask = self._mask(attn_mask, key_padding_mask, b, tgt, src, q.dtype, is_causal)
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q * d ** -0.5) @ k.transpose(-2, -1)
            attn = (scores + mask if mask is not None else scores).softmax(-1)
            out = F.dropout(attn, p) @ v if p else attn @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = out.permute(2, 0, 1, 3).reshape(tgt, b, h * d)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        if self.batch_first and not unbatched:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1)
        if attn is not None and average_attn_weights:
            attn = attn.mean(1)
        if attn is not None and unbatched:
            attn = attn.squeeze(0)
        return out, attn

    def _mask(self, attn_mask, key_padding_mask, b: int, tgt: int, src: int, dtype, is_causal: bool):
        """One additive float mask (b or 1, heads or 1, tgt, src), from ``nn.MultiheadAttention``'s conventions
        (bool True = not allowed)."""
        def additive(m):
            return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, float("-inf")) \
                if m.dtype == torch.bool else m.to(dtype)

        mask = None
        if attn_mask is None and is_causal:  # nn.MultiheadAttention's rule: is_causal is a hint about attn_mask
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                               "method `generate_square_subsequent_mask` to create this mask.")
        if attn_mask is not None:
            m = additive(attn_mask)
            if m.dim() == 3:  # (batch * original heads, L, S): keep the rows of the kept heads
                m = m.view(b, self.original_heads, tgt, src)[:, list(self.head_index)]
            mask = m
        if key_padding_mask is not None:
            kp = additive(key_padding_mask).view(b, 1, 1, src)
            mask = kp if mask is None else mask + kp
        return mask

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads} (of {self.original_heads}), "
                f"head_dim={self.head_dim}, batch_first={self.batch_first}")


def gate_hooks(module: nn.Module, points: list, gates_of) -> list:
    """Hooks that gate the heads of a packed attention module: for the duration of each call, ``out_proj.weight``
    is replaced by a copy whose columns of head ``h`` are multiplied by the gate of ``h`` (differentiable; the
    parameter is put back, in its place, even when the call raises). ``points``: GatePoints of kind mha."""
    out = module.out_proj
    d = module.head_dim
    width = module.num_heads * d
    saved: list[Any] = []

    def pre(_m, _args, _kwargs=None):
        gates = gates_of()
        active = [p for p in points if p.group in gates]
        if not active:
            return None
        w = out.weight
        vec = torch.ones(w.shape[1], dtype=w.dtype, device=w.device)
        for p in active:
            cols = torch.tensor([r for r in p.positions if r < width], dtype=torch.long, device=w.device)
            heads = torch.div(cols, d, rounding_mode="floor")
            vec = vec.index_copy(0, cols, gates[p.group].to(device=w.device, dtype=w.dtype)[heads])
        order = list(out._parameters)
        param = out._parameters.pop("weight")
        saved.append((param, order))
        out.__dict__["weight"] = param * vec
        return None

    def post(_m, _args, _output):
        if saved:
            param, order = saved.pop()
            out.__dict__.pop("weight", None)
            rest = dict(out._parameters)
            out._parameters.clear()
            out._parameters.update({n: param if n == "weight" else rest[n] for n in order})
        return None

    return [module.register_forward_pre_hook(pre), module.register_forward_hook(post, always_call=True)]
