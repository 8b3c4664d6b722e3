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

* **channel shuffles** (``view(b, g, c/g, h, w)`` → ``transpose(1, 2)`` → ``view(b, c, h, w)``, ShuffleNetV2):
  Torch-Pruning cannot size the first view (ZeroDivisionError, below). We recognise the three autograd nodes and
  map indices through the shuffle ourselves: identity into the first view, the permutation ``p → (p mod c/g)·g +
  ⌊p / (c/g)⌋`` out of the last. The shuffle's items carry ``shuffle = (c/g, g)``: the caller ties the channels at
  equal positions of the g blocks, which is what keeps the shuffle of the pruned tensor the shuffle of the kept
  channels (``groups.py``).

Guards (Torch-Pruning can crash or explode on real models; neither may reach the user as a traceback):

* **index mapping node by node.** Torch-Pruning derives the index mappings of every concat/split/reshape node in one
  loop, re-run for every root layer; one node it cannot size (ShuffleNetV2's channel shuffle: ZeroDivisionError)
  aborts the whole graph. While we trace, that loop runs once per graph (the graph does not change between roots;
  it is re-derived once after the split-order fix) and node by node: a failing node keeps no mapping and every group
  whose channels reach it is blocked with the error. Scoped to ``trace`` (the module attribute is restored).
* **failures of one group** (``get_pruning_group``) block that root's group with the error; other groups survive.
* **bounded enumeration.** ``GraphLimits``: wall time of the whole trace and the number of channel indices the index
  mappings and groups produce (the memory of the enumeration); passing either raises ``GraphError`` naming the
  layer being enumerated and the keyword that raises the bound.
* a failure of the trace itself becomes ``GraphError`` naming the op it happened at.

Everything Torch-Pruning cannot express (grouped convs, channel-mixing ops it believes channel-preserving, split sizes
fixed in code) is *detected* by the caller (``groups.py`` rules and ``_verify.py``), not here.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
import torch.nn as nn
import torch_pruning as tp
from torch.overrides import TorchFunctionMode
from torch_pruning import _helpers as tp_helpers
from torch_pruning import ops as tp_ops
from torch_pruning.dependency import index_mapping as tp_index_mapping

from ..errors import GraphError

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
    error: str = ""  # Torch-Pruning failed to derive this op's index mapping (the channels through it are unknown)
    split_sizes: tuple[int, ...] = ()  # piece sizes of a channel split (dim 1), as traced
    shuffle: tuple[int, int] = ()  # a channel shuffle's (block size c/g, blocks g); idxs are its input positions


@dataclass
class RawGroup:
    root: str  # name of the root layer (its output channels define the group)
    items: list[RawItem] = field(default_factory=list)
    error: str = ""  # Torch-Pruning failed while enumerating this group (items then hold only the root)


@dataclass(frozen=True)
class GraphLimits:
    """Bounds on tracing one model. ``seconds``: wall time of the trace and group enumeration; ``indices``: channel
    indices produced by the index mappings and groups (each is a Python object: ~100 bytes, so the default bounds
    the enumeration to a few GB). ``None`` disables a bound."""

    seconds: float | None = 60.0
    indices: int | None = 20_000_000

    def __post_init__(self):
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"GraphLimits.seconds must be > 0 or None, got {self.seconds!r}")
        if self.indices is not None and not (isinstance(self.indices, int) and self.indices > 0):
            raise ValueError(f"GraphLimits.indices must be a positive int or None, got {self.indices!r}")


class _Budget:
    """Counts time and indices against ``GraphLimits``; ``where`` names the layer being enumerated."""

    def __init__(self, limits: GraphLimits):
        self.limits, self.start, self.used, self.where = limits, time.monotonic(), 0, "the dependency trace"

    def charge(self, n: int = 0) -> None:
        self.used += n
        lim = self.limits
        if lim.indices is not None and self.used > lim.indices:
            raise GraphError(
                f"channel graph: group enumeration produced more than {lim.indices:,} channel indices (at "
                f"{self.where}); raise the bound with --graph-max-indices or GraphLimits(indices=...)")
        if lim.seconds is not None and time.monotonic() - self.start > lim.seconds:
            raise GraphError(
                f"channel graph: tracing took longer than {lim.seconds:g} s (at {self.where}); raise the bound "
                "with --graph-time-limit or GraphLimits(seconds=...)")


@dataclass
class RawTrace:
    groups: list[RawGroup]
    output_modules: set[str]  # layers whose output tensor is (part of) the model output
    notes: list[tuple[str, str]]  # (op, problem) found while tracing, e.g. ambiguous splits


