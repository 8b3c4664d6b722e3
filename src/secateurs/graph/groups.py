"""Coupled channel groups: the mechanism every structured criterion, plan and AutoBot gate is built on.

A *group* is a set of channels that must be removed together: the output channels of its root layer plus every
channel they are tied to (norm layers after it, the other operand of a residual add, the offset slice of a
concatenation they enter, the input channels of every layer that reads them, a flattened block of features of a
linear layer, both sides of a depthwise conv). Channel ``c`` of a group is one such tied set; ``Member.indices[k]`` is
the index in that member's own coordinates (e.g. an offset inside a concatenation, or one of the 16 features of a
flattened 4x4 map) and ``Member.channels[k]`` the group channel it belongs to.

Grouped convolutions (ResNeXt, RegNet) and equal-size channel splits (``x.chunk(2, 1)`` in ShuffleNetV2, GhostNet,
CSP/C2f blocks) are pruned group-consistently: a conv with ``groups = G`` splits its input
(output) channels into G equal blocks, and every block must lose the same number of channels or ``groups`` becomes
invalid. So channels at the same position of every block are *tied* into one group channel (one score, one
keep/remove decision), exactly as a flattened map ties its H·W features to one channel: removing group channel ``c``
removes position ``p`` in all G blocks, and the conv stays grouped with width ``G·(size − k)``. A chunk is the same
with pieces for blocks: each piece loses the same positions, so ``chunk(n)`` of the narrower tensor cuts at the new
boundaries by itself. (A split whose equal sizes are literals in code, ``x.split(4, 1)``, looks the same to the
tracer; the verification then finds the broken forward and blocks the group.) A channel shuffle (``view(b, g, c/g,
h, w)``, transpose, view back; ShuffleNetV2) is a third kind of block structure: it stays the shuffle of the kept
channels exactly when each of its g blocks loses the same positions.

Ties cross groups: the blocks of a shuffle or a chunk usually hold channels of different producers (the two
branches of a ShuffleNetV2 unit, concatenated), so tying position ``p`` of every block unites channels of several
groups, and groups so united are merged into one (its id: the first one's). Tying is a union-find over (group,
channel) pairs; every resulting channel must meet every block of each tie equally often, or the groups involved are
kept whole with the reason (a concatenation of unequal parts feeding a grouped conv, say).

Coupling is derived from the traced autograd graph (Torch-Pruning's dependency graph, behind ``_tp_adapter``), never
from per-architecture tables. What the tracer cannot express safely is kept in the graph but marked
``prunable=False`` with a reason, so callers can always explain why a layer is left alone.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch.nn as nn

from . import _tp_adapter
from ._tp_adapter import GraphLimits
from ._attention import head_groups
from ._layers import LayerRecorder, is_depthwise, recorded
from ._verify import verify_graph
from .types import (CROSS_CHANNEL_NORMS, KINDS, PER_CHANNEL_NORMS, ChannelGraph, ChannelGroup, Member,
                    block as _block)

__all__ = ["ChannelGraph", "ChannelGroup", "GraphLimits", "Member", "build_channel_graph"]  # types re-exported


def build_channel_graph(
    model: nn.Module,
    example_inputs: Any,
    *,
    ignored_layers: Iterable[str | nn.Module] = (),
    output_layers: Iterable[str | nn.Module] | None = None,
    verify: bool = True,
    limits: GraphLimits | None = None,
) -> ChannelGraph:
    """Trace ``model`` on ``example_inputs`` (a tensor or a tuple of positional inputs; batch 1 gives per-sample
    MACs) and return its channel groups. The model is not modified (tracing runs on a copy).

    ``ignored_layers``: layers whose output channels must be kept (their groups become unprunable).
    ``output_layers``: layers whose outputs are model outputs; ``None`` detects them (any layer whose output tensor
    is returned, or whose channels reach a returned tensor). The classifier is therefore never prunable.
    ``verify``: prune a copy at a random selection and compare it with the channel-gated original (float64); a
    group whose removal breaks the forward pass or changes the result is marked unprunable with the error.
    ``limits``: time and size bounds of the trace (``GraphLimits``; default 60 s, 20 M indices). A model the tracer
    cannot handle raises ``secateurs.errors.GraphError`` with a one-line reason naming the layer or op; a tracer
    failure confined to one op or one group only blocks the groups it touches.
    """
    names = {m: n for n, m in model.named_modules()}
    ignored = {names.get(x, x) if isinstance(x, nn.Module) else x for x in ignored_layers}
    work = _tracing_copy(model)
    recorder = LayerRecorder(work, example_inputs)
    raw = _tp_adapter.trace(work, example_inputs, limits, observe=recorder)
    outputs = set(raw.output_modules)
    if output_layers is not None:
        outputs |= {names.get(x, x) if isinstance(x, nn.Module) else x for x in output_layers}
    if not recorder.done:
        recorder = recorded(work, example_inputs)
    layers, total = recorder.calls, recorder.macs

    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    groups = _tie_groups(work, [_to_group(work, g, outputs, ignored, order) for g in raw.groups])
    groups, attention = head_groups(work, groups, layers, recorder.module_macs)
    _mark_overlaps(groups)
    graph = ChannelGraph(groups, [], layers, total, sorted(outputs, key=lambda n: order.get(n, len(order))),
                         attention)
    if verify:
        verify_graph(model, graph, example_inputs)
    graph.unprunable = _unprunable_layers(graph, raw.notes)
    return graph


@dataclass(frozen=True)
class _Tie:
    """Indices (in ``what``'s coordinates, with the group channel of each) split into ``blocks`` equal blocks of
    ``size``: every block must lose the same positions. ``key`` names the op or layer side (ties of one key in
    different groups are one tie)."""

    key: str
    what: str
    indices: tuple[int, ...]
    channels: tuple[int, ...]
    size: int
    blocks: int


def _tracing_copy(model: nn.Module) -> nn.Module:
    """A structural copy whose parameters share the original's storage (Torch-Pruning sets ``requires_grad`` and
    switches the copy to eval, but never writes weights): deep-copying 25 M weights was a tenth of a build."""
    memo = {id(p): nn.Parameter(p.detach(), requires_grad=p.requires_grad) for p in model.parameters()}
    return copy.deepcopy(model, memo)


def _to_group(model: nn.Module, raw, outputs: set[str], ignored: set[str],
              order: dict[str, int]) -> tuple[ChannelGroup, list[_Tie]]:
    root_channels = sorted(set(raw.items[0].root_idxs))
    pos = {r: i for i, r in enumerate(root_channels)}
    ties: list[_Tie] = []
    members, reasons = [], [raw.error] if raw.error else []
    for item in raw.items:
        if item.error:
            reasons.append(f"Torch-Pruning cannot map channels through {item.name} ({item.error})")
        if item.kind == "output":
            reasons.append("its channels reach the model output")
            continue
        if item.kind == "op":
            sizes = item.split_sizes
            if item.channel_op and len(sizes) > 1 and len(set(sizes)) == 1:  # x.chunk(n, 1): sizes follow width
                ties.append(_Tie(item.name, f"split {item.name}", tuple(item.idxs),
                                 tuple(pos[r] for r in item.root_idxs), sizes[0], len(sizes)))
            elif item.channel_op:
                reasons.append(f"its channels pass through a channel split/slice ({item.name}) whose sizes are "
                               "fixed in forward code")
            if item.shuffle:
                ties.append(_Tie(item.name, f"channel shuffle {item.name}", tuple(item.idxs),
                                 tuple(pos[r] for r in item.root_idxs), *item.shuffle))
            continue
        kind = "param" if item.kind == "param" else _kind(model.get_submodule(item.name), item.side)
        pairs = sorted(zip(item.idxs, (pos[r] for r in item.root_idxs)))
        members.append(Member(item.name, kind, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)))
        reasons += _member_reasons(model, item.name, kind, outputs, ignored)
    members.sort(key=lambda m: (order.get(m.module, len(order)), KINDS.index(m.kind)))
    reasons = list(dict.fromkeys(reasons))
    group = ChannelGroup(
        id=f"{raw.root}:out", width=len(root_channels), members=members,
        prunable=not reasons, reason="; ".join(reasons) or None,
    )
    return group, ties


def _is_grouped(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 and not is_depthwise(module)


def _tie_groups(model: nn.Module, made: Sequence[tuple[ChannelGroup, list[_Tie]]]) -> list[ChannelGroup]:
    """Tie the channels at equal positions of every block of each grouped conv member, equal-size split and channel
    shuffle, across groups (module docstring); groups united by a tie are merged. Returns the new group list."""
    groups = [g for g, _ in made]
    ties = [list(t) for _, t in made]
    for gi, g in enumerate(groups):
        for m in g.members:
            if m.kind in ("in", "out") and _is_grouped(conv := model.get_submodule(m.module)):
                width = conv.in_channels if m.kind == "in" else conv.out_channels
                ties[gi].append(_Tie(f"{m.module} ({m.kind})",
                                     f"{m.module} is a grouped conv (groups={conv.groups}) and",
                                     m.indices, m.channels, width // conv.groups, conv.groups))
    if not any(ties):
        return groups
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(a):
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first: dict[tuple[str, int], tuple[int, int]] = {}
    by_key: dict[str, list[tuple[int, _Tie]]] = {}
    for gi, group_ties in enumerate(ties):
        for t in group_ties:
            by_key.setdefault(t.key, []).append((gi, t))
            for i, c in zip(t.indices, t.channels):
                parent[find((gi, c))] = find(first.setdefault((t.key, i % t.size), (gi, c)))
    comp: dict[tuple[int, int], list[int]] = {}  # root pair -> groups it reaches
    for gi, g in enumerate(groups):
        if ties[gi] or any((gi, c) in parent for c in range(g.width)):
            for c in range(g.width):
                comp.setdefault(find((gi, c)), []).append(gi)
    gparent = list(range(len(groups)))

    def gfind(a: int) -> int:
        while gparent[a] != a:
            gparent[a] = gparent[gparent[a]]
            a = gparent[a]
        return a

    for members in comp.values():
        for gi in members[1:]:
            gparent[gfind(gi)] = gfind(members[0])
    merged: dict[int, list[int]] = {}
    for gi in range(len(groups)):
        merged.setdefault(gfind(gi), []).append(gi)
    out: dict[int, ChannelGroup] = {}
    for part in merged.values():
        if not any(ties[gi] for gi in part) and len(part) == 1:
            out[part[0]] = groups[part[0]]
            continue
        out[min(part)] = _merge(groups, part, find, [(gi, t) for gi in part for t in ties[gi]])
    return [out[k] for k in sorted(out)]


def _merge(groups: list[ChannelGroup], part: list[int], find, part_ties: list[tuple[int, _Tie]]) -> ChannelGroup:
    """One group of the groups ``part`` (indices into ``groups``) with a channel per tied class, or the first of
    them blocked with the reason when the ties cannot be kept (every other group of ``part`` then blocked too)."""
    part = sorted(part)
    roots = list(dict.fromkeys(find((gi, c)) for gi in part for c in range(groups[gi].width)))
    new = {r: k for k, r in enumerate(roots)}
    why = None
    by_key: dict[str, dict[int, list[int]]] = {}
    for gi, t in part_ties:  # every tied channel must meet every block equally often
        per = by_key.setdefault(t.key, {})
        for i, c in zip(t.indices, t.channels):
            per.setdefault(new[find((gi, c))], [0] * t.blocks)[i // t.size] += 1
    for key, per in by_key.items():
        if any(len(set(counts)) > 1 for counts in per.values()):
            t = next(t for _, t in part_ties if t.key == key)
            what = t.what if t.what.endswith(" and") else f"{t.what} splits them in {t.blocks} equal pieces and"
            why = (f"{what} this group covers only part of its conv groups/pieces, so they cannot stay equal in "
                   "width")
            break
    if why is None and len(roots) == 1:
        why = (f"its channels are tied into a single one ({part_ties[0][1].what.removesuffix(' and')}: one channel "
               "per conv group or piece)")
    ids = [groups[gi].id for gi in part]
    if why is None and not all(groups[gi].prunable for gi in part):
        bad = next(groups[gi] for gi in part if not groups[gi].prunable)
        why = f"tied by a split, shuffle or grouped conv to group {bad.id}, which is not prunable"
    if why is not None:
        for gi in part:
            _block(groups[gi], why if len(part) == 1 else f"{why} (tied groups: {', '.join(ids)})")
        return groups[part[0]]
    members: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for gi in part:
        for m in groups[gi].members:
            members.setdefault((m.module, m.kind), []).extend(
                (i, new[find((gi, c))]) for i, c in zip(m.indices, m.channels))
    out = []
    for (module, kind), pairs in members.items():
        pairs = sorted(set(pairs))
        out.append(Member(module, kind, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)))
    return ChannelGroup(ids[0], len(roots), out)


def _kind(module: nn.Module, side: str) -> str:
    if isinstance(module, nn.modules.conv._ConvNd):
        return "dw" if is_depthwise(module) else side
    if isinstance(module, nn.Linear):
        return side
    if isinstance(module, PER_CHANNEL_NORMS + CROSS_CHANNEL_NORMS):
        return "norm"
    if isinstance(module, nn.PReLU):
        return "prelu"
    return "other"


def _member_reasons(model, name: str, kind: str, outputs: set[str], ignored: set[str]) -> list[str]:
    if kind == "param":
        return [f"bare parameter {name} is coupled to them (its channel axis is a guess)"]
    module = model.get_submodule(name)
    out = []
    if kind in ("out", "dw") and name in outputs:
        out.append(f"{name} produces a model output")
    if kind in ("out", "dw") and name in ignored:
        out.append(f"{name} is in ignored_layers")
    if getattr(module, "transposed", False):
        out.append(f"{name} is a transposed conv (not in the MACs model)")
    if isinstance(module, CROSS_CHANNEL_NORMS):
        out.append(f"{name} ({type(module).__name__}) normalises across channels, so removing one is not zeroing it")
    if kind == "other":
        out.append(f"{name} ({type(module).__name__}) is not supported")
    return out


def _mark_overlaps(groups: list[ChannelGroup]) -> None:
    """A channel claimed by two groups means the tracer's coupling is inconsistent: keep both groups whole."""
    claimed: dict[tuple[str, str], dict[int, ChannelGroup]] = {}
    for g in groups:
        for m in g.members:
            owner = claimed.setdefault((m.module, m.side), {})
            clash = owner.keys() & set(m.indices)  # set arithmetic first: the per-index walk only on a clash
            for i in sorted(clash):
                other = owner[i]
                if other is not g:
                    for h in (g, other):
                        _block(h, f"channel {i} of {m.module} ({m.side}) also belongs to group "
                                  f"{(other if h is g else g).id}")
            owner.update(dict.fromkeys(set(m.indices) - clash, g))


