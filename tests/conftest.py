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