def as_tuple(example_inputs: Any) -> tuple:
    return tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)


def trace(model: nn.Module, example_inputs: Any, limits: GraphLimits | None = None,
          observe: Any = None) -> RawTrace:
    """Trace ``model`` (a private copy: Torch-Pruning switches it to eval and keeps references) into raw groups.

    Roots are conv/linear layers visited in ``named_modules`` order, so group roots (and the ids built from them)
    are the same for every instance of an architecture. Raises ``GraphError`` (one line) when the trace fails or
    passes ``limits``. ``observe``: a context manager entered around the traced forward pass (to record it).
    """
    outputs: list[torch.Tensor] = []
    budget = _Budget(limits or GraphLimits())
    broken: dict[Any, str] = {}

    cat_sizes = _CatSizes()

    def forward_fn(m, inputs):
        with observe if observe is not None else contextlib.nullcontext(), cat_sizes:
            out = m(*inputs)
        outputs.extend(tp.utils.flatten_as_list(out))
        return out

    for p in model.parameters():  # frozen weights would leave no grad_fn to trace
        p.requires_grad_(True)
    with warnings.catch_warnings(), torch.enable_grad(), _guarded_index_mapping(broken, budget):
        warnings.simplefilter("ignore")
        try:
            dg = tp.DependencyGraph().build_dependency(
                model, as_tuple(example_inputs), forward_fn=forward_fn, verbose=False
            )
        except GraphError:
            raise
        except Exception as e:
            raise GraphError(f"channel graph: Torch-Pruning cannot trace the model ({_one_line(e)}) at "
                             f"{_failing_op(e)}") from e
        budget.charge()
        notes = _fix_split_order(dg)
        for node in dg.module2node.values():  # concat sizes were inferred from the wrong split sizes: as traced
            if node.type == tp_ops.OPTYPE.CONCAT:
                sizes = cat_sizes.sizes.get(node.grad_fn)
                known = sizes is not None and len(sizes) == len(node.inputs) == len(node.grad_fn.next_functions)
                node.module._secateurs_sizes = sizes if known else None
                node.module.concat_sizes = sizes if known else None
        dg._secateurs_mapped = False  # split order and sizes changed: derive the mappings once more
        out_fns = {o.grad_fn for o in outputs if isinstance(o, torch.Tensor) and o.grad_fn is not None}
        names = dg._module2name
        output_modules = {
            names[m] for m, node in dg.module2node.items() if node.grad_fn in out_fns and m in names
        }
        groups = _collect_groups(model, dg, budget, broken)
    notes += [(str(node.module), f"Torch-Pruning cannot map channels through it ({why})")
              for node, why in broken.items()]
    return RawTrace(groups, output_modules, notes)


