"""LeNet-5 (LeCun et al. 1998) with modern choices: ReLU, max pooling, optional BatchNorm."""
from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights
from ._factory import register_model


def _conv(cin: int, cout: int, padding: int, batch_norm: bool) -> list[nn.Module]:
    # With BN the conv bias is redundant (BN's shift absorbs it), so drop it to keep pruning bookkeeping simple.
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 5, padding=padding, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    return layers + [nn.ReLU(), nn.MaxPool2d(2)]


class LeNet5(nn.Module):
    """conv5x5(6) -> pool -> conv5x5(16) -> pool -> [5x5] -> fc120 -> fc84 -> classes.

    padding=2 on the first conv gives the classic 5x5x16 map on 28x28 MNIST. The adaptive pool to 5x5 keeps
    the fc layer at 400 inputs for any input of at least 12x12 (on 32x32 it averages a 6x6 map down to 5x5), so
    one architecture -- and one parameter count -- serves MNIST and CIFAR.
    """

    def __init__(self, in_channels: int, num_classes: int, batch_norm: bool = False):
        super().__init__()
        self.features = nn.Sequential(*_conv(in_channels, 6, 2, batch_norm), *_conv(6, 16, 0, batch_norm))
        self.pool = nn.AdaptiveAvgPool2d((5, 5))
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model("lenet5")
def lenet5(*, num_classes: int = 10, in_channels: int = 3, input_size=None, batch_norm: bool = False) -> nn.Module:
    """LeNet-5; ``input_size`` is accepted and unused (any input >= 12x12 works)."""
    return init_weights(LeNet5(in_channels, num_classes, batch_norm))
