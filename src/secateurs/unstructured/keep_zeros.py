"""Keep a sparse model's zeros while it trains: ``KeepZeros`` projects each masked parameter back onto its mask
after every optimizer step (a fine-tuned sparse checkpoint stays exactly as sparse); ``zero_masks`` builds the
masks from the entries that are zero now."""
from __future__ import annotations

import torch

from ..train import Callback
from ._select import select_prunable

__all__ = ["KeepZeros", "zero_masks"]


class KeepZeros(Callback):
    """Multiply each parameter by its mask after every optimizer step (and once at the start). ``masks``:
    {name: (parameter, bool mask of the entries to keep)}."""

    def __init__(self, masks: dict):
        self.masks, self._handle = masks, None

    def _project(self, *_):
        with torch.no_grad():
            for param, mask in self.masks.values():
                param.mul_(mask)

    def on_train_begin(self, trainer) -> None:
        self._project()
        self._handle = trainer.optimizer.register_step_post_hook(self._project)

    def on_train_end(self, trainer) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def zero_masks(model, sparsity: dict | None) -> dict:
    """{name: (parameter, mask)} of the sparsified tensors (``sparsity['tensors']``, else every conv/linear
    weight), masking the entries that are exactly zero now. Empty when the checkpoint is not sparse."""
    if not sparsity:
        return {}
    names = sparsity.get("tensors")
    if names:
        params = {n: model.get_parameter(n) for n in names}
    else:
        params = {t.name: t.param for t in select_prunable(model)}
    return {n: (p, p.detach() != 0) for n, p in params.items()}
