"""Small PyTorch re-creations of the model families people ship, built to exercise what real
models do to a compressor: several inputs of several dtypes, state tensors whose batch axis is
not axis 0, dynamic spatial/sequence dims, anchors built from shapes, outputs that mix scales.
Weights are seeded; sizes are tiny so a whole compress run stays in seconds.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.SiLU())


class Detector(nn.Module):
    """YOLO-style: SiLU convs, an upsampled (Resize) branch concatenated with a finer one, a head
    split into box / class channels, anchors from Shape -> Range -> Expand, and one final Concat
    of box pixels (tens) with sigmoid scores (0..1): the mixed-scale output of the real ones."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.classes = classes
        self.p3 = nn.Sequential(_conv(3, 8, 2), _conv(8, 16, 2))  # stride 4
        self.p4 = _conv(16, 32, 2)  # stride 8
        self.fuse = _conv(48, 16)
        self.head = nn.Conv2d(16, 4 + classes, 1)

    def forward(self, x):
        p3 = self.p3(x)
        up = F.interpolate(self.p4(p3), scale_factor=2.0, mode="nearest")
        out = self.head(self.fuse(torch.cat([p3, up], 1)))
        b, _, h, w = out.shape
        xy, wh, cls = torch.split(out, [2, 2, self.classes], dim=1)
        gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        grid = torch.stack([gx, gy], 0).unsqueeze(0).expand(b, 2, h, w)
        stride = 4.0
        boxes = torch.cat([(torch.sigmoid(xy) * 2 - 0.5 + grid) * stride, torch.sigmoid(wh) * 4 * stride], 1)
        det = torch.cat([boxes, torch.sigmoid(cls)], 1)  # [B, 4 + C, H, W]
        return det.flatten(2).transpose(1, 2)  # [B, anchors, 4 + C]


class CRNN(nn.Module):
    """Text recognizer: convs pool the height away, a bidirectional LSTM reads the width.
    Output [T, B, classes]: the batch sits on axis 1, like the real ones' CTC logits.
    Measured: torch 2.13's exporter bakes T = 16 (the example's width 64 / 4) into a Reshape after
    the LSTM although the width is declared dynamic; at width 96 the graph returns [16, 3B/2, 12].
    The corpus runs it at width 64, where it is exact."""

    def __init__(self, classes: int = 12):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, (8, 1)), nn.ReLU(),
        )
        self.rnn = nn.LSTM(32, 24, bidirectional=True)
        self.fc = nn.Linear(48, classes)

    def forward(self, x):
        f = self.cnn(x).squeeze(2).permute(2, 0, 1)  # [W/4, B, 32]
        y, _ = self.rnn(f)
        return self.fc(y)


class GRUState(nn.Module):
    """Voice-activity style: features, state h [1, B, H] in and out, an int64 sample rate."""

    def __init__(self, feats: int = 8, hidden: int = 32):
        super().__init__()
        self.inp = nn.Linear(feats, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x, h, sr):
        scale = sr.to(torch.float32) / 16000.0
        y, hn = self.gru(torch.relu(self.inp(x * scale)), h)
        return torch.sigmoid(self.out(y[:, -1])), hn


class LSTMState(nn.Module):
    """Two-layer LSTM with explicit h/c [2, B, H] in and out, and an int64 sample rate."""

    def __init__(self, feats: int = 8, hidden: int = 32):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(hidden, 4)

    def forward(self, x, h, c, sr):
        y, (hn, cn) = self.lstm(x * (sr.to(torch.float32) / 16000.0), (h, c))
        return self.out(y), hn, cn


class Encoder(nn.Module):
    """Transformer encoder block: token + position embeddings, masked softmax attention,
    LayerNorm, GELU feed-forward; outputs per-token states and a pooled vector."""

    def __init__(self, vocab: int = 100, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(64, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, dim))

    def forward(self, input_ids, attention_mask):
        b, length = input_ids.shape
        pos = torch.arange(length).unsqueeze(0).expand(b, length)
        x = self.tok(input_ids) + self.pos(pos)
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / (self.dim // self.heads) ** 0.5
        mask = (1.0 - attention_mask.to(torch.float32))[:, None, None, :] * -1e4
        att = torch.softmax(scores + mask, -1) @ v
        x = self.ln1(x + self.proj(att.transpose(1, 2).reshape(b, length, self.dim)))
        x = self.ln2(x + self.ff(x))
        return x, x.mean(1)


class SegNet(nn.Module):
    """Segmentation: strided convs down, ConvTranspose and Resize (bilinear) back up."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.down = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2))
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.cls = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        y = torch.relu(self.up(self.down(x)))
        return self.cls(F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False))
