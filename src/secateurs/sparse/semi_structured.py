"""2:4 weights in PyTorch's semi-structured sparse format on GPUs that have sparse tensor cores, where measured
faster; dense elsewhere.

``torch.sparse.to_sparse_semi_structured`` needs a CUDA device of compute capability ≥ 8.0 (Ampere and later),
a 2-D weight in float16 / bfloat16 / float32 / int8 whose shape is a multiple of the kernels' tile (read from
PyTorch's own constraint table) and an exact 2:4 pattern (``sparsify --pattern 2:4``). Such a layer is *eligible*;
every other layer — and the whole model on a CPU, an older GPU or a torch without the feature — stays dense and
bit-for-bit as it was (the fallback), and the returned report says why for each layer.

Eligible is not faster. On an H200 with PyTorch 2.11 (cuSPARSELt, fp16, eager) transformer feed-forward blocks of
width 1024, 4096 and 8192 with every layer semi-structured ran 1.26-22x *slower* than dense at 1 to 1,024 rows, and
faster only at 8,192 rows of the wider ones: 0.92x at width 4096, 0.72x at width 8192 (width 1024: 5.3x slower)
(``benchmarks/results/semi_structured_speed_cuda.md``). So, as :func:`to_sparse_kernels` does
on the CPU, :func:`to_semi_structured` times every eligible layer on the input it sees in the model, dense and
semi-structured interleaved (CUDA-synchronised), converts only the ones measured faster by a margin whose
output matches, and keeps them only if the whole model then runs faster; ``measure=False`` converts every eligible
layer untimed. Either way a layer whose semi-structured
forward raises stays dense with the error as its reason: PyTorch's CUTLASS 2:4 kernels
(``SparseSemiStructuredTensor._FORCE_CUTLASS``) convert on an H200 and then fail at the first product ("Supported
only on GPUs with compute capability 8.x", ``benchmarks/results/gpu_run_2026-12-04_ac9d848.log``); its cuSPARSELt
kernels, the default where available, run there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..unstructured._nm import Pattern, is_nm

__all__ = ["semi_structured_support", "to_semi_structured", "SemiStructuredChoice"]

TWO_FOUR = Pattern(2, 4)


@dataclass
class SemiStructuredChoice:
    name: str
    shape: list[int]
    converted: bool
    reason: str
    ratio: float | None = None  # semi-structured / dense time of the layer on its input (None: not timed)
    dense_us: float | None = None  # median µs per call of the layer, dense and semi-structured (None: not timed)
    sparse_us: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def semi_structured_support(device: torch.device | str | None = None) -> tuple[bool, str]:
    """``(supported, reason)`` for semi-structured 2:4 kernels on ``device`` (default: the current CUDA device)."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type != "cuda":
        return False, f"device {device} is not CUDA"
    if not torch.cuda.is_available():
        return False, "no CUDA device (semi-structured sparsity needs compute capability >= 8.0)"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 0):
        return False, f"compute capability {major}.{minor} < 8.0"
    if not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return False, f"torch {torch.__version__} has no torch.sparse.to_sparse_semi_structured"
    return True, f"compute capability {major}.{minor}"


def _tile(dtype: torch.dtype) -> tuple[int, int] | None:
    cls = getattr(torch.sparse, "SparseSemiStructuredTensorCUTLASS", None)
    table = getattr(cls, "_DTYPE_SHAPE_CONSTRAINTS", {}) or {}
    cfg = table.get(dtype)
    return (cfg.sparse_min_rows, cfg.sparse_min_cols) if cfg is not None else None


RTOL = 1e-2  # the kernels reorder the sums; fp16 outputs agreed to 3-6e-4 relative on the H200 (the benchmark)
# A timed block on a GPU is many queued calls between two synchronisations, as the layers of a model run: with a
# block of one synchronised call the semi-structured path's host overhead (~0.6-0.9 ms a call on the H200) is all
# exposed, and per-layer ratios came out far above the whole block's (1.73-1.76x per layer vs 0.92x for the block at
# width 4096 x 8,192 rows, benchmarks/results/semi_structured_speed_cuda.json), so layers that pay were kept dense.
GPU_BLOCK_S = 0.02


