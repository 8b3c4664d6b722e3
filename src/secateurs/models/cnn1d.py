"""A small 1-D ConvNet for MNIST-1D (Greydanus 2020): 40-sample signals, 10 classes."""
from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights
from ._factory import register_model


class CNN1d(nn.Module):
    """Three conv1d(k=5)-BN-ReLU layers (strides 1, 2, 2) -> adaptive pool to 5 positions -> linear.

    MNIST-1D digits are position-dependent templates, so the head keeps a coarse position axis (5 bins) instead of
    global pooling; the adaptive pool keeps the head's shape fixed for any signal length.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 32, positions: int = 5):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for stride in (1, 2, 2):
            conv = nn.Conv1d(cin, channels, 5, stride=stride, padding=2, bias=False)  # BN's shift replaces the bias
            layers += [conv, nn.BatchNorm1d(channels), nn.ReLU()]
            cin = channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(positions)
        self.classifier = nn.Linear(channels * positions, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model("cnn1d")
def cnn1d(*, num_classes: int = 10, in_channels: int = 3, input_size=None, channels: int = 32) -> nn.Module:
    """1-D ConvNet on (N, C, L) (MNIST-1D: ``in_channels=1``, L=40); ``input_size`` (the length L) is accepted and
    unused -- any L works."""
    return init_weights(CNN1d(in_channels, num_classes, channels))
