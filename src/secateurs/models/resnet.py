"""CIFAR ResNets of He et al. 2016 (Sec. 4.2): 6n+2 layers, three stages of 16/32/64 channels."""
from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights
from ._factory import register_model


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    The shortcut is a 1x1 conv + BN projection where the shape changes (the paper's "option B"). The CIFAR paper
    used option A (zero-padding a strided identity, 0.85M params for ResNet-56); we use B because a projection is
    an ordinary prunable layer, whereas zero-padding ties output channels to input channels by index, which
    channel-pruning tools must special-case. Cost: +2.6k params and +0.26M MACs on ResNet-56.
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3, 1)
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        self.relu2 = nn.ReLU()  # a second module, not relu1 again: graph tools key on module identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        # An explicit add (not a fused op) so structured pruning sees the coupled channels in the traced graph.
        return self.relu2(out + identity)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got depth={depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(*_conv_bn(in_channels, 16, 3, 1), nn.ReLU())
        stages, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            # Only a stage's first block changes width or resolution.
            blocks = [BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)  # global pool: any input size works (8x8 -> 1 at 32x32, 7x7 at 28x28)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _resnet(depth: int, num_classes: int, in_channels: int) -> nn.Module:
    return init_weights(CifarResNet(depth, in_channels, num_classes))


# ``input_size`` is accepted and unused by every zoo net whose weights do not depend on it.
@register_model("resnet20")
def resnet20(*, num_classes: int = 10, in_channels: int = 3, input_size=None) -> nn.Module:
    return _resnet(20, num_classes, in_channels)


@register_model("resnet32")
def resnet32(*, num_classes: int = 10, in_channels: int = 3, input_size=None) -> nn.Module:
    return _resnet(32, num_classes, in_channels)


@register_model("resnet56")
def resnet56(*, num_classes: int = 10, in_channels: int = 3, input_size=None) -> nn.Module:
    return _resnet(56, num_classes, in_channels)


@register_model("resnet110")
def resnet110(*, num_classes: int = 10, in_channels: int = 3, input_size=None) -> nn.Module:
    return _resnet(110, num_classes, in_channels)
