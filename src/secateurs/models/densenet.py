"""DenseNet-40 (Huang et al. 2017), the CIFAR net with growth rate 12 and no bottleneck or compression."""
from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights
from ._factory import register_model


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 producing ``growth`` new maps, concatenated after its input (pre-activation order)."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One cat per layer (not one over a growing list) keeps every layer a module with a single input.
        return torch.cat([x, self.conv(self.relu(self.bn(x)))], 1)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1-avgpool2x2; the 1x1 conv keeps the width (compression 1, the plain "DenseNet")."""

    def __init__(self, channels: int):
        super().__init__(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False), nn.AvgPool2d(2)
        )


class DenseNet(nn.Module):
    def __init__(self, depth: int, growth: int, in_channels: int, num_classes: int):
        super().__init__()
        if (depth - 4) % 3:
            raise ValueError(f"DenseNet depth must be 3n+4, got depth={depth}")
        n = (depth - 4) // 3  # layers per dense block: 12 for depth 40
        # Stem width 2k (24): the paper's text says 16, but the public CIFAR code that HRank prunes (and the papers
        # comparing with it) uses 2k; its ~283M MACs / 1.06M params are the baseline those tables report.
        width = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(n):
                layers.append(DenseLayer(width, growth))
                width += growth
            if block < 2:
                layers.append(Transition(width))
        layers += [nn.BatchNorm2d(width), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model("densenet40")
def densenet40(*, num_classes: int = 10, in_channels: int = 3, input_size=None, growth_rate: int = 12) -> nn.Module:
    """DenseNet-40 (k=12): 3 blocks of 12 layers, widths 24 -> 168 -> 312 -> 456; ``input_size`` unused."""
    return init_weights(DenseNet(40, growth_rate, in_channels, num_classes))
