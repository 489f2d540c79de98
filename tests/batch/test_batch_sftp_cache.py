"""The shared stage cache on a real remote store: `sftp://` against an OpenSSH server on
127.0.0.1 (fsspec + paramiko, the extra .[fsspec]). Separate processes with separate local
copy folders stand for separate nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batch_fixtures import subprocess_env, tiny_recipe
from conftest import require_extra
from remote_cache import check_concurrent_writers, check_refused_before_work, check_second_batch_is_all_hits
from sshd_server import free_port, running_sshd

require_extra("fsspec", "fsspec")
require_extra("paramiko", "fsspec")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _url(s, path: Path, port: int | None = None) -> str:
    return f"sftp://{s['user']}@127.0.0.1:{port or s['port']}{path}"


def _env(s) -> dict[str, str]:
    """fsspec's own configuration channel: FSSPEC_SFTP holds the SFTPFileSystem options."""
    options = {"key_filename": str(s["dir"] / "client_key"), "look_for_keys": False, "allow_agent": False}
    return {**subprocess_env(), "FSSPEC_SFTP": json.dumps(options)}


def test_nodes_share_entries_over_sftp_and_concurrent_writers_agree(sshd, tmp_path):
    import fsspec

    remote = tmp_path / "remote-cache"
    check_concurrent_writers(_url(sshd, remote), fsspec.filesystem("file"), str(remote), _env(sshd), tmp_path)


def test_an_unwritable_or_unreachable_sftp_cache_is_exit_2_before_any_work(sshd, tmp_path):
    spec = tiny_recipe("tabular-mlp", tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for url, says in (
        (_url(sshd, blocker / "cache"), "is not writable"),
        (_url(sshd, tmp_path / "c", port=free_port()), "cannot be reached"),
    ):
        check_refused_before_work(spec, url, _env(sshd), says, tmp_path / f"out-{says[:6]}")


@pytest.mark.slow
def test_a_second_batch_on_another_out_gets_every_stage_from_the_sftp_cache(sshd, tmp_path, fast_targets_dir):
    spec = tiny_recipe("tabular-mlp", tmp_path)
    check_second_batch_is_all_hits(spec, _url(sshd, tmp_path / "remote-cache"), _env(sshd), tmp_path, fast_targets_dir)
