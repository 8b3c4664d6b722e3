"""VGG-16 with BatchNorm, CIFAR variant (Simonyan & Zisserman 2015; as pruned by Li et al. 2017, HRank, AutoBot)."""
from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights
from ._factory import register_model

_CFG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    """Conv3x3-BN-ReLU stacks with 5 max pools, global average pool, then Linear-BN1d-ReLU-Linear.

    * Pools use ``ceil_mode=True``: a 28x28 input shrinks 14-7-4-2-1 instead of reaching 0x0 at the fifth pool;
      on 32x32 (16-8-4-2-1) it changes nothing.
    * The two-layer classifier (512 -> 512 -> classes with BatchNorm1d) is the CIFAR VGG-16 of HRank and AutoBot
      (~15.0M params, ~314M MACs), so pruning results compare with theirs; the hidden width is prunable too.
      Its BatchNorm1d, like any BN in training mode, needs more than one sample per batch.
    """

    def __init__(self, cfg: list, in_channels: int, num_classes: int, hidden: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model("vgg16")
def vgg16(*, num_classes: int = 10, in_channels: int = 3, input_size=None) -> nn.Module:
    """VGG-16-BN for small images; ``input_size`` is accepted and unused (global pooling)."""
    return init_weights(VGG(_CFG16, in_channels, num_classes))
