"""One definition of model cost, used by every report in secateurs.

Definition (stated once, used everywhere):

* **MACs** are the multiply-accumulates of convolutions, linear layers and matrix products
  (``aten.convolution``, ``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``matmul`` and friends), counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` on a real forward pass, so functional ops
  (``x @ w``, ``F.conv2d``) are seen as well as modules.
* **Attention matmuls count.** ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` take a fused "fast
  path" under ``no_grad``/eval whose kernels the counter cannot see, and scaled-dot-product attention on the CPU runs
  a fused kernel the counter has no formula for. :func:`macs_counter` therefore disables the fast path while it
  counts (the unfused composition does the same multiply-adds) and counts every SDPA kernel as its two matmuls
  (QKᵀ and AV), so the total is what the deployed model computes whatever the autograd mode.
* The counting is ``FlopCounterMode``'s (its formula registry, its per-module attribution) in a dispatch mode of
  our own: ``FlopCounterMode``'s dispatch is wrapped in ``torch._disable_dynamo``, whose first call imports
  ``torch._dynamo`` — about 3 s of every CLI command that counts, for nothing (we compile nothing inside a count).
* **FLOPs = 2 · MACs.** Norms, activations, pooling and elementwise adds are not counted, which is the
  convention of the pruning literature (ResNet-56 on 3×32×32 = 125.5 M MACs).
* A "FLOPs reduction" is ``1 − MACs_pruned / MACs_dense``; the ratio is the same in MACs or FLOPs.

The differentiable soft-channel estimate used by AutoBot lives in the structured package and is tested
against :func:`count_model` so that both agree on every model.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["LayerCount", "CountResult", "count_model", "count_params", "count_macs", "macs_counter",
           "no_attention_fastpath"]


@contextlib.contextmanager
def no_attention_fastpath() -> Iterator[None]:
    """Run ``nn.MultiheadAttention``/``nn.Transformer*`` layers unfused (plain matmuls, visible to counters and
    exporters) inside the block; the previous setting is restored on exit."""
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _registry() -> dict:
    """``FlopCounterMode``'s formulas, plus the SDPA kernels it has none for (the CPU flash kernel)."""
    from torch.utils.flop_counter import flop_registry, shape_wrapper

    names = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable")
    ops = (getattr(torch.ops.aten, n, None) for n in names)
    extra = {op: shape_wrapper(_sdpa_flops) for op in ops if op is not None and op not in flop_registry}
    return {**flop_registry, **extra}


