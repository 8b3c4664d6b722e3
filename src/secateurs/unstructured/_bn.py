"""BatchNorm statistics re-estimation: after pruning, the running mean / variance describe the dense network."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .._device import device_of

__all__ = ["reestimate_batchnorm"]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable, num_batches: int | None = None) -> int:
    """Recompute the running statistics of every BatchNorm layer as the plain average over ``batches``.

    ``batches`` yields input tensors or ``(x, y, ...)`` tuples. Statistics are reset, then accumulated with
    ``momentum=None`` (cumulative moving average) in train mode without gradients; the modules' momentum and the
    train/eval mode of every module are restored. If no batch runs, or a forward pass fails, the previous statistics
    are put back. Returns the number of batches used (0: nothing changed).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    modes = {m: m.training for m in model.modules()}  # per module: a frozen BN kept in eval stays so
    momenta = [m.momentum for m in bns]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in bns]
    device = device_of(model)
    used = 0
    complete = False
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for batch in batches:
            if num_batches is not None and used >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            used += 1
        complete = True
    finally:
        for m, mom, state in zip(bns, momenta, saved):
            m.momentum = mom
            if not complete or used == 0:  # never leave reset (mean 0, var 1) or half-estimated statistics
                m.load_state_dict(state)
        for m, training in modes.items():
            m.training = training
    return used
