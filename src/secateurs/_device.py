"""Where a model lives: the one lookup every module uses to put new tensors beside the weights."""
from __future__ import annotations

import torch
from torch import nn


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter; CPU for a model without parameters."""
    ref = next(iter(model.parameters()), None)
    return ref.device if ref is not None else torch.device("cpu")
