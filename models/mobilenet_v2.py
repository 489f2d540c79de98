"""MobileNetV2 (Sandler et al., 2018): the zoo's realistic edge vision model.

Why this model: it is the standard int8 benchmark for edge runtimes, and it stresses exactly what
naive quantization gets wrong: depthwise 3x3 convolutions (few weights per output channel, so
per-tensor weight scales lose accuracy), ReLU6 clipping (must fuse into the conv, not stay a
separate op), and residual adds (each one is a point where int8 graphs either stay int8 or fall
back to fp32).

Design choices:
- The default layer table is the paper's (and torchvision's), so 224x224 latency is comparable
  with published figures. `width_mult` scales channels, rounded to multiples of 8 because int8
  GEMM kernels pack channels in blocks of 4/8/16; odd widths waste lanes.
- Any input resolution works: the only spatial reduction at the end is a global average pool
  written as `mean` over H, W (the exporter emits one ReduceMean, never a fixed-size AvgPool; in
  int8 graphs it stays fp32 behind one DequantizeLinear, which costs ~0.02 ms).
- Conv layers have no bias because BatchNorm follows; the dynamo exporter folds BN into the conv.
- `in_channels` lets the model run on grayscale data sets (e.g. 1-channel digits).
"""

from __future__ import annotations

from torch import nn

# (expansion t, output channels c, repeats n, first stride s), from Table 2 of the paper.
DEFAULT_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never dropping more than 10% (as in the paper's code)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act=True):
        layers = [
            nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection; residual add when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            # Linear bottleneck: no activation, ReLU would destroy information in the narrow space.
            ConvBNReLU6(hidden, cout, kernel=1, act=False),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=10, width_mult=1.0, in_channels=3, dropout=0.2):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(in_channels, cin, stride=2)]
        for t, c, n, s in DEFAULT_SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNReLU6(cin, last, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        self._init_weights()

    def _init_weights(self):
        # torchvision's init: keeps activations in a sane range even before training, which
        # matters for calibrating quantization on an untrained model.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = x.mean((2, 3))  # global average pool: resolution independent
        return self.classifier(x)


def build(num_classes: int = 10, width_mult: float = 1.0, in_channels: int = 3) -> nn.Module:
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, in_channels=in_channels)
