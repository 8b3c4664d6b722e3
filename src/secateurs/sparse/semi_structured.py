"""2:4 weights in PyTorch's semi-structured sparse format on GPUs that have sparse tensor cores; dense elsewhere.

``torch.sparse.to_sparse_semi_structured`` needs a CUDA device of compute capability ≥ 8.0 (Ampere and later),
a 2-D weight in float16 / bfloat16 / float32 / int8 whose shape is a multiple of the kernels' tile (read from
PyTorch's own constraint table) and an exact 2:4 pattern (``sparsify --pattern 2:4``). Every ``nn.Linear`` that
meets all of that gets a semi-structured weight; every other layer — and the whole model on a CPU, an older GPU
or a torch without the feature — stays dense and bit-for-bit as it was (the fallback), and the returned report says
why for each layer. Nothing here was measured on a GPU in this project (none was available): the speed-up a GPU
gives is PyTorch's, not ours.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
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


@torch.no_grad()
def to_semi_structured(model: nn.Module) -> list[SemiStructuredChoice]:
    """Give every eligible 2:4 ``nn.Linear`` of ``model`` a semi-structured weight, in place (inference only).

    Put the model on its GPU in its inference dtype first (``model.half().cuda()``). Returns one choice per
    ``nn.Linear`` (converted or not, and why); with no supported device nothing changes.
    """
    choices = []
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
            module.weight = nn.Parameter(torch.sparse.to_sparse_semi_structured(w.detach()), requires_grad=False)
            choices.append(SemiStructuredChoice(**base, converted=True, reason=why))
    return choices
