"""1-D convolutional classifier for (channels, length) sequences (`sequences` waveforms).

What it exercises for compression: Conv1d layers (exported as ONNX Conv with one spatial axis,
which int8 kernels and per-channel weight scales must handle like Conv2d), BatchNorm1d folding,
MaxPool1d between stages, and a global average pool over time so the head does not depend on
the sequence length. Most weights sit in the later, wider convolutions rather than in the head,
the opposite balance to the digits CNN.

A 1-D CNN rather than a GRU: recurrent layers export as an ONNX GRU/Loop whose int8 support in
ONNX Runtime is limited, so a conv model keeps every stage of the pipeline comparable.
"""

from __future__ import annotations

from torch import nn


def _block(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm1d(cout),
        nn.ReLU(inplace=True),
    )


class SeqConv1d(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int, kernel: int):
        super().__init__()
        # Each stage doubles the width and halves the length: 128 samples -> 64 -> 32 -> 16,
        # enough receptive field to see a full period of the slowest (2 cycles/window) wave.
        self.features = nn.Sequential(
            _block(in_channels, width, kernel),
            nn.MaxPool1d(2),
            _block(width, 2 * width, kernel),
            nn.MaxPool1d(2),
            _block(2 * width, 4 * width, kernel),
            nn.MaxPool1d(2),
            _block(4 * width, 4 * width, kernel),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean(2))


def build(in_channels: int = 2, num_classes: int = 6, width: int = 16, kernel: int = 7) -> nn.Module:
    return SeqConv1d(in_channels, num_classes, width, kernel)
