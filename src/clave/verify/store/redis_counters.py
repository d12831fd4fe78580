"""The counters port on Redis, shared by every task (counters.py has the port and the
windows it keeps). A module of its own so that a deployment on SQLite never loads redis-py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from clave.platform.errors import StoreError
from clave.platform.redis_scripts import ScriptConnection, ScriptError
from clave.verify.store.counters import DAYS_KEPT, Hit, Limit, slot_seconds, slots_back
from clave.verify.store.redis_connection import script


class RedisCounters:
    """Counters in Redis, shared by every task; one round trip per hit."""

    def __init__(self, url: str, *, prefix: str) -> None:
        self._url = url
        self._prefix = prefix + "rate:"
        self._redis: aioredis.Redis | None = None
        self._scripts: ScriptConnection | None = None

    async def open(self) -> None:
        """Connect (the scripts on a pipelined connection, platform/redis_scripts)."""
        if self._redis is not None:
            return
        self._redis = aioredis.Redis.from_url(self._url, socket_timeout=5, socket_connect_timeout=5)
        names = ("counters_hit", "counters_release", "counters_distinct")
        self._scripts = ScriptConnection(self._url, {name: script(name) for name in names})

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        if self._scripts is None:
            raise StoreError("the rate-limit store is not open")
        try:
            return await self._scripts.call(name, keys, args)
        except ScriptError as exc:
            raise StoreError(f"Redis: {exc}") from exc

    async def add_daily(self, key: str, day: int, amount: int = 1) -> None:
        """See CounterStore.add_daily; a pipeline, one round trip."""
        if self._redis is None:
            raise StoreError("the rate-limit store is not open")
        name = f"{self._prefix}day:{key}:{day}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(name, amount)
                pipe.expire(name, (DAYS_KEPT + 1) * 86400)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def daily(self, keys: Sequence[str], first: int, last: int) -> list[list[int]]:
        """See CounterStore.daily; one MGET for every key."""
        if self._redis is None:
            raise StoreError("the rate-limit store is not open")
        days = range(first, last + 1)
        names = [f"{self._prefix}day:{key}:{day}" for key in keys for day in days]
        try:
            values = await self._redis.mget(names)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        counts = [int(v) if v is not None else 0 for v in values]
        return [counts[i * len(days) : (i + 1) * len(days)] for i in range(len(keys))]

    async def add_distinct(
        self, key: str, member: str, *, limit: int, expires_at: float, now: float
    ) -> bool:
        """See CounterStore.add_distinct; one round trip."""
        added = await self._call(
            "counters_distinct", [self._prefix + "set:" + key], [member, limit, repr(expires_at)]
        )
        return bool(int(added))

    async def close(self) -> None:
        """Disconnect."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._scripts is not None:
            await self._scripts.close()
            self._scripts = None

    async def hit(self, hits: Sequence[Hit], now: float) -> tuple[Limit, float] | None:
        """See CounterStore.hit; one round trip for all the keys."""
        args: list[str | int | float] = [repr(now)]
        for h in hits:
            span = slots_back(h.limit) if h.limit.strict else 0
            args += [repr(slot_seconds(h.limit)), h.limit.count, h.cost, span]
        refused = await self._call("counters_hit", [self._prefix + h.key for h in hits], args)
        if not refused:
            return None
        return hits[int(refused[0]) - 1].limit, float(refused[1])

    async def release(self, hits: Sequence[Hit], at: float) -> None:
        """See CounterStore.release; one round trip."""
        args: list[str | int | float] = [repr(at)]
        for h in hits:
            args += [repr(slot_seconds(h.limit)), h.cost]
        await self._call("counters_release", [self._prefix + h.key for h in hits], args)
