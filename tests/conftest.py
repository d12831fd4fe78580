"""Fixtures for every suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import FakeClock, SmtpServer, smtp_server

# The fixtures below that find or start a real server; a test that uses one is `e2e`.
SERVER_FIXTURES = frozenset(
    {"postgres_url", "redis_url", "haproxy_bin", "moto_url", "chromium_bin"}
)
_HERE = Path(__file__).parent
_SERVERS_SELECTED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what needs more than this process: all of tests/deploy `deploy`; all of tests/e2e,
    and every test using a server fixture, `e2e`. A parametrization that asks for a server by
    name (`request.getfixturevalue`) carries the mark itself (`pytest.param(..., marks=...)`)."""
    for item in items:
        if _HERE / "deploy" in item.path.parents:
            item.add_marker(pytest.mark.deploy)
        uses = set(item.fixturenames) if isinstance(item, pytest.Function) else set()
        if _HERE / "e2e" in item.path.parents or uses & SERVER_FIXTURES:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember whether this run selected any test allowed a real server."""
    session.config.stash[_SERVERS_SELECTED] = any(
        item.get_closest_marker("e2e") or item.get_closest_marker("deploy")
        for item in session.items
    )


def _servers_allowed(request: pytest.FixtureRequest) -> None:
    """Fail, rather than start a server, in a run that selected no e2e test (the fast path):
    the test that asked is missing its mark."""
    if not request.config.stash.get(_SERVERS_SELECTED, True):
        pytest.fail(
            f"{request.fixturename} starts a real server, in a run of no e2e test: mark the "
            "test (or its parametrization) e2e",
            pytrace=False,
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from smtp_server()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL server that answers (found or started); the suite fails without one."""
    _servers_allowed(request)
    from tests.services import postgres

    url, private = postgres()
    yield url
    if private is not None:
        private.stop()


@pytest.fixture(scope="session")
def chromium_bin(request: pytest.FixtureRequest) -> str:
    """A headless browser (Debian's chromium, found or installed); the suite fails without."""
    _servers_allowed(request)
    from tests.services import chromium

    return chromium()


@pytest.fixture(scope="session")
def haproxy_bin(request: pytest.FixtureRequest) -> str:
    """The haproxy binary (found or installed); the suite fails without one."""
    _servers_allowed(request)
    from tests.services import haproxy

    return haproxy()


@pytest.fixture(scope="session")
def prometheus_bins(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(prometheus, promtool), found or installed; the suite fails without them."""
    _servers_allowed(request)
    from tests.services import prometheus

    return prometheus()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis server that answers (found or started); the suite fails without one."""
    _servers_allowed(request)
    from tests.services import redis_server

    url, private = redis_server()
    yield url
    if private is not None:
        private.stop()


@pytest.fixture(scope="session")
def moto_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real moto_server on loopback standing in for AWS (SNS, SES)."""
    _servers_allowed(request)
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
