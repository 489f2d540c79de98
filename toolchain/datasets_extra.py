"""More datasets for the model zoo. Each one ships with a dependency or is generated.

- `shapes`: procedurally drawn RGB shapes (image classification, NCHW).
- `breast_cancer`, `wine`: scikit-learn's bundled tabular sets, standardized.
- `sequences`: noisy synthetic waveforms (sequence classification, NCL).

Generated sets draw everything from one seeded numpy Generator (`generator_seed`, default 0), so
the same config gives byte-identical arrays on every machine. The generator seed is separate
from `[data] seed`, which only picks the train/test split: changing the split must not change
the samples themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from toolchain.errors import BadInput

# toolchain.data imports this module to fill its DATASETS dict, so the reverse import happens
# inside the loaders: a top-level one would fail whenever this module is imported first.
if TYPE_CHECKING:
    from toolchain.data import DataConfig, Dataset


def _kwargs(cfg: DataConfig, defaults: dict[str, Any]) -> dict[str, Any]:
    """Dataset kwargs over `defaults`; unknown keys are rejected with the known ones listed."""
    unknown = sorted(set(cfg.kwargs) - set(defaults))
    if unknown:
        raise BadInput(
            f"dataset '{cfg.name}' has no option {', '.join(repr(k) for k in unknown)}",
            f"known [data.kwargs] keys: {', '.join(sorted(defaults))}",
        )
    return {**defaults, **cfg.kwargs}


def _int_in(cfg: DataConfig, kw: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = kw[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadInput(f"dataset '{cfg.name}': [data.kwargs] {key} = {value!r}", f"give an integer in {lo}..{hi}")
    return value


def _balanced_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Equal class counts (n % k extra go to the first classes), in a seeded random order."""
    return rng.permutation(np.arange(n) % k).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# shapes

SHAPES = ("circle", "square", "triangle", "cross", "ring", "semicircle", "frame", "star")
# Difficulty knobs, tuned so models/resnet_small.py reaches ~95% held-out after 10 epochs
# (18% after one). A first setting (radius 0.13-0.32, contrast 0.35, noise up to 0.12, full
# rotation) was memorized instead: ~35% held-out after 15 epochs on 2,400 training images.
RADIUS = (0.2, 0.4)  # shape radius as a fraction of the image side
MIN_CONTRAST = 0.5  # minimum RGB distance between shape and background colour
NOISE_SIGMA = (0.02, 0.1)  # per-image Gaussian pixel noise
RAMP = 0.25  # max colour change of the background ramp from centre to edge
ROTATION = 0.3  # max tilt, radians; rotation invariance is costly to learn from few images


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in the shape's own frame, where the shape fits the unit disc."""
    rho = np.hypot(u, v)
    if kind == "circle":
        return rho <= 1.0
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if kind == "triangle":  # equilateral, circumradius 1: inside all three edge half-planes
        inside = v >= -0.5
        for angle in (np.pi / 6, 5 * np.pi / 6):
            inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.5
        return inside
    if kind == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if kind == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if kind == "semicircle":
        return (rho <= 1.0) & (v >= 0.0)
    if kind == "frame":  # hollow square: same outline as "square", so only the hole tells them apart
        cheb = np.maximum(np.abs(u), np.abs(v))
        return (cheb <= 0.75) & (cheb >= 0.42)
    if kind == "star":  # five points in polar form; squaring the cosine sharpens the tips
        return rho <= 0.4 + 0.6 * np.cos(2.5 * np.arctan2(v, u)) ** 2
    raise ValueError(kind)