class FlopCounter:
    """Counts FLOPs (2 per MAC) of the ops run inside it, per module (keys ``"<RootClass>.<name>"``, cumulative
    over children, and ``"Global"``), with the same API as ``FlopCounterMode``: ``get_total_flops()``,
    ``get_flop_counts()``. Not re-entrant."""

    def __init__(self):
        from torch.utils.module_tracker import ModuleTracker

        self.registry = _registry()
        self.counts: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
        self._tracker = ModuleTracker()
        self._mode: _CountingMode | None = None

    def __enter__(self) -> "FlopCounter":
        self.counts.clear()
        self._tracker.__enter__()
        self._mode = _CountingMode(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        mode, self._mode = self._mode, None
        try:
            return mode.__exit__(*exc)
        finally:
            self._tracker.__exit__()

    def count(self, func, out, args, kwargs) -> None:
        formula = self.registry.get(func._overloadpacket)
        if formula is not None:
            n = formula(*args, **kwargs, out_val=out)
            for parent in set(self._tracker.parents):
                self.counts[parent][func._overloadpacket] += n

    def get_total_flops(self) -> int:
        return sum(self.counts["Global"].values())

    def get_flop_counts(self) -> dict[str, dict[Any, int]]:
        return {k: dict(v) for k, v in self.counts.items()}


class _CountingMode(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # TorchDispatchMode wraps every subclass's dispatch in torch._disable_dynamo, importing torch._dynamo (~3 s)
        # on the first op. Nothing is compiled inside a count, so there is nothing to disable.
        return False

    def __init__(self, counter: FlopCounter):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket not in self.counter.registry and func is not torch.ops.prim.device.default:
            with self:  # composite ops: count what they decompose into (as FlopCounterMode does)
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        self.counter.count(func, out, args, kwargs)
        return out


@contextlib.contextmanager
def macs_counter() -> Iterator[FlopCounter]:
    """The one FLOP counter of secateurs (see module docstring). ``counter.get_total_flops() // 2`` is the MACs of
    what ran inside the block."""
    counter = FlopCounter()
    with no_attention_fastpath(), counter:
        yield counter


@dataclass
class LayerCount:
    """Cost of one leaf module (or of the functional ops run directly in a container's forward)."""

    name: str
    type: str
    output_shape: list[int] | None
    params: int
    macs: int


@dataclass
class CountResult:
    input_shape: list[int]
    params: int
    macs: int
    layers: list[LayerCount] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        return {
            "input_shape": self.input_shape,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "definition": "MACs = multiply-accumulates of conv/linear/matmul; FLOPs = 2*MACs",
            "layers": [asdict(layer) for layer in self.layers],
        }

    def table(self) -> str:
        rows = [("layer", "type", "output", "params", "MACs")]
        for layer in self.layers:
            shape = "x".join(map(str, layer.output_shape)) if layer.output_shape else "-"
            rows.append((layer.name, layer.type, shape, f"{layer.params:,}", f"{layer.macs:,}"))
        rows.append(("total", "", "", f"{self.params:,}", f"{self.macs:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = []
        for i, r in enumerate(rows):
            cells = [r[j].ljust(widths[j]) if j < 3 else r[j].rjust(widths[j]) for j in range(5)]
            lines.append("  ".join(cells).rstrip())
            if i == 0 or i == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        shape = "x".join(map(str, self.input_shape))
        lines.append(f"input {shape}: {self.params / 1e6:.3f} M params, {self.macs / 1e6:.2f} M MACs "
                     f"({self.flops / 1e6:.2f} M FLOPs, FLOPs = 2*MACs)")
        return "\n".join(lines)


def count_params(model: nn.Module) -> int:
    """Number of distinct parameters (a tensor shared by two modules counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    return count_model(model, input_shape).macs


def _example_input(model: nn.Module, input_shape: Sequence[int], batch_size: int) -> torch.Tensor:
    ref = next(iter(model.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return torch.zeros((batch_size, *input_shape), device=device, dtype=dtype)


def count_model(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1) -> CountResult:
    """Count params and MACs for one sample of shape ``input_shape`` (without the batch dimension).

    The model runs once in eval mode (so BatchNorm statistics are untouched) and its mode is restored.
    MACs are reported per sample: the pass runs on ``batch_size`` samples and is divided by it.
    """
    input_shape = [int(s) for s in input_shape]
    if not input_shape or any(s <= 0 for s in input_shape):
        raise ValueError(f"input_shape must be positive sizes without the batch dimension, got {input_shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    root_name = type(model).__name__
    shapes: dict[str, list[int]] = {}
    handles = []
    for name, mod in model.named_modules():
        if name and not any(True for _ in mod.children()):
            handles.append(mod.register_forward_hook(_shape_hook(shapes, name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), macs_counter() as counter:
            model(_example_input(model, input_shape, batch_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    # FlopCounterMode keys are "<RootClass>.<qualified name>", cumulative over children.
    raw = counter.get_flop_counts()
    totals = {k: sum(v.values()) for k, v in raw.items()}

    def flops_of(name: str) -> int:
        return int(totals.get(f"{root_name}.{name}" if name else root_name, 0))

    layers: list[LayerCount] = []
    for name, mod in model.named_modules():
        children = list(mod.named_children())
        own_params = sum(p.numel() for p in mod.parameters(recurse=False))
        own_flops = flops_of(name) - sum(flops_of(f"{name}.{c}" if name else c) for c, _ in children)
        if children:
            if own_flops > 0 or own_params > 0:  # functional ops or direct parameters of a container
                layers.append(LayerCount(f"{name or '<root>'} (functional)", type(mod).__name__, None,
                                         own_params, own_flops // (2 * batch_size)))
            continue
        if own_params == 0 and own_flops == 0:
            continue
        shape = shapes.get(name)
        layers.append(LayerCount(name, type(mod).__name__, shape, own_params, own_flops // (2 * batch_size)))
    total_flops = int(sum(raw.get("Global", {}).values()))
    return CountResult(input_shape, count_params(model), total_flops // (2 * batch_size), layers)


def _shape_hook(store: dict[str, list[int]], name: str):
    def hook(_mod, _inp, out):
        if isinstance(out, torch.Tensor):
            store[name] = list(out.shape[1:])

    return hook
