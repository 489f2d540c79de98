"""The user documentation stays true: generated key tables match the schema, every relative link
(and #anchor) resolves, every CLI command has a row in the README's command table, the TOML
examples in the guides validate, and benchmarks/README.md indexes every committed result."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import click
import pytest

from toolchain.config import reference
from toolchain.config.base import validate
from toolchain.config.recipe import Recipe
from toolchain.config.target import TargetProfile

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```[^\n]*\n.*?^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """Text without code blocks and code spans: a `[x](y)` inside code is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _slugs(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return out


def test_generated_key_tables_are_current():
    assert reference.stale() == [], "run: python -m toolchain.config.reference --write"


def test_stale_table_is_detected_and_rewritten(tmp_path):
    for name in ("recipes.md", "targets.md"):
        shutil.copy(ROOT / "docs" / name, tmp_path / name)
    doc = tmp_path / "recipes.md"
    doc.write_text(doc.read_text(encoding="utf-8").replace("| `opset` |", "| `opset_renamed` |"), encoding="utf-8")
    assert reference.stale(tmp_path) == [str(doc)]
    assert reference.main(["--check", "--docs-dir", str(tmp_path)]) == 1
    assert reference.write(tmp_path) == [str(doc)]
    assert reference.main(["--check", "--docs-dir", str(tmp_path)]) == 0
    assert reference.stale(tmp_path) == []
    assert doc.read_text(encoding="utf-8") == (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8")


def test_every_schema_key_is_in_the_tables():
    recipe = (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8")
    target = (ROOT / "docs" / "targets.md").read_text(encoding="utf-8")
    for model, text in ((Recipe, recipe), (TargetProfile, target)):
        rows = sum(len(r) for _, _, r in reference.sections(model))
        assert rows >= 40, f"{model.__name__}: only {rows} keys rendered"
        for table, _, section_rows in reference.sections(model):
            for key, *_ in section_rows:
                assert f"| {key} |" in text, f"{table}.{key} missing from the generated table"


def test_a_field_without_description_fails_the_render():
    from pydantic import BaseModel

    class Undocumented(BaseModel):
        knob: int = 3

    with pytest.raises(reference.MissingDescription, match="Undocumented.knob"):
        reference.render(Undocumented)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(_prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _slugs(dest):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every command a user can run: leaves, and groups that do something on their own."""
    found = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        if isinstance(cmd, click.Group):
            if cmd.invoke_without_command:
                found.append(" ".join(path))
            found += _commands(cmd, path)
        else:
            found.append(" ".join(path))
    return sorted(found)


def _readme_table_commands() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for line in section.splitlines():
        if m := re.match(r"\|\s*`edgeopt ([^`]*)`", line):
            words = []
            for word in m.group(1).split():
                if not re.fullmatch(r"[a-z][a-z0-9-]*", word):  # arguments and options start here
                    break
                words.append(word)
            listed.add(" ".join(words))
    return listed


def test_every_cli_command_has_a_readme_row():
    from toolchain.cli import cli

    commands = _commands(cli)
    assert {"run", "compress", "gate", "baseline save", "verify", "targets show"} <= set(commands)
    listed = _readme_table_commands()
    assert [c for c in commands if c not in listed] == [], "add a row to README.md's command table"
    assert sorted(listed - set(commands)) == [], "README.md lists commands that do not exist"


def test_layout_names_every_subpackage():
    layout = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    packages = sorted(p.parent.name for p in (ROOT / "toolchain").glob("*/__init__.py"))
    assert len(packages) >= 10
    assert [p for p in packages if f"`{p}/`" not in layout] == [], "describe the new package in README.md's Layout"


def test_exit_codes_section_exists():
    # toolchain/errors.py sends readers to README "Exit codes"
    assert "exit-codes" in _slugs(ROOT / "README.md")
    assert "README.md" in (ROOT / "toolchain" / "errors.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["README.md", "docs/recipes.md"])
def test_toml_examples_validate(name):
    blocks = re.findall(r"^```toml\n(.*?)^```", (ROOT / name).read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)
    assert blocks
    for block in blocks:
        data = tomllib.loads(block)
        validate(TargetProfile if "platform" in data else Recipe, data, f"{name} example")


def test_benchmarks_index_lists_every_result():
    index = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    results = sorted(p.name for p in (ROOT / "benchmarks" / "results").glob("*.md"))
    assert results
    assert [r for r in results if f"](results/{r})" not in index] == []
    scripts = re.findall(r"`python (benchmarks/\w+\.py)`", index)
    assert len(scripts) == len(results) and all((ROOT / s).is_file() for s in scripts)
