"""The shared stage cache in an S3 bucket: `s3://` through s3fs (the extra .[s3]) against an S3
server on 127.0.0.1 (tests/s3_server.py). The completion marker is created with S3's conditional
write (If-None-Match: *), so of two nodes publishing one key, exactly one marker wins."""

from __future__ import annotations

import uuid

import pytest
from batch_fixtures import subprocess_env, tiny_recipe
from conftest import require_extra
from remote_cache import check_concurrent_writers, check_refused_before_work, check_second_batch_is_all_hits
from s3_server import running_s3, s3_env
from sshd_server import free_port

require_extra("s3fs", "s3")
require_extra("moto.server", "dev")

BUCKET = "edgeopt-cache"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    import s3fs

    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        fs = s3fs.S3FileSystem(key="edgeopt-test", secret="edgeopt-test", endpoint_url=server["endpoint"])
        fs.mkdir(BUCKET)
        yield {**server, "fs": fs, "env": {**subprocess_env(), **server["env"]}}


def _root() -> str:
    return f"{BUCKET}/{uuid.uuid4().hex[:8]}/cache"


def test_nodes_share_entries_over_s3_and_concurrent_writers_agree(s3, tmp_path):
    root = _root()
    check_concurrent_writers(f"s3://{root}", s3["fs"], root, s3["env"], tmp_path)


def test_a_missing_bucket_or_an_endpoint_nobody_serves_is_exit_2_before_any_work(s3, tmp_path):
    spec = tiny_recipe("tabular-mlp", tmp_path)
    nobody = {**s3["env"], **s3_env(f"http://127.0.0.1:{free_port()}", tmp_path)}
    for url, env in (("s3://no-such-bucket/cache", s3["env"]), (f"s3://{_root()}", nobody)):
        check_refused_before_work(spec, url, env, "is not writable", tmp_path / f"out-{len(env)}-{url[5:9]}")


@pytest.mark.slow
def test_a_second_batch_on_another_out_gets_every_stage_from_the_s3_cache(s3, tmp_path, fast_targets_dir):
    spec = tiny_recipe("tabular-mlp", tmp_path)
    check_second_batch_is_all_hits(spec, f"s3://{_root()}", s3["env"], tmp_path, fast_targets_dir)
