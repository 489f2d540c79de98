"""Noisy synthetic waveforms (sequence classification, NCL), drawn from one seeded Generator."""

from __future__ import annotations

import numpy as np

from toolchain.config.data import DataConfig
from toolchain.data.types import Dataset, balanced_labels, dataset_kwargs, int_option

WAVEFORMS = ("sine", "square", "sawtooth", "triangle", "chirp", "damped")


def _waves(kind: str, phase: np.ndarray, t: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Unit-amplitude waveforms; `phase` is in cycles, shape (b, C, L)."""
    frac = phase % 1.0
    if kind == "sine":
        return np.sin(2 * np.pi * phase)
    if kind == "square":
        return np.where(frac < 0.5, 1.0, -1.0)
    if kind == "sawtooth":
        return 2 * frac - 1
    if kind == "triangle":
        return 1 - 4 * np.abs(frac - 0.5)
    if kind == "chirp":  # frequency rises from f to ~3f across the window
        return np.sin(2 * np.pi * (phase + f * t * t))
    if kind == "damped":
        return np.sin(2 * np.pi * phase) * np.exp(-3.0 * t)
    raise ValueError(kind)


def load_sequences(cfg: DataConfig) -> Dataset:
    """Noisy synthetic waveforms, one class per waveform family; shape (channels, length)."""
    kw = dataset_kwargs(cfg, {"length": 128, "channels": 2, "samples": 2400, "generator_seed": 0})
    length = int_option(cfg, kw, "length", 32, 8192)
    channels = int_option(cfg, kw, "channels", 1, 16)
    samples = int_option(cfg, kw, "samples", 10 * len(WAVEFORMS), 200_000)
    rng = np.random.default_rng(int_option(cfg, kw, "generator_seed", 0, 2**63 - 1))
    y = balanced_labels(rng, samples, len(WAVEFORMS))
    t = np.linspace(0.0, 1.0, length, endpoint=False)[None, None, :]  # the window is 1 time unit
    # Cycles per window overlap across classes, so frequency alone never gives the class away.
    freq = rng.uniform(2.0, 8.0, (samples, 1, 1))
    phase0 = rng.uniform(0, 1, (samples, channels, 1))  # each channel sees its own phase
    amp = rng.uniform(0.5, 1.5, (samples, channels, 1))
    offset = rng.uniform(-0.3, 0.3, (samples, channels, 1))
    noise_sigma = rng.uniform(0.05, 0.4, (samples, 1, 1))  # up to ~40% of the signal amplitude
    noise = rng.standard_normal((samples, channels, length))
    phase = phase0 + freq * t
    x = np.empty((samples, channels, length), dtype=np.float64)
    for k, kind in enumerate(WAVEFORMS):
        pick = np.flatnonzero(y == k)
        x[pick] = _waves(kind, phase[pick], t, freq[pick])
    x = (amp * x + offset + noise_sigma * noise).astype(np.float32)

    return Dataset.split(
        "sequences", x, y, cfg,
        labels=WAVEFORMS,
        preprocessing={
            "layout": "NCL",
            "dtype": "float32",
            "description": f"{channels} channel(s) x {length} samples of raw signal, no scaling",
            "scale": 1.0,
            "offset": 0.0,
        },
    )
