"""Shared pytest fixtures and options for the tensorhouse test suite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# -- command-line options ------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


# -- S3 (moto_server) ------------------------------------------------------------

_MOTO_START_TIMEOUT_S = 30.0
_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    # The region must come from the environment: passing region_name to s3fs
    # makes moto reject bucket creation.
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_serving(proc: subprocess.Popen[bytes], endpoint: str, log: Path) -> None:
    deadline = time.monotonic() + _MOTO_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(endpoint, timeout=1):
                return
        except urllib.error.HTTPError:  # any HTTP answer means it is serving
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"moto_server did not answer at {endpoint} within {_MOTO_START_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a real S3-compatible HTTP server (moto), for this session."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        pytest.skip(f"moto_server not found at {exe}: pip install 'moto[server]'")
    saved = {name: os.environ.get(name) for name in _S3_ENV}
    os.environ.update(_S3_ENV)
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # A file, not a pipe: the server logs every request and would block on a full pipe.
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(proc, endpoint, log)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def s3_client(moto_server: str) -> Any:
    """A boto3 S3 client on the moto server (made once: creating one takes ~0.1 s)."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_server)


@pytest.fixture
def s3_uri(moto_server: str, s3_client: Any) -> tuple[str, dict[str, Any]]:
    """A dataset URI in a fresh, empty bucket, and the storage options to reach it."""
    bucket = f"th-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=bucket)
    options: dict[str, Any] = {"endpoint_url": moto_server, "key": "testing", "secret": "testing"}
    return f"s3://{bucket}/ds", options


@pytest.fixture(autouse=True)
def _cold_log_cache() -> Iterator[None]:
    """Every test opens datasets with an empty process-wide log cache, so storage counts are per test."""
    from tensorhouse.format.log import cache

    cache.clear()
    yield