def _draw_shapes(rng: np.random.Generator, y: np.ndarray, size: int) -> np.ndarray:
    """Render one image per label in `y`; returns (N, 3, size, size) float32 in 0..1."""
    n = len(y)
    # All per-image parameters are drawn up front, in a fixed order, so the result depends only
    # on the seed and the labels, not on how the rendering below is chunked.
    radius = rng.uniform(*RADIUS, n) * size  # smallest shapes are ~26 px across at 64 px
    margin = radius * 1.05
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    theta = rng.uniform(-ROTATION, ROTATION, n)
    squash = rng.uniform(0.8, 1.2, n)  # mild anisotropy: circles are not perfectly round
    bg = rng.uniform(0, 1, (n, 3))
    fg = rng.uniform(0, 1, (n, 3))
    # Low-contrast pairs are part of what makes the set non-trivial, but a shape invisible against
    # its background would be label noise; push those apart along the colour difference.
    diff = fg - bg
    dist = np.linalg.norm(diff, axis=1, keepdims=True)
    fg = np.where(dist < MIN_CONTRAST, bg + diff / np.maximum(dist, 1e-6) * MIN_CONTRAST, fg)
    fg = np.where((fg < 0) | (fg > 1), 1 - bg, fg)  # clipped would shrink contrast again
    grad = rng.uniform(-RAMP, RAMP, (n, 3, 2))  # a colour ramp across the background
    noise_sigma = rng.uniform(*NOISE_SIGMA, n)
    noise = rng.standard_normal((n, 3, size, size), dtype=np.float32)

    grid = (np.arange(size, dtype=np.float32) + 0.5)[None, :]
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for start in range(0, n, 256):  # chunks bound the temporaries at ~256 images
        sl = slice(start, min(start + 256, n))
        dx = (grid - cx[sl, None])[:, None, :]  # (b, 1, W)
        dy = (grid - cy[sl, None])[:, :, None]  # (b, H, 1)
        cos, sin = np.cos(theta[sl])[:, None, None], np.sin(theta[sl])[:, None, None]
        r = radius[sl, None, None]
        u = (dx * cos + dy * sin) / r * squash[sl, None, None]
        v = (-dx * sin + dy * cos) / r
        mask = np.zeros(u.shape, dtype=bool)
        for k, kind in enumerate(SHAPES):
            pick = np.flatnonzero(y[sl] == k)
            if len(pick):
                mask[pick] = _shape_mask(kind, u[pick], v[pick])
        ramp = (grid[0] / size - 0.5)
        background = (
            bg[sl, :, None, None]
            + grad[sl, :, 0, None, None] * ramp[None, None, None, :]
            + grad[sl, :, 1, None, None] * ramp[None, None, :, None]
        )
        img = np.where(mask[:, None], fg[sl, :, None, None], background)
        img += noise_sigma[sl, None, None, None] * noise[sl]
        images[sl] = np.clip(img, 0.0, 1.0)
    return images


def load_shapes(cfg: DataConfig) -> Dataset:
    """Procedural RGB shapes: random position, size, rotation, colours, background ramp and noise."""
    kw = _kwargs(cfg, {"size": 64, "samples": 3000, "classes": len(SHAPES), "generator_seed": 0})
    size = _int_in(cfg, kw, "size", 24, 256)  # below ~24 px a star and a circle are the same blob
    samples = _int_in(cfg, kw, "samples", 10 * len(SHAPES), 200_000)
    classes = _int_in(cfg, kw, "classes", 2, len(SHAPES))
    rng = np.random.default_rng(_int_in(cfg, kw, "generator_seed", 0, 2**63 - 1))
    y = _balanced_labels(rng, samples, classes)
    x = _draw_shapes(rng, y, size)
    from toolchain.data import Dataset

    return Dataset.split(
        "shapes", x, y, cfg,
        labels=SHAPES[:classes],
        preprocessing={
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "description": f"{size}x{size} RGB, 8-bit colour divided by 255 (range 0..1)",
            "scale": 1 / 255.0,
            "offset": 0.0,
        },
    )


# ---------------------------------------------------------------------------------------------
# tabular (scikit-learn bundled)


def _standardized(name: str, raw, cfg: DataConfig) -> Dataset:
    from toolchain.data import Dataset, _split

    _kwargs(cfg, {})
    x = np.asarray(raw.data, dtype=np.float64)
    y = np.asarray(raw.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = _split(x, y, cfg)
    # Statistics from the training split only: using the test split would leak it into training.
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature would divide by zero
    return Dataset(
        name=name,
        x_train=((x_tr - mean) / std).astype(np.float32),
        y_train=y_tr,
        x_test=((x_te - mean) / std).astype(np.float32),
        y_test=y_te,
        labels=tuple(str(t) for t in raw.target_names),
        preprocessing={
            "layout": "NF",
            "dtype": "float32",
            "description": "x = (raw - mean) / std per feature; mean and std from the training split",
            "features": [str(f) for f in raw.feature_names],
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
        },
    )


def load_breast_cancer(cfg: DataConfig) -> Dataset:
    """Wisconsin breast cancer (569 samples, 30 features, 2 classes), bundled with scikit-learn."""
    from sklearn.datasets import load_breast_cancer as sk_load

    return _standardized("breast_cancer", sk_load(), cfg)


def load_wine(cfg: DataConfig) -> Dataset:
    """UCI wine (178 samples, 13 features, 3 classes), bundled with scikit-learn."""
    from sklearn.datasets import load_wine as sk_load

    return _standardized("wine", sk_load(), cfg)


# ---------------------------------------------------------------------------------------------
# sequences

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
    kw = _kwargs(cfg, {"length": 128, "channels": 2, "samples": 2400, "generator_seed": 0})
    length = _int_in(cfg, kw, "length", 32, 8192)
    channels = _int_in(cfg, kw, "channels", 1, 16)
    samples = _int_in(cfg, kw, "samples", 10 * len(WAVEFORMS), 200_000)
    rng = np.random.default_rng(_int_in(cfg, kw, "generator_seed", 0, 2**63 - 1))
    y = _balanced_labels(rng, samples, len(WAVEFORMS))
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
    from toolchain.data import Dataset

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