class _CatSizes(TorchFunctionMode):
    """Records the channel sizes of every ``torch.cat`` along dim 1 of the traced forward, by the output's
    ``grad_fn`` (autograd keeps only the dim). Torch-Pruning infers them from the neighbouring layers instead, which
    fails when a piece comes from a split behind a reshape (the ShuffleNetV2 trunk): the concat then maps every index
    to both inputs."""

    def __init__(self):
        super().__init__()
        self.sizes: dict[Any, list[int]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (torch.cat, torch.concat) and isinstance(out, torch.Tensor) and out.grad_fn is not None:
            tensors = args[0] if args else kwargs.get("tensors", ())
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            # channels are dim 1 of (N, C), (N, C, H, W), (N, C, D, H, W); dim 1 of a 3-D tensor is ambiguous
            # (tokens of a (N, L, D) transformer, channels of a conv1d): left to Torch-Pruning's inference
            if out.dim() in (2, 4, 5) and dim % out.dim() == 1:
                self.sizes[out.grad_fn] = [int(t.shape[1]) for t in tensors if t.numel() or t.dim() > 1]
        return out


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def _failing_op(e: BaseException) -> str:
    """Name the graph node or module Torch-Pruning was working on when ``e`` was raised (innermost frame first)."""
    tb, frames = e.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if hasattr(value, "grad_fn") and hasattr(value, "module") and hasattr(value, "dependencies"):
                return f"{value.module} ({value.grad_fn.name() if value.grad_fn is not None else 'no grad_fn'})"
            if isinstance(value, nn.Module) and frame.f_code.co_filename.find("torch_pruning") >= 0:
                return type(value).__name__
    return "an unknown op"


class _OneNode:
    """A view of a dependency graph with a single node, so Torch-Pruning's mapping update runs node by node."""

    def __init__(self, dg, module, node):
        self._dg, self.module2node = dg, {module: node}

    def __getattr__(self, name):
        return getattr(self._dg, name)


class _CountedMapping:
    """An index mapping that charges the indices it produces to the budget (bounds memory mid-group)."""

    def __init__(self, fn, budget: _Budget):
        self.fn, self.budget = fn, budget

    def __call__(self, idxs):
        out = self.fn(idxs)
        self.budget.charge(len(out))
        return out


@contextlib.contextmanager
def _guarded_index_mapping(broken: dict, budget: _Budget) -> Iterator[None]:
    real = tp_index_mapping.update_index_mapping

    def update(dg) -> None:
        if getattr(dg, "_secateurs_mapped", False):  # called again for every root: nothing changed since
            return
        dg._secateurs_shuffles, skip = _find_shuffles(dg)
        for node, (size, blocks) in dg._secateurs_shuffles.items():
            _map_shuffle(node, size, blocks)
        for module, node in list(dg.module2node.items()):
            if node in skip or node.type == tp_ops.OPTYPE.CONCAT and _map_concat(node):
                continue
            try:
                real(_OneNode(dg, module, node))
            except Exception as e:  # noqa: BLE001 — the node is reported and its groups blocked
                broken[node] = _one_line(e)
        for node in broken:  # a half-derived mapping can be garbage (strides of 0 or 10^4): pass indices unchanged
            for dep in node.dependencies + [d for n in node.inputs + node.outputs for d in n.dependencies
                                            if d.target is node]:
                dep.index_mapping = [None] * len(dep.index_mapping)
        for node in dg.module2node.values():
            for dep in node.dependencies:
                dep.index_mapping = [m if m is None or isinstance(m, _CountedMapping) else _CountedMapping(m, budget)
                                     for m in dep.index_mapping]
        dg._secateurs_mapped = True

    tp_index_mapping.update_index_mapping = update
    try:
        yield
    finally:
        tp_index_mapping.update_index_mapping = real


class _Permutation:
    """Index mapping of a channel shuffle of ``blocks`` blocks of ``size`` (``inverse``: output → input)."""

    def __init__(self, size: int, blocks: int, inverse: bool):
        self.size, self.blocks, self.inverse = size, blocks, inverse

    def __call__(self, idxs):
        s, g = self.size, self.blocks
        move = (lambda q: (q % g) * s + q // g) if self.inverse else (lambda p: (p % s) * g + p // s)
        return [tp_helpers._HybridIndex(idx=move(int(i.idx)), root_idx=i.root_idx) if hasattr(i, "idx")
                else move(int(i)) for i in idxs]


def _saved(fn, name: str):
    return getattr(fn, f"_saved_{name}", None)


def _find_shuffles(dg) -> tuple[dict, set]:
    """Channel shuffles: {last view node: (c/g, g)} and the nodes between (whose mapping stays the identity)."""
    by_fn = {node.grad_fn: node for node in dg.module2node.values() if node.grad_fn is not None}
    found, skip = {}, set()
    for node in dg.module2node.values():
        fn = node.grad_fn
        if node.type != tp_ops.OPTYPE.RESHAPE or fn is None or "View" not in fn.name() and "Reshape" not in fn.name():
            continue
        shape = _saved(fn, "self_sym_sizes") or _saved(fn, "self_sizes")
        if shape is None or len(shape) < 4:
            continue  # the last view reads a (b, c/g, g, ...) tensor
        chain, prev = [], fn.next_functions[0][0] if fn.next_functions else None
        while prev is not None and prev.name().startswith("CloneBackward"):
            chain.append(prev)
            prev = prev.next_functions[0][0]
        if prev is None or not prev.name().startswith(("TransposeBackward", "PermuteBackward")):
            continue
        dims = _saved(prev, "dims")
        swapped = {_saved(prev, "dim0"), _saved(prev, "dim1")} if dims is None else \
            {d for d, want in zip(range(len(dims)), dims) if d != want}
        if swapped != {1, 2}:
            continue
        chain.append(prev)
        first = prev.next_functions[0][0]
        src = _saved(first, "self_sym_sizes") or _saved(first, "self_sizes") if first is not None else None
        if first is None or by_fn.get(first) is None or src is None or len(src) != len(shape) - 1:
            continue
        size, blocks = int(shape[1]), int(shape[2])
        if int(src[1]) != size * blocks or size < 1 or blocks < 2 or list(src[2:]) != list(shape[3:]):
            continue
        found[node] = (size, blocks)
        skip.update({node, by_fn[first]} | {by_fn[f] for f in chain if f in by_fn})
    return found, skip


def _map_concat(node) -> bool:
    """Offsets of a concatenation from its traced sizes (``_CatSizes``) instead of Torch-Pruning's inference; False
    (nothing done) when the sizes are unknown or an input cannot be matched to its piece."""
    sizes = getattr(node.module, "_secateurs_sizes", None)
    if sizes is None or not node.enable_index_mapping:
        return False
    fns = [fn for fn, _ in node.grad_fn.next_functions]
    pieces = []
    for inp in node.inputs:
        at = [i for i, fn in enumerate(fns) if fn is inp.grad_fn]
        if len(at) != 1:
            return False
        pieces.append(at[0])
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    node.module.concat_sizes, node.module.offsets = list(sizes), offsets
    mapping = tp_index_mapping._ConcatIndexMapping
    for inp, i in zip(node.inputs, pieces):
        for dep in node.dependencies:
            if dep.target is inp:
                dep.index_mapping[1] = mapping(offset=offsets[i: i + 2], reverse=True)
        for dep in inp.dependencies:
            if dep.target is node:
                dep.index_mapping[1] = mapping(offset=offsets[i: i + 2], reverse=False)
    return True


def _map_shuffle(node, size: int, blocks: int) -> None:
    for dep in node.dependencies:
        if dep.target in node.outputs:
            dep.index_mapping = [_Permutation(size, blocks, False), None]
    for out in node.outputs:
        for dep in out.dependencies:
            if dep.target is node:
                dep.index_mapping = [_Permutation(size, blocks, True), None]


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
        _fix_split_sizes(node, notes)
    return notes


def _fix_split_sizes(node, notes: list) -> None:
    """Torch-Pruning reads split sizes from ``_saved_split_sizes``/``_saved_self_sizes``, which ``chunk`` and
    ``split(int)`` (``SplitBackward0``: ``_saved_split_size``, ``_saved_self_sym_sizes``) do not have; it then infers
    them from the consumers, and a piece read by a concatenation gets the concatenation's width. Take them from the
    autograd record instead."""
    fn = node.grad_fn
    size, dim = getattr(fn, "_saved_split_size", None), getattr(fn, "_saved_dim", None)
    shape = getattr(fn, "_saved_self_sym_sizes", None)
    if not isinstance(size, int) or dim != 1 or shape is None or size <= 0:
        return
    width = int(shape[1])
    pieces = [size] * (width // size) + ([width % size] if width % size else [])
    if len(pieces) != len(node.outputs):
        notes.append((str(node.module), "not every piece of the split is read exactly once"))
        return
    node.module.split_sizes = pieces
    node.module.offsets = [sum(pieces[:i]) for i in range(len(pieces) + 1)]


def _collect_groups(model: nn.Module, dg, budget: _Budget, broken: dict) -> list[RawGroup]:
    names = dg._module2name
    covered: dict[str, set[int]] = {}
    groups = []
    roots = [(n, m) for n, m in model.named_modules()
             if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and m in dg.module2node]
    for k, (name, module) in enumerate(roots):
        width = module.out_channels if isinstance(module, nn.modules.conv._ConvNd) else module.out_features
        todo = sorted(set(range(width)) - covered.get(name, set()))
        if not todo:
            continue
        budget.where = f"layer {name!r} ({k + 1}/{len(roots)} layers)"
        budget.charge(width)
        pruner = dg.get_pruner_of_module(module)
        try:
            tp_group = dg.get_pruning_group(module, pruner.prune_out_channels, todo)
        except GraphError:
            raise
        except Exception as e:  # noqa: BLE001 — this root's group is blocked; the rest of the graph survives
            groups.append(RawGroup(name, [RawItem("module", name, "out", todo, todo)],
                                   error=f"Torch-Pruning failed on it ({_one_line(e)} at {_failing_op(e)})"))
            continue
        group = RawGroup(root=name)
        for item in tp_group:
            raw = _translate(dg, names, item)
            raw.error = broken.get(item.dep.target, "")
            budget.charge(len(raw.idxs))
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
    sizes = getattr(target, "split_sizes", None) if node.type == tp_ops.OPTYPE.SPLIT else None
    return RawItem(
        "op", str(target), side, idxs, roots, op_type=node.type.name,
        channel_op=node.type in _CHANNEL_OPS and mapped, split_sizes=tuple(int(x) for x in sizes or ()),
        shuffle=getattr(dg, "_secateurs_shuffles", {}).get(node, ()),
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
