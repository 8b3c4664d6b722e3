"""MobileNetV2 (Sandler et al. 2018), CIFAR variant: stride 1 in the stem and the second stage, so a 32x32
input reaches the head at 4x4 instead of 1x1 (the widely used kuangliu/pytorch-cifar layout). Activations are
ReLU, as in that layout, not the paper's ReLU6."""
from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights
from ._factory import register_model

# (expansion t, output channels c, blocks n, first stride s), Table 2 of the paper with CIFAR strides.
_CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _divisible(v: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of 8 without losing more than 10% (the reference implementation's rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU()]


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection (no activation: the "linear bottleneck").

    A residual add only where stride is 1 and widths match, as in the paper (kuangliu's version adds 1x1
    projection shortcuts elsewhere; we do not, to stay with the published architecture).
    """

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        layers = _conv_bn_relu(cin, mid, 1) if expansion != 1 else []
        layers += _conv_bn_relu(mid, mid, 3, stride, groups=mid)
        layers += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``residual`` is fixed at construction, so tracers see a plain add or none -- no data-dependent branch.
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width_mult: float = 1.0):
        super().__init__()
        cin = _divisible(32 * width_mult)
        layers = _conv_bn_relu(in_channels, cin, 3, 1)  # stride 1 (ImageNet: 2)
        for t, c, n, s in _CFG:
            cout = _divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = _divisible(1280 * max(1.0, width_mult))  # the head is never thinned (paper, Sec. 6.1)
        layers += _conv_bn_relu(cin, last, 1)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model("mobilenetv2")
def mobilenetv2(*, num_classes: int = 10, in_channels: int = 3, input_size=None, width_mult: float = 1.0) -> nn.Module:
    """MobileNetV2 for 32x32 inputs; ``width_mult`` scales every width but the 1280-wide head (rounded to 8);
    ``input_size`` is accepted and unused."""
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    return init_weights(MobileNetV2(in_channels, num_classes, width_mult))
