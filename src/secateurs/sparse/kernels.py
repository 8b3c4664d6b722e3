"""Sparse-kernel layers for CPU inference, used only where a measurement shows them faster.

A 99 %-sparse layer is not automatically faster with a sparse kernel: per stored entry a CSR product does more
work than a dense GEMM does per weight (index loads, no SIMD over the reduction), so a small layer at batch 1 gains
nothing while a wide one gains 3-30x (``benchmarks/results/sparse_inference.md``). :func:`to_sparse_kernels` therefore times, on this
machine, at the caller's batch size and thread count, every candidate layer on the very input it sees in the
model, dense and sparse in interleaved rounds, and swaps a layer only when the sparse one is faster by a margin and
its output equals the dense one's (relative error ≤ 1e-5). Layers that would be slower stay dense, so the model
is never slower than dense beyond timing noise.

Kernel: ``torch.addmm(bias, W_csr, xᵀ)ᵀ`` with the weight in ``torch.sparse_csr`` layout (PyTorch's own CSR ×
dense product; for a single sample ``torch.mv(W_csr, x) + bias``, about twice as cheap). For ``Conv2d``
(groups = 1, zero padding) the input is unfolded (im2col) and multiplied the same
way. The layers are for inference: they hold no trainable parameters.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..timing import cuda_sync, interleaved

__all__ = ["SparseLinear", "SparseConv2d", "KernelChoice", "to_sparse_kernels", "sparse_candidate"]

RTOL = 1e-5


class SparseLinear(nn.Module):
    """``nn.Linear`` with a CSR weight (inference only, CPU). Output equals the dense layer's up to summation order.

    The tensors are plain attributes, not buffers: a buffer lookup goes through ``nn.Module.__getattr__``, and at
    batch 1 those microseconds are a visible share of a small layer's time. ``.to()`` therefore does not move them.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = _csr(linear.weight.detach())
        self.bias = linear.bias.detach().clone() if linear.bias is not None else None
        self._bias_col = None if self.bias is None else self.bias[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == self.in_features:  # one sample: CSR matrix-vector is ~2x cheaper than CSR x (n x 1)
            y = torch.mv(self.weight, x.reshape(-1))
            if self.bias is not None:
                y = y + self.bias
            return y.view(*x.shape[:-1], self.out_features)
        flat = x.reshape(-1, self.in_features).t()
        y = torch.mm(self.weight, flat) if self.bias is None else torch.addmm(self._bias_col, self.weight, flat)
        return y.t().reshape(*x.shape[:-1], self.out_features)

    def to_dense(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(self.weight.to_dense())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return f"{self.in_features}, {self.out_features}, nnz={nnz}, density={nnz / self.weight.numel():.4f}"


class SparseConv2d(nn.Module):
    """``nn.Conv2d`` (groups = 1, zero padding) as im2col + CSR product (inference only, CPU)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not sparse_candidate(conv):
            raise ValueError("SparseConv2d needs groups=1 and padding_mode='zeros' with numeric padding")
        self.out_channels = conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self.weight = _csr(conv.weight.detach().reshape(conv.out_channels, -1))  # plain attributes, as above
        self.bias = conv.bias.detach().clone()[:, None] if conv.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # unbatched (C, H, W), as nn.Conv2d accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        n, _, h, w = x.shape
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (n, CKK, L)
        flat = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (CKK, n·L)
        y = torch.mm(self.weight, flat) if self.bias is None else torch.addmm(self.bias, self.weight, flat)
        return y.view(self.out_channels, n, oh * ow).transpose(0, 1).reshape(n, self.out_channels, oh, ow)

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return f"{self.out_channels}, kernel_size={self.kernel_size}, nnz={nnz}"


def _csr(w: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products we use are tested here
        warnings.simplefilter("ignore", UserWarning)
        return w.to_sparse_csr()


def sparse_candidate(module: nn.Module) -> bool:
    """A layer type and configuration the sparse kernels implement (not whether it pays: that is measured)."""
    if type(module) is nn.Linear:
        return True
    return (type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


@dataclass
class KernelChoice:
    """One candidate layer: its density, dense and sparse median times (µs) at the measured batch, the choice."""

    name: str
    kind: str
    shape: list[int]
    density: float
    dense_us: float | None
    sparse_us: float | None
    replaced: bool
    reason: str
    ratio: float | None = None  # median over rounds of sparse / dense (what the decision uses)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def to_sparse_kernels(model: nn.Module, input_shape: Sequence[int] | None = None, *, batch_size: int = 1,
                      example: torch.Tensor | None = None, max_density: float = 0.5, margin: float = 0.9,
                      rounds: int = 11, min_time_s: float = 0.001, whole_model_check: bool = True
                      ) -> list[KernelChoice]:
    """Replace, in place, each sparse ``Linear`` / ``Conv2d`` of ``model`` by a sparse-kernel layer where that is
    measured faster; returns one :class:`KernelChoice` per candidate layer (replaced or not, and why).

    The measurement uses ``example`` (default: a seeded normal batch of ``batch_size`` × ``input_shape``), the
    current ``torch.get_num_threads()``, and ``rounds`` interleaved dense/sparse rounds of at least
    ``min_time_s`` each; a layer is swapped when the ratio sparse / dense (the larger of the median per-round ratio
    and the ratio of the best rounds) is ≤ ``margin`` and its output
    matches the dense output to 1e-5 relative. Layers denser than ``max_density`` are not tried. With
    ``whole_model_check`` the swapped model is then timed against the dense one the same way, and every swap is
    undone unless the whole model is faster. CPU only: on another device nothing is replaced.
    """
    example = _example_batch(example, input_shape, batch_size,
                             "to_sparse_kernels needs input_shape (the checkpoint's model.json has none) or example")
    was_training = model.training
    model.eval()
    candidates = [(n, m) for n, m in model.named_modules() if sparse_candidate(m)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = _record_inputs(model, candidates, example.to(device))
    choices = []
    originals: dict[str, nn.Module] = {}
    for name, module in candidates:
        w = module.weight
        density = float(torch.count_nonzero(w)) / max(w.numel(), 1)
        kind = type(module).__name__
        base = dict(name=name, kind=kind, shape=list(w.shape), density=density)
        if w.device.type != "cpu" or w.dtype not in (torch.float32, torch.float64):
            choices.append(KernelChoice(**base, dense_us=None, sparse_us=None, replaced=False,
                                        reason=f"sparse kernels are for CPU float32/64, not {w.device.type} {w.dtype}"))
            continue
        if density > max_density or name not in inputs or not name:
            why = ("the model itself is the layer (nothing to replace it in)" if not name else
                   "not reached by the forward pass" if name not in inputs else
                   f"density {density:.3f} > {max_density}")
            choices.append(KernelChoice(**base, dense_us=None, sparse_us=None, replaced=False, reason=why))
            continue
        sparse = SparseLinear(module) if kind == "Linear" else SparseConv2d(module)
        x = inputs[name]
        ref, got = module(x), sparse(x)
        err = float((got - ref).abs().max()) / max(float(ref.abs().max()), 1e-30)
        dense_us, sparse_us, ratio = _interleaved(module, sparse, x, rounds, min_time_s)
        if err > RTOL:
            replaced, reason = False, f"output differs by {err:.2e} relative"
        elif ratio <= margin:
            replaced, reason = True, f"sparse {ratio:.2f}x dense"
        else:
            replaced, reason = False, f"sparse {ratio:.2f}x dense (needs <= {margin:g}x)"
        if replaced:
            originals[name] = module
            _set_module(model, name, sparse)
        choices.append(KernelChoice(**base, dense_us=dense_us, sparse_us=sparse_us, ratio=ratio, replaced=replaced,
                                    reason=reason))
    if originals and whole_model_check:
        choices = _keep_if_whole_model_faster(model, originals, choices, example, rounds, min_time_s)
    model.train(was_training)
    return choices


def _keep_if_whole_model_faster(model, originals: dict, choices: list[KernelChoice], example: torch.Tensor,
                                rounds: int, min_time_s: float) -> list[KernelChoice]:
    """Layers measured faster one by one can still make the whole model slower (a layout change between layers,
    cache effects of the chain): time the swapped model against the dense one on ``example`` and undo every swap
    if it is not faster — the promise is "never slower than dense", for the model the user runs."""
    import dataclasses

    swapped = {name: model.get_submodule(name) for name in originals}  # CSR layers cannot be deep-copied

    def use(layers):
        def swap():
            for name, module in layers.items():  # a few setattr calls, the same cost on both sides
                _set_module(model, name, module)
        return swap

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    ratio = _whole_model_ratio(model, use(originals), use(swapped), example.to(device), rounds, min_time_s)
    if ratio <= 1.0:
        return choices
    use(originals)()
    return [dataclasses.replace(c, replaced=False, reason=f"{c.reason}, but the whole model ran {ratio:.2f}x dense "
                                                          "with the swaps: kept dense") if c.replaced else c
            for c in choices]


def _whole_model_ratio(model: nn.Module, use_dense: Callable[[], None], use_fast: Callable[[], None],
                       example: torch.Tensor, rounds: int, min_time_s: float) -> float:
    """The conservative fast / dense time ratio of ``model(example)`` (:func:`_interleaved`), each call preceded by
    ``use_dense()`` or ``use_fast()``, which put the model's dense or fast layers in place; leaves the fast ones in
    place, also when the timing raises."""
    def run(use):
        def forward(x):
            use()
            return model(x)
        return forward

    try:
        with torch.no_grad():
            return _interleaved(run(use_dense), run(use_fast), example, rounds, min_time_s)[2]
    finally:
        use_fast()


def _example_batch(example: torch.Tensor | None, input_shape: Sequence[int] | None, batch_size: int,
                   missing: str) -> torch.Tensor:
    """``example``, or a seeded normal batch of ``batch_size`` × ``input_shape`` (``missing``: the error when
    neither is given)."""
    if example is not None:
        return example
    if not input_shape:
        raise ValueError(missing)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    return torch.randn(int(batch_size), *input_shape, generator=torch.Generator().manual_seed(0))


def _record_inputs(model: nn.Module, layers: Sequence[tuple[str, nn.Module]], x: torch.Tensor) -> dict:
    """The first input each of ``layers`` (name, module) sees when ``model(x)`` runs (in the model's current mode)."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(_capture(inputs, n)) for n, m in layers]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return inputs


def _capture(store: dict, name: str):
    def hook(module, args):
        if name not in store and args and isinstance(args[0], torch.Tensor):
            store[name] = args[0].detach().clone()
    return hook


def _interleaved(a: Callable[[torch.Tensor], Any], b: Callable[[torch.Tensor], Any], x: torch.Tensor, rounds: int,
                 min_time_s: float) -> tuple[float, float, float]:
    """Median µs per call of ``a(x)`` and ``b(x)`` and a conservative ratio b/a, from ``rounds`` interleaved rounds
    of blocks of at least ``min_time_s`` (:func:`secateurs.timing.interleaved`: the order alternates every round).

    The ratio is the larger of two estimates that load on a shared machine disturbs differently: the median of the
    per-round ratios (a ratio within one round is immune to load that drifts between rounds) and the ratio of the
    best rounds (the least-disturbed call of each)."""
    sync = cuda_sync([x.device]) if x.is_cuda else None  # a GPU call returns before its kernels finish
    t = interleaved([lambda: a(x), lambda: b(x)], warmup=1, min_rounds=rounds, max_rounds=rounds, budget_s=0.0,
                    min_block_s=min_time_s, sub_blocks=1, sync=sync)
    return 1e3 * t.ms[0], 1e3 * t.ms[1], max(t.ratios[1], t.best_ms[1] / t.best_ms[0])


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
