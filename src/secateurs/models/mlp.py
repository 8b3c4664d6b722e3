"""LeNet-300-100 (LeCun et al. 1998; the MLP of the pruning literature since Han et al. 2015)."""
from __future__ import annotations

import torch
from torch import nn

from ._common import hw, init_weights
from ._factory import register_model


class MLP(nn.Module):
    """flatten -> 300 -> 100 -> classes with ReLU.

    The first layer's width is fixed at construction (in_features = C*H*W), never inferred lazily:
    lazy modules have no weight shapes until the first forward, which breaks pruning masks and state-dict loading.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (300, 100)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(torch.flatten(x, 1)))


@register_model("mlp")
def mlp(*, num_classes: int = 10, in_channels: int = 3, input_size=None, hidden=(300, 100)) -> nn.Module:
    """LeNet-300-100. ``input_size`` (int or (H, W), default 28) sets in_features = in_channels*H*W:
    build with the input resolution you will feed it (3x32x32 needs ``input_size=32``)."""
    h, w = hw(input_size, default=28)
    return init_weights(MLP(in_channels * h * w, num_classes, tuple(hidden)))
