"""A generated data set cached as files comes back identical: arrays, dtypes, the multi-input
layout and the fingerprint every downstream cache key uses; a second run reads it, a changed
[data] config or a damaged file does not pass for it."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.config.data import DataConfig
from toolchain.config.recipe import Recipe
from toolchain.data import DATASETS, load_dataset
from toolchain.data.feeds import Feeds
from toolchain.data.store import FILE, SPLITS, load_saved, save_dataset
from toolchain.data.types import splits_fingerprint
from toolchain.pipeline import steps
from toolchain.pipeline.cache import StageCache

SMALL = {"shapes": {"samples": 120, "size": 24}, "sequences": {"samples": 120}, "token_patterns": {"samples": 120}}


def _same(a, b) -> None:
    if isinstance(a, Feeds):
        assert isinstance(b, Feeds) and (a.names, dict(a.axes), a.fixed_batch) == (b.names, dict(b.axes), b.fixed_batch)
        for name in a.names:
            _same(a.arrays[name], b.arrays[name])
        return
    assert a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides and np.array_equal(a, b)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_bundled_data_set_round_trips(name, tmp_path):
    data = load_dataset(DataConfig(name=name, kwargs=SMALL.get(name, {})))
    record = save_dataset(data, tmp_path)
    back = load_saved(tmp_path, record)
    for split in SPLITS:
        _same(getattr(data, split), getattr(back, split))
    assert (back.name, back.labels, back.preprocessing, back.input_name) == \
        (data.name, data.labels, data.preprocessing, data.input_name)
    assert back.fingerprint() == splits_fingerprint(data) == record["fingerprint"]


def test_a_damaged_file_is_refused(tmp_path):
    data = load_dataset(DataConfig(name="wine"))
    record = save_dataset(data, tmp_path)
    with np.load(tmp_path / FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["y_test"] = arrays["y_test"][::-1].copy()
    np.savez(tmp_path / FILE, **arrays)
    with pytest.raises(RuntimeError, match="fingerprint"):
        load_saved(tmp_path, record)


def test_the_pipeline_generates_once_and_keys_on_the_config(tmp_path):
    recipe = Recipe.model_validate({"data": {"name": "shapes", "kwargs": SMALL["shapes"]}})
    cache = StageCache(tmp_path / "cache", log=lambda _m: None)
    first = steps.dataset(recipe, cache)
    again = steps.dataset(recipe, cache)
    assert cache.events == [("data", "run"), ("data", "hit")]
    assert again.fingerprint() == first.fingerprint() == splits_fingerprint(load_dataset(recipe.data))
    other = recipe.model_copy(update={"data": recipe.data.model_copy(update={"seed": 1})})
    assert steps.dataset(other, cache).fingerprint() != first.fingerprint() and cache.events[-1] == ("data", "run")
