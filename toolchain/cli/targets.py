"""`edgeopt targets [list|show NAME]`: the target profiles, bundled and from --targets-dir."""

from __future__ import annotations

import json

import click

from toolchain.cli.options import emit_json, json_option, targets_dir_option


@click.group("targets", invoke_without_command=True)
@targets_dir_option
@click.pass_context
def targets(ctx, targets_dir):
    """List target profiles (bundled and from --targets-dir); `targets show NAME` prints one."""
    ctx.obj = {"targets_dir": targets_dir}
    if ctx.invoked_subcommand is None:
        _list(targets_dir, as_json=False)


def _dir(ctx, given):
    """--targets-dir is accepted before or after the subcommand; the later one wins."""
    return given if given is not None else (ctx.obj or {}).get("targets_dir")


def _list(targets_dir, as_json: bool) -> None:
    from toolchain.config.target import available_targets, load_target_file

    rows = {name: load_target_file(path) for name, path in available_targets(targets_dir).items()}
    if as_json:
        emit_json({name: {"platform": p.platform, "format": p.artifact.format, "description": p.description}
                   for name, p in rows.items()})
        return
    for name, profile in rows.items():
        click.echo(f"{name:<20} {profile.platform:<6} .{profile.artifact.format:<5} {profile.description}")


@targets.command("list")
@targets_dir_option
@json_option
@click.pass_context
def targets_list(ctx, targets_dir, as_json):
    """One line per profile: name, platform, artifact format, description."""
    _list(_dir(ctx, targets_dir), as_json)


@targets.command("show")
@click.argument("name")
@targets_dir_option
@json_option
@click.pass_context
def targets_show(ctx, name, targets_dir, as_json):
    """Print one profile with every value; each line says whether the file set it or the
    schema default applies."""
    from toolchain.config.target import available_targets, load_target, value_sources

    targets_dir = _dir(ctx, targets_dir)
    profile = load_target(name, targets_dir)
    sources = value_sources(profile)
    where = str(available_targets(targets_dir)[name])
    if as_json:
        emit_json({"profile": profile.model_dump(mode="json"), "sources": sources, "file": where})
        return
    click.echo(f"# {name}: {where}")
    flat = {}
    for key in sources:
        value = profile
        for part in key.split("."):
            value = getattr(value, part)
        flat[key] = value
    width = max(len(k) for k in flat)
    for key, value in flat.items():
        click.echo(f"{key:<{width}} = {json.dumps(value)!s:<24} # {sources[key]}")


COMMANDS = [targets]