def _unprunable_layers(graph: ChannelGraph, notes: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Per layer side (``"name (out)"``/``"name (in)"``): the channels no prunable group controls, and why."""
    owner: dict[tuple[str, str], dict[int, ChannelGroup]] = {}
    for g in graph.groups:
        for m in g.members:
            sides = ("out", "in") if m.kind == "dw" else ("in" if m.kind == "in" else "out",)
            for side in sides:
                owner.setdefault((m.module, side), {}).update(dict.fromkeys(m.indices, g))
    out: dict[str, str] = {}
    for call in graph.layers:
        for side, n in (("out", call.out_channels), ("in", call.in_channels)):
            seen = owner.get((call.module, side), {})
            whys: dict[str, int] = {}  # reason -> channels, in first-seen order
            free = n - sum(1 for i in seen if i < n)
            if free:
                whys["they come from the model input" if side == "in" else "no group covers them"] = free
            count: dict[int, list] = {}  # id(group) -> [group, channels], in first-seen order
            for g in seen.values():
                count.setdefault(id(g), [g, 0])[1] += 1
            for g, k in count.values():
                if not g.prunable:
                    whys[f"group {g.id}: {g.reason}"] = k
            fixed = sum(whys.values())
            if fixed:
                out[f"{call.module} ({side})"] = f"{fixed}/{n} channels fixed: " + "; ".join(whys)
    for op, problem in notes:
        out[op] = problem
    return list(out.items())
