"""Small helpers shared by the zoo: input-size parsing and the one weight init every model uses."""
from __future__ import annotations

from torch import nn


def hw(input_size: int | tuple[int, int] | list[int] | None, default: int) -> tuple[int, int]:
    """``input_size`` as (H, W): an int means a square input, ``None`` the model's default."""
    if input_size is None:
        return default, default
    if isinstance(input_size, int):
        return input_size, input_size
    size = tuple(input_size)  # JSON round trips turn tuples into lists
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"input_size must be an int or (H, W), got {input_size!r}")
    return size  # type: ignore[return-value]


def init_weights(model: nn.Module) -> nn.Module:
    """He (kaiming) init for convs -- the init every CIFAR reference net trains with; norms start as identity.

    ``fan_out`` follows torchvision's ResNets; linears keep PyTorch's default (uniform, fan_in).
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
