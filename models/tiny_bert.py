"""A small BERT-style transformer encoder for token classification of whole sequences
(`token_patterns`: input_ids + attention_mask -> class logits).

What it exercises for compression: embeddings (token + position + segment, then LayerNorm),
multi-head self-attention with a padding mask, residual + LayerNorm, a GELU feed-forward, and a
[CLS] head. It is written the way BERT is (separate Q/K/V projections, an additive -10000 mask,
post-LayerNorm), so ONNX Runtime's transformer optimizer recognises every block: fused, each
layer becomes one Attention, two SkipLayerNormalization and one BiasGelu, and the embeddings one
EmbedLayerNormalization (stages/transformer_fusion.py). `num_heads` and `hidden_size` are
attributes the export stage records for that optimizer.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
        )
        self.out = nn.Linear(hidden, hidden)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.up, self.down = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

    def forward(self, x, mask_bias):
        b, length, hidden = x.shape
        d = hidden // self.heads

        def split(t):  # (b, L, H) -> (b, heads, L, d)
            return t.view(b, length, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + mask_bias
        context = torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(b, length, hidden)
        x = self.norm1(x + self.out(context))
        return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))


class TinyBert(nn.Module):
    def __init__(self, vocab: int, hidden: int, heads: int, layers: int, max_length: int, num_classes: int):
        super().__init__()
        self.num_heads, self.hidden_size = heads, hidden
        self.tokens, self.positions = nn.Embedding(vocab, hidden), nn.Embedding(max_length, hidden)
        self.segments = nn.Embedding(
            2, hidden
        )  # BERT's token types: one segment here, kept for the fused embedding op
        self.norm = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads) for _ in range(layers))
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.norm(
            self.tokens(input_ids) + self.positions(positions) + self.segments(torch.zeros_like(input_ids))
        )
        # padding gets -10000 before the softmax: exp() makes its attention weight 0
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        return self.classifier(x[:, 0])  # the [CLS] position


def build(
    vocab: int = 128,
    hidden: int = 64,
    heads: int = 4,
    layers: int = 2,
    max_length: int = 32,
    num_classes: int = 4,
) -> nn.Module:
    # ORT's embedding fusion needs more token ids than positions (it tells the tables apart by size).
    if vocab <= max_length:
        raise TypeError(f"vocab ({vocab}) must exceed max_length ({max_length})")
    return TinyBert(vocab, hidden, heads, layers, max_length, num_classes)
