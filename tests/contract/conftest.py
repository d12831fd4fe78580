"""Every verify store backend, for the one contract suite."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from clave.verify.store.base import VerifyBackend
from clave.verify.store.memory import MemoryVerificationStore
from clave.verify.store.redis import RedisVerificationStore
from clave.verify.store.sqlite import SqliteVerificationStore

BACKENDS: dict[str, Callable[[Path], VerifyBackend]] = {
    "memory": lambda _: MemoryVerificationStore(),
    "sqlite": lambda tmp: SqliteVerificationStore(tmp / "verify.db"),
}


async def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key a test's Redis store wrote."""
    client = aioredis.Redis.from_url(url)
    async for key in client.scan_iter(match=prefix + "*", count=500):
        await client.delete(key)
    await client.aclose()


@pytest.fixture(params=[*sorted(BACKENDS), pytest.param("redis", marks=pytest.mark.e2e)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VerifyBackend]:
    prefix = f"t{secrets.token_hex(4)}:"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        backend: VerifyBackend = RedisVerificationStore(url, prefix=prefix)
    else:
        backend = BACKENDS[request.param](tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
        if request.param == "redis":
            await drop_prefix(url, prefix)
