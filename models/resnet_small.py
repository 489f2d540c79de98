"""ResNet-style CNN for the procedural `shapes` images (He et al., 2016, basic blocks).

What it exercises for compression:
- Residual adds: each add joins two branches, so int8 graphs must give both inputs compatible
  scales (or fall back to fp32 there), and structured pruning must cut the channels of every
  layer feeding one add together (a coupled group in a dependency graph).
- BatchNorm after every convolution: must fold into the conv at export; convs have no bias.
- A 1x1 projection shortcut where the width changes: a second layer writing the same add.
- Global *max* pooling (ReduceMax; MobileNetV2 covers the average-pool case), so any input
  resolution (64-96 px) exports the same graph. A shape covers a small part of the image, and
  max keeps its strongest response instead of averaging it with the background.
"""

from __future__ import annotations

from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    )


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the (projected when shapes differ) input, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True), _conv_bn(cout, cout, 3, 1))
        self.shortcut = _conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResNetSmall(nn.Module):
    def __init__(self, num_classes: int = 8, width: int = 16, blocks: int = 1, in_channels: int = 3):
        super().__init__()
        # A stride-2 stem halves the resolution first: at 64 px the stages then run at 32/16/8 px,
        # which keeps an epoch of 2,400 images to a few seconds on 2 CPU cores.
        layers: list[nn.Module] = [_conv_bn(in_channels, width, 3, 2), nn.ReLU(inplace=True)]
        cin = width
        for stage, mult in enumerate((1, 2, 4)):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(cin, width * mult, stride))
                cin = width * mult
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.classifier(self.features(x).amax((2, 3)))


def build(num_classes: int = 8, width: int = 16, blocks: int = 1, in_channels: int = 3) -> nn.Module:
    return ResNetSmall(num_classes=num_classes, width=width, blocks=blocks, in_channels=in_channels)
