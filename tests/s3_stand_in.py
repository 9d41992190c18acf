"""A local S3 stand-in for the object-store tests: moto's threaded server on loopback.

S3 itself is out of reach from where the tests run; moto answers S3's API on a free port,
and AWS_ENDPOINT_URL with dummy credentials points s3fs at it, here and in subprocesses.
The ``s3`` fixture (tests/conftest.py) starts one per test module.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

BUCKET = "qhopper-results"


@dataclass(frozen=True)
class S3:
    endpoint: str
    env: dict[str, str]  # for subprocesses: the endpoint and dummy credentials

    def url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}/results"


@contextmanager
def s3_stand_in() -> Iterator[S3]:
    """moto's server on a free loopback port, with a bucket, for as long as it is held."""
    import s3fs
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    variables = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in variables.items():
                patch.setenv(name, value)
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "QHOPPER_RESULTS_URL"):
                patch.delenv(name, raising=False)
            import fsspec

            # fsspec caches filesystems by their arguments, not the endpoint they read from the
            # environment: a stand-in of an earlier module must not answer for this one.
            s3fs.S3FileSystem.clear_instance_cache()
            # moto keeps its buckets per process: a second stand-in finds the bucket there.
            fsspec.filesystem("s3", use_listings_cache=False).makedirs(BUCKET, exist_ok=True)
            yield S3(endpoint, {**os.environ, **variables})
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
