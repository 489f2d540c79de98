"""Multi-layer perceptron for standardized tabular data (`breast_cancer`, `wine`).

What it exercises for compression: a graph of nothing but Gemm (Linear) layers, the simplest int8
case: nearly all bytes are weights, so quantization should approach the ideal 4x size ratio, and
global magnitude pruning acts on dense matrices with no convolution structure. The inputs are
standardized features, so calibration sees roughly unit-scale activations. Dropout is an
identity at inference and must vanish from the exported graph.
"""

from __future__ import annotations

from torch import nn


class TabularMLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int, depth: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def build(in_features: int = 30, num_classes: int = 2, hidden: int = 64, depth: int = 2, dropout: float = 0.1) -> nn.Module:
    return TabularMLP(in_features, num_classes, hidden, depth, dropout)
