"""Apply a ``PruningPlan``: cut the channels physically, then prove the result is what the plan promised.

Verification (on by default) checks three independent things, because each catches a different bug: the pruned
model runs (shapes consistent); its exact MACs and parameter count equal the predictions made *before* surgery
from the channel graph (``MacsModel.exact`` at the hard selection, and a per-layer shape count); and, in eval mode on
the example batch, its outputs equal the unpruned model's with the removed channels gated to zero at their
consumers (``mask_model``), in float64. That last check is scale-aware (``graph._verify.equivalence``): it compares
the outputs *and* the features the output layers read, each relative to its own magnitude (``rtol``), so tiny or
zero outputs (a zero-initialised head) cannot make it pass trivially; ``atol + rtol·max|output|`` bounds the
absolute output difference as well (as ``torch.allclose`` does). When every probe is exactly zero nothing can be
checked, and that is an error too.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..graph._attention import params_delta
from ..graph._layers import is_depthwise, record_layers
from ..graph._verify import equivalence
from ..graph.gates import ChannelGate
from ..graph.groups import ChannelGraph, build_channel_graph
from ..graph.surgery import removal_indices, remove_channels
from ..flops import count_params
from ..cost.macs import MacsModel
from .plan import PruningPlan


@dataclass
class PruneReport:
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    max_abs_diff: float | None  # masked vs pruned outputs (None when not verified)
    max_rel_diff: float | None = None  # the same, relative to each probe's magnitude (see module docstring)

    @property
    def macs_reduction(self) -> float:
        return 1 - self.macs_after / max(self.macs_before, 1)

    @property
    def params_reduction(self) -> float:
        return 1 - self.params_after / max(self.params_before, 1)

    def __str__(self) -> str:
        check = "not verified" if self.max_abs_diff is None else f"max |masked - pruned| = {self.max_abs_diff:.2g}"
        return (f"MACs {self.macs_before / 1e6:.3f}M -> {self.macs_after / 1e6:.3f}M ({self.macs_reduction:.2%} "
                f"fewer), params {self.params_before:,} -> {self.params_after:,} ({self.params_reduction:.2%} "
                f"fewer); {check}")


def check_plan(graph: ChannelGraph, plan: PruningPlan) -> None:
    """Raise ``ValueError`` naming the group if ``plan`` does not fit ``graph``."""
    for gid, kept in plan.groups.items():
        if gid not in graph:
            raise ValueError(f"plan group {gid!r} is not a group of this model (wrong architecture?)")
        g = graph[gid]
        if plan.widths[gid] != g.width:
            raise ValueError(f"plan group {gid!r} has width {plan.widths[gid]}, the model's has {g.width}")
        if len(kept) < g.width and not g.prunable:
            raise ValueError(f"plan removes channels of group {gid!r}, which is not prunable: {g.reason}")


def mask_model(model: nn.Module, graph: ChannelGraph, plan: PruningPlan) -> ChannelGate:
    """Context manager: ``model`` behaves as if ``plan`` were applied (removed channels zeroed at consumers)."""
    check_plan(graph, plan)
    masks = {}
    for gid, kept in plan.groups.items():
        m = torch.zeros(graph[gid].width, dtype=torch.bool)
        m[kept] = True
        masks[gid] = m
    return ChannelGate(model, graph, masks)


def predict_params(model: nn.Module, graph: ChannelGraph, plan: PruningPlan) -> int:
    """Parameter count after ``plan``, from layer shapes alone (independent of the surgery code)."""
    cut: dict[str, dict[str, int]] = {}
    for (name, side), idxs in removal_indices(graph, plan.removed()).items():
        cut.setdefault(name, {"in": 0, "out": 0, "heads": 0})[side] += len(idxs)
    total = count_params(model)
    for name, k in cut.items():
        m = model.get_submodule(name)
        if k["heads"]:  # attention heads: the packed projections of nn.MultiheadAttention (rows of 3 per feature)
            total += params_delta(m, k["heads"])
            continue
        before = sum(p.numel() for p in m.parameters(recurse=False))
        total += _params_after(m, k["out"], k["in"]) - before
    return total


def _params_after(m: nn.Module, ko: int, ki: int) -> int:
    bias = getattr(m, "bias", None) is not None
    if isinstance(m, nn.modules.conv._ConvNd):
        k = m.weight[0, 0].numel()
        if is_depthwise(m):
            return (m.out_channels - ko) * k + bias * (m.out_channels - ko)
        return (m.out_channels - ko) * ((m.in_channels - ki) // m.groups) * k + bias * (m.out_channels - ko)
    if isinstance(m, nn.Linear):
        return (m.out_features - ko) * (m.in_features - ki) + bias * (m.out_features - ko)
    # per-channel modules (norms, PReLU): every parameter has one entry per channel
    return sum(p.numel() - (ko if p.numel() > 1 else 0) for p in m.parameters(recurse=False))


def apply_plan(
    model: nn.Module, plan: PruningPlan, example_inputs: Any, *,
    graph: ChannelGraph | None = None, verify: bool = True, atol: float = 1e-5, rtol: float = 1e-7,
) -> PruneReport:
    """Remove the channels ``plan`` drops from ``model`` in place and return a ``PruneReport``.

    ``graph`` defaults to ``build_channel_graph(model, example_inputs)``; pass it to avoid re-tracing. With
    ``verify`` a mismatch in forward, MACs, params or outputs raises ``RuntimeError`` (the model is then pruned but
    wrong: rebuild it).
    """
    graph = graph if graph is not None else build_channel_graph(model, example_inputs)
    check_plan(graph, plan)
    soft = MacsModel(graph)
    params_before = count_params(model)
    want_macs = soft.exact(plan.groups)
    want_params = predict_params(model, graph, plan)
    ref = copy.deepcopy(model) if verify else None
    remove_channels(model, graph, plan.removed())
    if not verify:
        return PruneReport(soft.dense, want_macs, params_before, want_params, None)

    was_training = model.training
    try:
        model.eval()
        macs = record_layers(model, example_inputs)[1]
    except Exception as e:
        raise RuntimeError(f"pruned model no longer runs: {type(e).__name__}: {e}") from e
    finally:
        model.train(was_training)
    params = count_params(model)
    if macs != want_macs or params != want_params:
        raise RuntimeError(
            f"pruned model has {macs} MACs / {params} params; the graph predicted {want_macs} / {want_params}"
        )
    eq = equivalence(ref, graph, plan.removed(), example_inputs, pruned=model)
    if eq.max_rel_diff != eq.max_rel_diff:  # nan
        raise RuntimeError(f"cannot verify the pruned model: all {eq.degenerate} probes (outputs and the inputs of "
                           "the output layers) are exactly zero on the example batch; use other example inputs or "
                           "verify=False")
    # the absolute bound grows with the outputs, as in torch.allclose: float64 rounding of logits of 1e10 (an
    # untrained network without BN statistics) is 1e-5 absolute and 1e-15 relative, and that is not a wrong prune
    abs_limit = atol + rtol * eq.output_scale
    if eq.max_rel_diff > rtol or eq.max_abs_diff > abs_limit:
        raise RuntimeError(f"pruned outputs differ from the masked model by {eq.max_rel_diff:.3g} relative "
                           f"(rtol={rtol}), {eq.max_abs_diff:.3g} absolute (atol={atol} + rtol x outputs' "
                           f"{eq.output_scale:.3g} = {abs_limit:.3g})")
    return PruneReport(soft.dense, macs, params_before, params, eq.max_abs_diff, eq.max_rel_diff)
