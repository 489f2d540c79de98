"""The zoo's datasets: deterministic, correctly shaped, balanced, and standardized without leaks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from toolchain.data import DATASETS, DataConfig, load_dataset, stratified_split
from toolchain.errors import BadInput

# Small generated sets keep this file fast; the recipes use the full sizes.
SMALL = {
    "shapes": {"size": 32, "samples": 400},
    "sequences": {"samples": 300, "length": 64},
    "breast_cancer": {},
    "wine": {},
    "token_patterns": {"samples": 400},
}


def _load(name: str, **extra) -> object:
    kwargs = {**SMALL[name], **extra.pop("kwargs", {})}
    return load_dataset(DataConfig(name=name, kwargs=kwargs, **extra))


def test_all_registered():
    assert {"digits", "shapes", "breast_cancer", "wine", "sequences", "token_patterns"} <= set(DATASETS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_config_gives_identical_bytes(name):
    assert _load(name).fingerprint() == _load(name).fingerprint()


@pytest.mark.parametrize("name", ["shapes", "sequences"])
def test_generator_seed_changes_samples_but_split_seed_does_not(name):
    base = _load(name)
    assert _load(name, kwargs={"generator_seed": 1}).fingerprint() != base.fingerprint()
    resplit = _load(name, seed=7)
    assert resplit.fingerprint() != base.fingerprint()  # a different split...
    pooled = lambda d: np.sort(np.concatenate([d.x_train, d.x_test]).reshape(-1))
    np.testing.assert_array_equal(pooled(resplit), pooled(base))  # ...of the same samples


def test_shapes_layout_dtype_range():
    d = _load("shapes")
    assert d.x_train.shape == (320, 3, 32, 32) and d.x_test.shape == (80, 3, 32, 32)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0
    assert len(d.labels) == 8 and d.preprocessing["layout"] == "NCHW"


def test_shapes_default_size_and_speed():
    import time

    start = time.perf_counter()
    d = load_dataset(DataConfig(name="shapes"))
    elapsed = time.perf_counter() - start
    assert d.x_train.shape == (2400, 3, 64, 64)
    assert elapsed < 20, f"generating 3,000 64px shapes took {elapsed:.1f}s; the drawing is no longer vectorized"


def test_sequences_layout_dtype():
    d = _load("sequences", kwargs={"channels": 3})
    assert d.x_train.shape == (240, 3, 64) and d.x_train.dtype == np.float32
    assert d.preprocessing["layout"] == "NCL" and len(d.labels) == 6


def test_token_patterns_inputs_mask_and_marker_order():
    from toolchain.data.tokens import CLS, MARK_A, MARK_B, PAD

    d = _load("token_patterns")
    ids, mask = d.x_train.arrays["input_ids"], d.x_train.arrays["attention_mask"]
    assert d.x_train.names == ("input_ids", "attention_mask") and len(d.x_train) == 320 and len(d.x_test) == 80
    assert ids.shape == mask.shape == (320, 32) and ids.dtype == mask.dtype == np.int64
    assert (ids[:, 0] == CLS).all() and ((ids == PAD) == (mask == 0)).all()
    assert (mask.sum(1) >= 12).all() and set(np.unique(mask)) == {0, 1}
    for row, label in zip(ids, d.y_train):  # exactly two markers, in the order the label names
        markers = row[(row == MARK_A) | (row == MARK_B)]
        assert list(markers) == [[MARK_A, MARK_A], [MARK_A, MARK_B], [MARK_B, MARK_A], [MARK_B, MARK_B]][label]


@pytest.mark.parametrize("name", ["shapes", "sequences", "token_patterns"])
def test_generated_classes_are_balanced(name):
    d = _load(name)
    for y in (d.y_train, d.y_test):
        counts = np.bincount(y, minlength=len(d.labels))
        assert counts.max() - counts.min() <= 1, counts


@pytest.mark.parametrize("name,features,classes", [("breast_cancer", 30, 2), ("wine", 13, 3)])
def test_tabular_standardized_with_training_statistics_only(name, features, classes):
    import sklearn.datasets

    d = _load(name)
    assert d.x_train.shape[1] == features and d.x_train.dtype == np.float32 and len(d.labels) == classes
    np.testing.assert_allclose(d.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(d.x_train.std(0), 1.0, atol=1e-4)
    # The test split is *not* exactly centred: its statistics were not used.
    assert np.abs(d.x_test.mean(0)).max() > 0.05

    raw = getattr(sklearn.datasets, f"load_{name}")()
    cfg = DataConfig(name=name)
    x_tr, x_te, _, _ = stratified_split(raw.data, raw.target, cfg)
    mean, std = np.array(d.preprocessing["mean"]), np.array(d.preprocessing["std"])
    np.testing.assert_allclose(mean, x_tr.mean(0), rtol=1e-12)
    assert not np.allclose(mean, raw.data.mean(0), rtol=1e-6)  # all-rows statistics would leak
    # An app applying the recorded preprocessing to raw rows feeds the model the same inputs.
    np.testing.assert_allclose((x_te - mean) / std, d.x_test, rtol=1e-5, atol=1e-5)


def test_unknown_option_names_the_known_ones():
    with pytest.raises(BadInput, match="known .*samples, size"):
        load_dataset(DataConfig(name="shapes", kwargs={"sizes": 64}))


def test_out_of_range_size_is_rejected():
    with pytest.raises(BadInput, match="24..256"):
        load_dataset(DataConfig(name="shapes", kwargs={"size": 8}))


def test_data_module_stays_lean():
    code = "import sys, toolchain.data; assert 'torch' not in sys.modules, 'toolchain.data imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_arrays_have_the_strides_a_pickled_copy_has(name):
    """A pool worker receives a pickled Dataset; torch must see the same layout in the driver
    (odd strides on a size-1 axis made torch trace a channels_last graph there)."""
    import pickle

    from toolchain.data.types import Dataset

    data = load_dataset(DataConfig(name=name))
    copy = pickle.loads(pickle.dumps(data))
    for split in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(data, split), getattr(copy, split)
        arrays = [(a.arrays[n], b.arrays[n]) for n in a.names] if hasattr(a, "arrays") else [(a, b)]
        assert all(x.strides == y.strides for x, y in arrays)
    odd = np.zeros((6, 8, 8, 1), np.float32).transpose(0, 3, 1, 2)  # C-contiguous, channels_last strides
    made = Dataset("odd", odd, np.zeros(6), odd, np.zeros(6), ("a",))
    assert odd.strides == (256, 4, 32, 4) and made.x_train.strides == made.x_test.strides == (256, 256, 32, 4)
