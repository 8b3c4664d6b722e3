"""GoogLeNet (Szegedy et al. 2015), CIFAR variant: a 3x3 stem at full resolution instead of the ImageNet
7x7/stride-2 stem, BN after every conv, and the 5x5 branch as two 3x3 convs (the kuangliu/pytorch-cifar layout
that HRank and AutoBot prune: ~6.2M params, ~1.5G MACs at 32x32 -- by far the heaviest net in the zoo)."""
from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights
from ._factory import register_model


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | maxpool3x3-1x1."""

    def __init__(self, cin: int, c1: int, c3_red: int, c3: int, c5_red: int, c5: int, pool_proj: int):
        super().__init__()
        self.b1 = _conv_bn_relu(cin, c1, 1)
        self.b2 = nn.Sequential(_conv_bn_relu(cin, c3_red, 1), _conv_bn_relu(c3_red, c3, 3))
        self.b3 = nn.Sequential(_conv_bn_relu(cin, c5_red, 1), _conv_bn_relu(c5_red, c5, 3), _conv_bn_relu(c5, c5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv_bn_relu(cin, pool_proj, 1))
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


# (c1, c3_red, c3, c5_red, c5, pool_proj) per Inception module, Table 1 of the paper; "M" = stride-2 max pool.
_CFG = [
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M",
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "M",
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
]


class GoogLeNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(in_channels, 192, 3)]
        cin = 192
        for spec in _CFG:
            if spec == "M":
                # A fresh pool module each time: the reference reuses one, but graph tools key on module identity.
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            else:
                block = Inception(cin, *spec)
                layers.append(block)
                cin = block.out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model("googlenet")
def googlenet(*, num_classes: int = 10, in_channels: int = 3, input_size=None) -> nn.Module:
    """GoogLeNet for 32x32 inputs (8x8 before the global pool); ``input_size`` is accepted and unused."""
    return init_weights(GoogLeNet(in_channels, num_classes))
