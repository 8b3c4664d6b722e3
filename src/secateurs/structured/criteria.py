"""Baseline structured criteria: a coupled channel group -> one importance score per channel (higher = keep).

A criterion only scores; choosing how many channels each group keeps is the policy's job (``select.py``). Every
criterion scores the *group* channel (the set of tied channels that is removed together), aggregating over the
group's members, so a residual group's score reflects all the layers that lose the channel:

* ``l1`` / ``l2`` (Li et al. 2017, "Pruning filters for efficient ConvNets"): the norm of the channel's output
  filters. ``l1`` sums the L1 norms of the filter in every producer (``out``/``dw`` members); ``l2`` is the L2 norm
  of all of them together (sqrt of the summed squares). Biases are not included (as in the paper).
* ``bn`` (Liu et al. 2017, network slimming): ``|gamma|`` of the channel, summed over the group's BatchNorm members.
  A group without an affine per-channel norm cannot be scored: ``ValueError`` naming it.
* ``taylor`` (Molchanov et al. 2017/2019, first order): ``|dL/dg|`` where ``g`` is a ones gate on the channel at
  all its consumer inputs (``ChannelGate``). ``dL/dg_c = sum over consumers, examples and positions of a * dL/da``,
  i.e. the first-order estimate of the loss change when the channel is removed. Computed in eval mode per batch
  (the absolute value of each batch's sum) and averaged over batches. Needs ``data``.
* ``random``: uniform scores from a seeded generator (the control every criterion must beat).

Scores are float64 tensors of length ``group.width`` on the CPU, for the prunable groups only.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._device import device_of
from ..graph.gates import ChannelGate
from ..graph.groups import ChannelGraph, ChannelGroup, Member

__all__ = ["CRITERIA", "channel_scores", "l1_scores", "l2_scores", "bn_scores", "taylor_scores", "random_scores"]

Scores = dict[str, torch.Tensor]


def _per_channel(group: ChannelGroup, member: Member, values: torch.Tensor) -> torch.Tensor:
    """Sum a member's per-index ``values`` (in its own coordinates) into the group's channels."""
    out = torch.zeros(group.width, dtype=torch.float64)
    idx = torch.tensor(member.indices, dtype=torch.long)
    ch = torch.tensor(member.channels, dtype=torch.long)
    return out.index_add_(0, ch, values.detach().to(torch.float64).cpu()[idx])


def _filter_norms(model: nn.Module, graph: ChannelGraph, p: int) -> Scores:
    scores = {}
    for g in graph.prunable_groups():
        total = torch.zeros(g.width, dtype=torch.float64)
        found = False
        for m in g.producers():
            module = model.get_submodule(m.module)
            w = getattr(module, "in_proj_weight" if m.kind == "mha" else "weight", None)  # mha: q/k/v rows per head
            if w is None:
                continue
            # one row per output channel: conv (out, in/groups, *k), depthwise (C, 1, *k), linear (out, in)
            per_out = w.detach().abs().flatten(1).sum(1) if p == 1 else w.detach().pow(2).flatten(1).sum(1)
            total += _per_channel(g, m, per_out)
            found = True
        if not found:
            raise ValueError(f"group {g.id!r} has no producer layer with a weight to take a filter norm of")
        scores[g.id] = total if p == 1 else total.sqrt()
    return scores


def l1_scores(model: nn.Module, graph: ChannelGraph, **_) -> Scores:
    """Sum over the group's producers of the L1 norm of each output filter (Li et al.)."""
    return _filter_norms(model, graph, 1)


def l2_scores(model: nn.Module, graph: ChannelGraph, **_) -> Scores:
    """L2 norm of each channel's output filters over all the group's producers together."""
    return _filter_norms(model, graph, 2)


def bn_scores(model: nn.Module, graph: ChannelGraph, **_) -> Scores:
    """Sum of ``|gamma|`` over the group's BatchNorm (or affine InstanceNorm) members (network slimming)."""
    scores, missing = {}, []
    for g in graph.prunable_groups():
        total = torch.zeros(g.width, dtype=torch.float64)
        found = False
        for m in g.members:
            module = model.get_submodule(m.module)
            if m.kind == "norm" and getattr(module, "weight", None) is not None:
                total += _per_channel(g, m, module.weight.abs())
                found = True
        if found:
            scores[g.id] = total
        else:
            missing.append(g.id)
    if missing:
        raise ValueError(f"criterion 'bn' needs an affine BatchNorm in every prunable group; "
                         f"{len(missing)} have none: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                         "(use l1, l2 or taylor for this model)")
    return scores


def taylor_scores(model: nn.Module, graph: ChannelGraph, *, data: Iterable | None = None,
                  loss_fn: Callable | None = None, **_) -> Scores:
    """Mean over batches of ``|dL/dgate|`` with a ones gate per group channel at its consumers (see module doc).

    ``data``: an iterable of ``(inputs, targets)`` batches (a few are enough); ``loss_fn(outputs, targets)``
    defaults to cross-entropy. The model's parameters receive no gradient and its mode is restored.
    """
    if data is None:
        raise ValueError("criterion 'taylor' needs data: an iterable of (inputs, targets) batches")
    loss_fn = loss_fn or F.cross_entropy
    device = device_of(model)
    gates = {g.id: torch.ones(g.width, device=device, requires_grad=True) for g in graph.prunable_groups()}
    totals = {gid: torch.zeros(v.numel(), dtype=torch.float64) for gid, v in gates.items()}
    batches = 0
    was_training = model.training
    model.eval()  # BatchNorm uses its running statistics: the network the pruned model will be
    try:
        with ChannelGate(model, graph, gates):
            for x, y in data:
                loss = loss_fn(model(x.to(device)), y.to(device))
                grads = torch.autograd.grad(loss, list(gates.values()), allow_unused=True)
                for (gid, _), gr in zip(gates.items(), grads):
                    if gr is not None:
                        totals[gid] += gr.detach().abs().to(torch.float64).cpu()
                batches += 1
    finally:
        model.train(was_training)
    if batches == 0:
        raise ValueError("criterion 'taylor' got an empty data iterable")
    return {gid: t / batches for gid, t in totals.items()}


def random_scores(model: nn.Module, graph: ChannelGraph, *, seed: int = 0, **_) -> Scores:
    """Uniform random scores; the same ``seed`` gives the same scores for the same architecture."""
    gen = torch.Generator().manual_seed(int(seed))
    return {g.id: torch.rand(g.width, generator=gen, dtype=torch.float64) for g in graph.prunable_groups()}


CRITERIA: Mapping[str, Callable[..., Scores]] = {
    "l1": l1_scores, "l2": l2_scores, "bn": bn_scores, "taylor": taylor_scores, "random": random_scores,
}


def channel_scores(model: nn.Module, graph: ChannelGraph, criterion: str, *, data: Iterable | None = None,
                   seed: int = 0, loss_fn: Callable | None = None) -> Scores:
    """Group id -> score per channel for every prunable group of ``graph`` (built on ``model``)."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
    return CRITERIA[criterion](model, graph, data=data, seed=seed, loss_fn=loss_fn)
