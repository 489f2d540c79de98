"""Shared fixtures: a fast target-profile directory and a reduced recipe for end-to-end runs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from toolchain.config.base import to_toml
from toolchain.resources import bundled_dir

REDUCED_RECIPE = """
schema_version = 1
name = "digits-fast"
targets = ["cpu-server", "arm-mobile"]

[train]
epochs = 6

[prune]
amount = 0.3
finetune_epochs = 1

[quantize]
calibration_samples = 128
"""


def _fast_profile(src: Path) -> str:
    """A bundled profile with a short benchmark: same runtime/quantize/artifact choices."""
    data = tomllib.loads(src.read_text())
    data["benchmark"].update(warmup_runs=2, runs=20, rounds=2, max_seconds=2.0)
    return to_toml(data)


def arm_env_or_skip():
    """The emulated aarch64 root, built once. Without qemu-user-static, debootstrap or root the
    tests skip with the install hint, except under CI=true, where `.ci/run` installs them and
    a missing tool must fail."""
    import os

    from toolchain.arm.emulator import ensure_arm_env
    from toolchain.errors import BadInput

    try:
        return ensure_arm_env()
    except BadInput as err:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"ARM emulation unavailable: {err}")


def require_extra(module: str, extra: str):
    """Import an optional extra's module. Without it the test skips with the install command,
    except under CI=true, where `.ci/run` installs every extra and a missing one must fail."""
    import importlib
    import os

    try:
        return importlib.import_module(module)
    except ImportError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"extra '{extra}' missing under CI ({err}): .ci/run installs every extra")
        pytest.skip(f"needs the '{extra}' extra: pip install -e '.[{extra}]'", allow_module_level=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two shared cores: torch's default pool oversubscribes them (measured 17x slower epochs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits():
    from toolchain.data import DataConfig, load_dataset

    return load_dataset(DataConfig())


@pytest.fixture(scope="session")
def fast_targets_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("targets")
    for name in ("cpu-server", "arm-mobile"):
        (d / f"{name}.toml").write_text(_fast_profile(bundled_dir("targets") / f"{name}.toml"))
    return d


@pytest.fixture(scope="session")
def reduced_recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "fast.toml"
    path.write_text(REDUCED_RECIPE)
    return path
