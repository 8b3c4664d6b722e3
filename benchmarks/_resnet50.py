"""A torchvision-style ResNet-50 (bottleneck blocks 3-4-6-3, 1x1 projection shortcuts, 1000 classes) written here so
the graph-speed benchmark needs no torchvision. Same layer shapes and MACs as ``torchvision.models.resnet50``
(4.09 G MACs at 224x224); only the module names differ where torchvision nests them."""
from __future__ import annotations

import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    def __init__(self, inp: int, width: int, stride: int):
        super().__init__()
        out = width * 4
        self.conv1, self.bn1 = nn.Conv2d(inp, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                           if stride != 1 or inp != out else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        inp, stages = 64, []
        for i, n in enumerate(layers):
            width, blocks = 64 * 2 ** i, []
            for j in range(n):
                blocks.append(Bottleneck(inp, width, 2 if j == 0 and i > 0 else 1))
                inp = width * 4
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(inp, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000, in_channels: int = 3) -> ResNet50:
    return ResNet50(num_classes=num_classes)
