"""What sparsity buys: compressed sparse checkpoints, sparse-kernel CPU inference, N:M semi-structured export.

* :func:`save_sparse` / :func:`export_sparse` — a checkpoint whose sparse tensors are stored as their non-zero
  values plus the smallest index (bitmask, delta or CSR; :mod:`.format`); ``secateurs.load`` reads it back
  bit-exact;
* :func:`to_sparse_kernels` — swap sparse ``Linear`` / ``Conv2d`` layers for CSR-kernel ones where measured faster
  (:mod:`.kernels`); ``secateurs.load(DIR, sparse_kernels=True)`` does it on load;
* :func:`to_semi_structured` — PyTorch's 2:4 semi-structured weights on GPUs that support them, dense elsewhere
  (:mod:`.semi_structured`).
"""
from __future__ import annotations

import os
from pathlib import Path

from .format import Written, is_sparse_checkpoint, weight_bytes, write_state
from .kernels import KernelChoice, SparseConv2d, SparseLinear, to_sparse_kernels

__all__ = ["save_sparse", "export_sparse", "to_sparse_kernels", "KernelChoice", "SparseLinear", "SparseConv2d",
           "is_sparse_checkpoint", "weight_bytes", "to_semi_structured"]


def save_sparse(out_dir: str | os.PathLike, model, spec, summary: dict | None = None, *, overwrite: bool = False,
                extra=None) -> Written:
    """:func:`secateurs.save` in the compressed sparse form (atomic, like every checkpoint write)."""
    from ..io import save

    written: list[Written] = []
    save(out_dir, model, spec, summary, overwrite=overwrite, extra=extra,
         weights=lambda state, tmp: written.append(write_state(state, tmp)))
    return written[0]


def export_sparse(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False,
                  trust_model_code: bool = False) -> Written:
    """Rewrite a checkpoint directory (dense or sparse) in the compressed sparse form; ``summary.json`` is kept.
    ``trust_model_code``: as in :func:`secateurs.load`."""
    from ..io import load_checkpoint

    ckpt = load_checkpoint(checkpoint, trust_model_code=trust_model_code)
    if Path(checkpoint).resolve() == Path(out_dir).resolve():
        raise ValueError(f"the output {str(out_dir)!r} is the checkpoint itself")
    return save_sparse(out_dir, ckpt.model, ckpt.spec, ckpt.summary, overwrite=overwrite)


def __getattr__(name: str):
    if name == "to_semi_structured":
        from .semi_structured import to_semi_structured

        return to_semi_structured
    raise AttributeError(f"module 'secateurs.sparse' has no attribute {name!r}")
