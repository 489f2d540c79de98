"""Recipes, target profiles and budgets: schema_version, unknown keys, round-trips."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from toolchain.config.base import to_toml, validate
from toolchain.config.budgets import Budgets
from toolchain.config.recipe import Recipe, load_recipe
from toolchain.config.target import TargetProfile, available_targets, load_target, load_target_file
from toolchain.errors import BadInput, ConfigError


def test_default_recipe_round_trips_through_toml(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(Recipe().to_toml())
    assert load_recipe(path) == Recipe()
    assert load_recipe(path).content_hash() == Recipe().content_hash()


def test_recipe_hash_changes_with_any_knob():
    assert Recipe().content_hash() != Recipe(train={"epochs": 3}).content_hash()


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("schema_version = 1\n[train]\nepochz = 3\n", "unknown key 'train.epochz'; known keys here: batch_size, epochs"),
        ("schema_version = 1\n[train]\nepochs = 'ten'\n", "bad value for 'train.epochs'"),
        ("schema_version = 1\nmodle = 'x'\n", "unknown key 'modle'"),
        ("schema_version = 1\n[prune]\namount = 1.5\n", "'prune.amount' (1.5): Input should be less than 1"),
        ("schema_version = 2\n", "bad value for 'schema_version'"),
        ("name = 'x'\n", "missing 'schema_version'"),
        ("schema_version = 1\n[budgets.all]\nmax_bytez = 1\n", "known keys here: max_accuracy_drop, max_bytes"),
        ("schema_version = 1\n[train\n", "malformed TOML"),
    ],
)
def test_bad_recipe_gives_one_line_naming_key(tmp_path, toml, expected):
    path = tmp_path / "r.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_recipe(path)
    message = str(exc.value)
    assert expected in message
    assert "\n" not in message


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_bundled_targets_load_and_round_trip():
    names = available_targets()
    assert {"cpu-server", "arm-mobile"} <= set(names)
    for name in names:
        profile = load_target(name)
        again = validate(TargetProfile, tomllib.loads(to_toml(profile.model_dump(mode="json"))), name)
        assert again == profile
    assert load_target("arm-mobile").platform == "arm"
    assert load_target("arm-mobile").artifact.format == "ort"
    assert load_target("cpu-server").platform == "amd64"


def test_unknown_target_lists_known():
    with pytest.raises(BadInput, match="unknown target 'arm'; known: .*arm-mobile.*cpu-server"):
        load_target("arm")


def test_user_targets_dir_adds_and_validates(tmp_path):
    good = load_target("cpu-server").model_dump(mode="json") | {"name": "my-box"}
    (tmp_path / "my-box.toml").write_text(to_toml(good))
    assert load_target("my-box", tmp_path).name == "my-box"
    bad = dict(good, name="other")
    (tmp_path / "other-file.toml").write_text(to_toml(bad))
    with pytest.raises(BadInput, match="rename the file"):
        load_target_file(tmp_path / "other-file.toml")
    (tmp_path / "typo.toml").write_text(to_toml(dict(good, name="typo", plattform="arm")))
    with pytest.raises(ConfigError, match="unknown key 'plattform'; known keys here: .*platform"):
        load_target("typo", tmp_path)


def test_ort_format_requires_fixed_shapes(tmp_path):
    data = load_target("arm-mobile").model_dump(mode="json")
    data["artifact"]["shapes"] = "dynamic-batch"
    with pytest.raises(ConfigError, match="requires artifact.shapes = 'fixed'"):
        validate(TargetProfile, data, "x.toml")


def test_budgets_merge_target_then_all_then_specific():
    recipe = Recipe(budgets={"all": {"max_p90_ms": 5.0}, "cpu-server": {"max_p90_ms": 2.0, "max_bytes": 10}})
    profile_budgets = Budgets(max_size_ratio=0.3, max_p90_ms=9.0)
    cpu = recipe.budgets_for("cpu-server", profile_budgets)
    arm = recipe.budgets_for("arm-mobile", profile_budgets)
    assert (cpu.max_p90_ms, cpu.max_bytes, cpu.max_size_ratio) == (2.0, 10, 0.3)
    assert (arm.max_p90_ms, arm.max_bytes, arm.max_size_ratio) == (5.0, None, 0.3)


def test_cost_per_million_from_measured_throughput():
    from toolchain.pipeline.metrics import cost_estimate

    # batch 8 at 4 ms beats batch 1 at 1 ms: 2000/s; $0.36/h = $0.0001/s -> $0.05 per 1M
    cost = cost_estimate({"1": {"p50": 1.0}, "8": {"p50": 4.0}}, price_per_hour=0.36, threads=2)
    assert cost["throughput_per_s"] == pytest.approx(2000.0)
    assert cost["cost_per_million"] == pytest.approx(0.05)


def test_cpuinfo_reads_x86_flags_and_aarch64_features():
    from toolchain.hostinfo import INT8_ISA, parse_cpuinfo

    x86 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_int8\n"
    model, flags = parse_cpuinfo(x86)
    assert model == "Intel(R) Xeon(R)" and sorted(flags & INT8_ISA) == ["amx_int8", "avx2", "avx512_vnni", "avx512f"]
    arm = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes asimddp i8mm\n"
           "CPU implementer\t: 0x41\nCPU part\t: 0xd0c\n")
    model, flags = parse_cpuinfo(arm)
    assert model == "ARM CPU part 0xd0c" and sorted(flags & INT8_ISA) == ["asimddp", "i8mm"]


def test_host_caveat_names_full_range_u8s8_schemes_on_x86_without_vnni():
    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import host_caveat

    cpu, avx2 = load_target("cpu-server"), load_target("x86-avx2-novnni")
    schemes = {"int8": cpu.quantize, "fp32_stem=false": cpu.quantize.model_copy(update={"fp32_stem": False}),
               "reduce": cpu.quantize.model_copy(update={"reduce_range": True}),
               "s8s8": cpu.quantize.model_copy(update={"activation_type": "int8"})}
    epyc = {"cpu": "AMD EPYC", "machine": "x86_64", "isa": ["avx2"]}
    note = host_caveat(cpu, schemes, epyc)
    assert "AMD EPYC has no VNNI" in note and "int8, fp32_stem=false measured here" in note
    assert host_caveat(cpu, schemes, {**epyc, "isa": ["avx2", "avx512_vnni"]}) is None  # VNNI: no saturation
    assert host_caveat(cpu, schemes, {**epyc, "machine": "aarch64", "isa": ["asimddp"]}) is None  # ARM: 32-bit sums
    assert host_caveat(avx2, {"int8": avx2.quantize}, epyc) is None  # 7-bit weights: the profile for this CPU


def test_budgets_of_a_recipe_target_stay_valid_when_one_target_is_built():
    from toolchain.config.recipe import load_recipe
    from toolchain.pipeline.run import RunOptions, resolve_targets

    recipe = load_recipe("models/resnet-small.toml")  # has [budgets.arm-mobile]
    profiles = resolve_targets(recipe, RunOptions(out_dir=Path("unused"), targets=("cpu-server",)))
    assert list(profiles) == ["cpu-server"]
    assert recipe.budgets_for("arm-mobile", profiles["cpu-server"].budgets).max_size_ratio == 0.36


def test_budgets_for_any_profile_stay_valid_and_a_typo_is_refused():
    """A batch runs a recipe for targets it does not list (tiny-bert lists cpu-server, carries
    [budgets.arm-mobile] and is batched for both): each per-target run must accept that table."""
    from toolchain.config.recipe import load_recipe
    from toolchain.errors import ConfigError
    from toolchain.pipeline.run import RunOptions, resolve_targets

    recipe = load_recipe("models/tiny-bert.toml")
    assert recipe.targets == ["cpu-server"] and "arm-mobile" in recipe.budgets
    for target in ("cpu-server", "arm-mobile"):
        assert list(resolve_targets(recipe, RunOptions(out_dir=Path("unused"), targets=(target,)))) == [target]
    typo = recipe.model_copy(update={"budgets": {**recipe.budgets, "arm-mobil": recipe.budgets["arm-mobile"]}})
    with pytest.raises(ConfigError, match=r"\[budgets.arm-mobil\] names no target"):
        resolve_targets(typo, RunOptions(out_dir=Path("unused"), targets=("cpu-server",)))
