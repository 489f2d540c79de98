"""Token sequences for a text-classification stand-in, drawn from one seeded Generator.

Each sequence is [CLS] + random filler tokens + two marker tokens at random positions, padded to
a fixed length with PAD (attention_mask 0). The class is the *order* of the markers (A then A,
A then B, B then A, B then B), so counting tokens cannot solve it: the model has to relate two
positions, which is what attention is for. Inputs are two int64 arrays, input_ids and
attention_mask, as a BERT-style encoder takes them.
"""

from __future__ import annotations

import numpy as np

from toolchain.config.data import DataConfig
from toolchain.data.feeds import Feeds
from toolchain.data.types import Dataset, balanced_labels, dataset_kwargs, int_option

PAD, CLS, MARK_A, MARK_B = 0, 1, 2, 3
FIRST_FILLER = 4
LABELS = ("A-then-A", "A-then-B", "B-then-A", "B-then-B")


def _marker_positions(rng: np.random.Generator, lengths: np.ndarray, length: int) -> np.ndarray:
    """Two distinct positions per row in 1..len-1 (0 holds CLS), in increasing order: shape (n, 2)."""
    keys = rng.random((len(lengths), length))
    keys[:, 0] = np.inf
    keys[np.arange(length)[None, :] >= lengths[:, None]] = np.inf
    return np.sort(np.argsort(keys, axis=1)[:, :2], axis=1)


def load_token_patterns(cfg: DataConfig) -> Dataset:
    """Token-pattern classification; x is Feeds {input_ids, attention_mask}, both (n, length) int64."""
    kw = dataset_kwargs(
        cfg, {"length": 32, "vocab": 128, "samples": 3000, "min_length": 12, "generator_seed": 0}
    )
    length = int_option(cfg, kw, "length", 8, 512)
    vocab = int_option(cfg, kw, "vocab", FIRST_FILLER + 4, 65536)
    samples = int_option(cfg, kw, "samples", 10 * len(LABELS), 200_000)
    min_length = int_option(cfg, kw, "min_length", 3, length)
    rng = np.random.default_rng(int_option(cfg, kw, "generator_seed", 0, 2**63 - 1))
    y = balanced_labels(rng, samples, len(LABELS))
    lengths = rng.integers(min_length, length + 1, samples)
    ids = rng.integers(FIRST_FILLER, vocab, (samples, length), dtype=np.int64)
    pos = _marker_positions(rng, lengths, length)
    rows = np.arange(samples)
    ids[rows, pos[:, 0]] = np.where(y < 2, MARK_A, MARK_B)  # first marker: A for classes 0, 1
    ids[rows, pos[:, 1]] = np.where(y % 2 == 0, MARK_A, MARK_B)  # second: A for classes 0, 2
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, 0] = CLS
    ids[mask == 0] = PAD
    x = Feeds({"input_ids": ids, "attention_mask": mask}, {"input_ids": 0, "attention_mask": 0})
    return Dataset.split(
        "token_patterns",
        x,
        y,
        cfg,
        labels=LABELS,
        preprocessing={
            "layout": "NL",
            "dtype": "int64",
            "description": (
                f"input_ids: [CLS]=1 then token ids < {vocab}, PAD=0 after the text, {length} positions; "
                "attention_mask: 1 on tokens, 0 on padding"
            ),
            "scale": 1.0,
            "offset": 0.0,
        },
    )
