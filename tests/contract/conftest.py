"""Every verify store backend, for the one contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from clave.verify.store.base import VerificationStore
from clave.verify.store.memory import MemoryVerificationStore
from clave.verify.store.sqlite import SqliteVerificationStore

BACKENDS: dict[str, Callable[[Path], VerificationStore]] = {
    "memory": lambda _: MemoryVerificationStore(),
    "sqlite": lambda tmp: SqliteVerificationStore(tmp / "verify.db"),
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VerificationStore]:
    backend = BACKENDS[request.param](tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