@torch.no_grad()
def to_semi_structured(model: nn.Module, input_shape: Sequence[int] | None = None, *, batch_size: int = 1,
                       example: torch.Tensor | None = None, measure: bool = True, margin: float = 0.9,
                       rounds: int = 11, min_time_s: float | None = None, whole_model_check: bool = True
                       ) -> list[SemiStructuredChoice]:
    """Give the eligible 2:4 ``nn.Linear`` layers of ``model`` a semi-structured weight, in place (inference only),
    where that is measured faster.

    Put the model on its GPU in its inference dtype first (``model.half().cuda()``). With ``measure`` (default)
    every eligible layer is timed on the input it sees when ``model`` runs ``example`` (default: a seeded normal
    batch of ``batch_size`` × ``input_shape``), ``rounds`` interleaved rounds of blocks of at least ``min_time_s``
    (default ``GPU_BLOCK_S``, 20 ms), and converted when semi-structured / dense ≤ ``margin`` and the outputs agree
    to ``RTOL`` relative. With ``whole_model_check`` (and ``measure``) the converted model is then timed against the
    dense one on ``example`` the same way, and every conversion is undone unless the whole model is faster, as
    :func:`to_sparse_kernels` does. Returns one choice per ``nn.Linear`` (converted or not, why, and the measured
    ratio); with no supported device nothing changes and no input is needed.
    """
    from .kernels import _example_batch, _record_inputs

    choices, eligible = [], []
    for name, module in model.named_modules():
        if type(module) is not nn.Linear:
            continue
        w = module.weight
        base = dict(name=name, shape=list(w.shape))
        ok, why = semi_structured_support(w.device if w.is_cuda else "cpu")
        tile = _tile(w.dtype)
        if not ok:
            choices.append(SemiStructuredChoice(**base, converted=False, reason=f"dense fallback: {why}"))
        elif not is_nm(w, TWO_FOUR):
            choices.append(SemiStructuredChoice(**base, converted=False, reason="weight is not 2:4 sparse"))
        elif tile is None:
            choices.append(SemiStructuredChoice(**base, converted=False, reason=f"dtype {w.dtype} not supported"))
        elif w.shape[0] % tile[0] or w.shape[1] % tile[1]:
            choices.append(SemiStructuredChoice(**base, converted=False,
                                                reason=f"shape {list(w.shape)} is not a multiple of {list(tile)}"))
        else:
            choices.append(SemiStructuredChoice(**base, converted=False, reason=why))
            eligible.append((len(choices) - 1, name, module))
    if not eligible:
        return choices
    inputs: dict[str, torch.Tensor] = {}
    if measure:
        example = _example_batch(example, input_shape, batch_size,
                                 "to_semi_structured needs input_shape or example to time the eligible layers "
                                 "(or measure=False to convert them untimed)")
        ref = next(model.parameters())
        example = example.to(ref.device, ref.dtype if example.is_floating_point() else example.dtype)
        was_training = model.training
        model.eval()
        try:
            inputs = _record_inputs(model, [(n, m) for _, n, m in eligible], example)
        finally:
            model.train(was_training)
    block_s = GPU_BLOCK_S if min_time_s is None else min_time_s
    dense_weights: dict[int, tuple[nn.Module, nn.Parameter]] = {}  # choice index -> (layer, its dense weight)
    try:
        for i, name, module in eligible:
            if measure and name not in inputs:
                choices[i].reason = "not reached by the forward pass: kept dense"
                continue
            dense_w = module.weight
            if _convert(module, choices[i], inputs[name] if measure else None, margin, rounds, block_s):
                choices[i].converted = True
                dense_weights[i] = (module, dense_w)
    except BaseException:  # a failure leaves the model as it was: the layers converted before it go back too
        for module, dense_w in dense_weights.values():
            module.weight = dense_w
        raise
    if measure and dense_weights and whole_model_check:
        _keep_if_whole_model_faster(model, dense_weights, choices, example, rounds, block_s)
    return choices


def _convert(module: nn.Linear, choice: SemiStructuredChoice, x: torch.Tensor | None, margin: float, rounds: int,
             block_s: float) -> bool:
    """Give ``module`` a semi-structured weight and say whether it keeps it (``choice.reason`` says why): timed on
    ``x`` against its dense weight and kept when within ``margin`` with the same output, or, with ``x`` None
    (measure=False), kept untimed after one probe row (a kernel that cannot run here must not reach the user's
    inference). Whatever the outcome or failure (a kernel, an out-of-memory), a layer not kept has its dense weight
    back."""
    from .kernels import _interleaved

    dense_w, kept = module.weight, False
    probe = x if x is not None else torch.zeros(1, module.in_features, device=dense_w.device, dtype=dense_w.dtype)
    try:
        try:
            module.weight = nn.Parameter(torch.sparse.to_sparse_semi_structured(dense_w.detach()), requires_grad=False)
            got = module(probe)
        except RuntimeError as e:  # e.g. PyTorch's CUTLASS 2:4 kernels run on compute capability 8.x only
            choice.reason = f"the semi-structured kernel failed here ({str(e).splitlines()[0][:160]}): kept dense"
            return False
        if x is None:
            choice.reason = f"{choice.reason}; not timed (measure=False)"
            kept = True
            return True
        bias = module.bias
        ref_out = F.linear(x, dense_w, bias)
        err = float((got.float() - ref_out.float()).abs().max()) / max(float(ref_out.float().abs().max()), 1e-30)
        choice.dense_us, choice.sparse_us, choice.ratio = _interleaved(
            lambda t, w=dense_w, b=bias: F.linear(t, w, b), module, x, rounds, block_s)
        if err > RTOL or choice.ratio > margin:
            choice.reason = (f"output differs by {err:.2e} relative: kept dense" if err > RTOL else
                             f"semi-structured {choice.ratio:.2f}x dense (needs <= {margin:g}x): kept dense")
            return False
        choice.reason = f"semi-structured {choice.ratio:.2f}x dense ({choice.reason})"
        kept = True
        return True
    finally:
        if not kept:
            module.weight = dense_w


def _keep_if_whole_model_faster(model: nn.Module, dense_weights: dict, choices: list[SemiStructuredChoice],
                                example: torch.Tensor, rounds: int, block_s: float) -> None:
    """Layers measured faster one by one can still make the model slower (the semi-structured path's host overhead
    per call, a layout change between layers): undo every conversion unless the converted model is faster."""
    from .kernels import _whole_model_ratio

    dense = {i: w for i, (_, w) in dense_weights.items()}
    sparse = {i: module.weight for i, (module, _) in dense_weights.items()}

    def use(weights):
        def put():
            for i, (module, _) in dense_weights.items():  # a few attribute sets, the same cost on both sides
                module.weight = weights[i]
        return put

    was_training = model.training
    model.eval()
    try:
        ratio = _whole_model_ratio(model, use(dense), use(sparse), example, rounds, block_s)
    except BaseException:
        use(dense)()  # a failure leaves the model as it was
        raise
    finally:
        model.train(was_training)
    if ratio <= 1.0:
        return
    use(dense)()
    for i in dense_weights:
        choices[i].converted = False
        choices[i].reason += f", but the whole model ran {ratio:.2f}x dense with it: kept dense"
