"""The only module of secateurs that imports Torch-Pruning.

Torch-Pruning's ``DependencyGraph`` traces a model through autograd and, for a root layer's output channels, walks
every coupled layer and op (norms, adds, concatenations with offsets, flatten, depthwise convs) with the channel
indices each one must lose. We use exactly that, and nothing else of it: this module turns its groups into plain
records (``RawGroup``/``RawItem``: names, kinds, integer indices) so that the rest of the package never holds a
Torch-Pruning object and could switch tracer without changes.

Fixes applied here (the split order is pinned by ``test_graph.py::test_split_order_fixed_and_reported``):

* **split/chunk outputs in the wrong order.** Torch-Pruning gives the i-th split piece to the i-th consumer in the
  order the backward traversal met them, not the order of the pieces, so ``a, b = x.chunk(2)`` can map ``a``'s
  channels to ``b``'s consumer. We reorder each split node's consumers by the autograd ``output_nr`` of the edge
  they read, which *is* the piece index; when a consumer reads several pieces the order cannot be repaired and the
  split is reported as ambiguous.
* **the classifier is not recognised as an output** when the model's output tensor is produced by a layer (there
  is then no output node in the graph). We mark every layer whose output tensor is a model output.
* Torch-Pruning's own ``get_all_groups`` marks a layer visited when a previous group took only some of its channels
  (a concatenation added to a wider tensor), leaving the rest in no group; we root a group at every still-uncovered
  channel instead.

Everything Torch-Pruning cannot express (grouped convs, channel-mixing ops it believes channel-preserving, split sizes
fixed in code) is *detected* by the caller (``groups.py`` rules and ``_verify.py``), not here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning import ops as tp_ops

_CHANNEL_OPS = (tp_ops.OPTYPE.SPLIT, tp_ops.OPTYPE.SLICE, tp_ops.OPTYPE.UNBIND)


@dataclass
class RawItem:
    """One entry of a Torch-Pruning group, translated. ``kind``: 'module' | 'param' | 'op' | 'output'."""

    kind: str
    name: str  # module / parameter name, or a description of the op
    side: str  # 'out' or 'in' (which pruning function Torch-Pruning would call)
    idxs: list[int]  # indices in the target's own coordinates
    root_idxs: list[int]  # for each index, the root channel it is coupled to
    op_type: str = ""  # Torch-Pruning's op type name for ops ("CONCAT", "SPLIT", ...)
    channel_op: bool = False  # a split/slice/unbind that Torch-Pruning maps channel indices through


@dataclass
class RawGroup:
    root: str  # name of the root layer (its output channels define the group)
    items: list[RawItem] = field(default_factory=list)


@dataclass
class RawTrace:
    groups: list[RawGroup]
    output_modules: set[str]  # layers whose output tensor is (part of) the model output
    notes: list[tuple[str, str]]  # (op, problem) found while tracing, e.g. ambiguous splits


def as_tuple(example_inputs: Any) -> tuple:
    return tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)


def trace(model: nn.Module, example_inputs: Any) -> RawTrace:
    """Trace ``model`` (a private copy: Torch-Pruning switches it to eval and keeps references) into raw groups.

    Roots are conv/linear layers visited in ``named_modules`` order, so group roots (and the ids built from them)
    are the same for every instance of an architecture.
    """
    outputs: list[torch.Tensor] = []

    def forward_fn(m, inputs):
        out = m(*inputs)
        outputs.extend(tp.utils.flatten_as_list(out))
        return out

    for p in model.parameters():  # frozen weights would leave no grad_fn to trace
        p.requires_grad_(True)
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")
        dg = tp.DependencyGraph().build_dependency(
            model, as_tuple(example_inputs), forward_fn=forward_fn, verbose=False
        )
        notes = _fix_split_order(dg)
        out_fns = {o.grad_fn for o in outputs if isinstance(o, torch.Tensor) and o.grad_fn is not None}
        names = dg._module2name
        output_modules = {
            names[m] for m, node in dg.module2node.items() if node.grad_fn in out_fns and m in names
        }
        groups = _collect_groups(model, dg)
    return RawTrace(groups, output_modules, notes)


def _fix_split_order(dg) -> list[tuple[str, str]]:
    """Order every split node's consumers by the piece they read (see module docstring)."""
    notes = []
    for node in dg.module2node.values():
        if node.type not in (tp_ops.OPTYPE.SPLIT, tp_ops.OPTYPE.UNBIND) or len(node.outputs) < 2:
            continue
        piece = {}
        for consumer in node.outputs:
            nrs = {nr for fn, nr in getattr(consumer.grad_fn, "next_functions", ()) if fn is node.grad_fn}
            if len(nrs) != 1:
                piece = None
                break
            piece[consumer] = nrs.pop()
        if piece is None or len(set(piece.values())) != len(piece):
            notes.append((str(node.module), "a consumer reads several split pieces (or a piece is read twice)"))
            continue
        node.outputs.sort(key=lambda c: piece[c])
    return notes


def _collect_groups(model: nn.Module, dg) -> list[RawGroup]:
    names = dg._module2name
    covered: dict[str, set[int]] = {}
    groups = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) or module not in dg.module2node:
            continue
        width = module.out_channels if isinstance(module, nn.modules.conv._ConvNd) else module.out_features
        todo = sorted(set(range(width)) - covered.get(name, set()))
        if not todo:
            continue
        pruner = dg.get_pruner_of_module(module)
        tp_group = dg.get_pruning_group(module, pruner.prune_out_channels, todo)
        group = RawGroup(root=name)
        for item in tp_group:
            raw = _translate(dg, names, item)
            group.items.append(raw)
            if raw.kind == "module" and raw.side == "out":
                covered.setdefault(raw.name, set()).update(raw.idxs)
        groups.append(group)
    return groups


def _translate(dg, names, item) -> RawItem:
    node = item.dep.target
    target = node.module
    side = "out" if dg.is_out_channel_pruning_fn(item.dep.handler) else "in"
    idxs, roots = [int(i) for i in item.idxs], [int(r) for r in item.root_idxs]
    if node.type == tp_ops.OPTYPE.OUTPUT:
        return RawItem("output", "model output", side, idxs, roots)
    if isinstance(target, nn.Parameter):
        return RawItem("param", dg._param_to_name.get(target, "parameter"), side, idxs, roots)
    if target in names and not isinstance(target, _OP_CLASSES):
        return RawItem("module", names[target], side, idxs, roots)
    mapped = any(m is not None for dep in node.dependencies for m in dep.index_mapping)
    return RawItem(
        "op", str(target), side, idxs, roots, op_type=node.type.name,
        channel_op=node.type in _CHANNEL_OPS and mapped,
    )


_OP_CLASSES = tuple(
    getattr(tp_ops, n)
    for n in ("_ConcatOp", "_SplitOp", "_ElementWiseOp", "_ReshapeOp", "_UnbindOp", "_ExpandOp", "_SliceOp", "_OutputOp")
    if hasattr(tp_ops, n)
)


def prune_module(module: nn.Module, side: str, idxs: Sequence[int]) -> None:
    """Remove channels ``idxs`` of ``module`` in place on ``side`` ('out' or 'in') with Torch-Pruning's
    per-layer function (depthwise convs and norms lose the same channels on both sides)."""
    if not idxs:
        return
    pruner = tp.pruner.function.PrunerBox.get(tp_ops.module2type(module))
    if pruner is None:
        raise TypeError(f"no pruning function for {type(module).__name__}")
    fn = pruner.prune_out_channels if side == "out" else pruner.prune_in_channels
    fn(module, sorted(int(i) for i in idxs))
