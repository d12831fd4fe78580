"""Fixtures for every suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import FakeClock, SmtpServer, smtp_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from smtp_server()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server that answers (found or started); the suite fails without one."""
    from tests.services import postgres

    url, private = postgres()
    yield url
    if private is not None:
        private.stop()


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    """The haproxy binary (found or installed); the suite fails without one."""
    from tests.services import haproxy

    return haproxy()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server that answers (found or started); the suite fails without one."""
    from tests.services import redis_server

    url, private = redis_server()
    yield url
    if private is not None:
        private.stop()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real moto_server on loopback standing in for AWS (SNS, SES)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tests.services import wait_until
    from tests.support import free_port

    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if binary is None:
        pytest.fail(
            "moto_server not found: install the test extras (pip install -e '.[test]')",
            pytrace=False,
        )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(url + "/moto-api/data.json", timeout=1):
                return True
        except OSError:
            return False

    wait_until(answers, timeout=30)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
