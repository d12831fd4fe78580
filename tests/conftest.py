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
