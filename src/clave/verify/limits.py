"""Rate limits: sliding-window counters behind one small port, on memory, SQLite and Redis.

A sliding window is approximated from two fixed windows (the current count plus the previous
one weighted by how much of it still overlaps), which is accurate to a few percent, needs two
counters per key, and has no burst at window edges.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from clave.platform.errors import ClaveError, StoreError
from clave.platform.sqlite import SqliteDatabase


class RateLimited(ClaveError):
    """A limit is reached; Retry-After says when to try again. Each limit has its own code."""

    status = 429

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.code = code
        self.retry_after = seconds


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` hits per `window` seconds; `code` names it in errors."""

    code: str
    count: int
    window: float
    what: str

    def refuse(self, retry_after: float) -> RateLimited:
        """The error for a refused hit."""
        return RateLimited(
            self.code, f"{self.what}: at most {self.count} per {self.window:g} s", retry_after
        )


def _estimate(previous: int, current: int, window: float, now: float) -> tuple[float, float]:
    """(sliding count, seconds until one more hit would fit) from two fixed windows."""
    start = (now // window) * window
    overlap = 1 - (now - start) / window
    count = previous * overlap + current
    return count, (start + window - now) if current else max(0.0, overlap * window)


class CounterStore(Protocol):
    """Two fixed-window counters per key, read and bumped atomically."""

    async def open(self) -> None:
        """Connect."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def hit(self, key: str, limit: Limit, now: float, *, consume: bool) -> float | None:
        """None if under the limit (counting the hit when `consume`), else seconds to wait."""
        ...


class MemoryCounters:
    """Counters in a dict (one process)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to close."""

    async def hit(self, key: str, limit: Limit, now: float, *, consume: bool) -> float | None:
        """See CounterStore.hit."""
        index = int(now // limit.window)
        previous = self._counts.get((key, index - 1), 0)
        current = self._counts.get((key, index), 0)
        count, wait = _estimate(previous, current, limit.window, now)
        if count + 1 > limit.count:
            return wait or limit.window
        if consume:
            self._counts[(key, index)] = current + 1
            for stale in [k for k in self._counts if k[1] < index - 1]:
                del self._counts[stale]
        return None


_COUNTER_SCHEMA = (
    "CREATE TABLE rate_counters (key TEXT NOT NULL, window INTEGER NOT NULL, "
    "count INTEGER NOT NULL, PRIMARY KEY (key, window)) WITHOUT ROWID",
)


class SqliteCounters:
    """Counters in their own SQLite file, shared by the workers of one machine."""

    def __init__(self, path: Path | str) -> None:
        self._db = SqliteDatabase(path, _COUNTER_SCHEMA)

    async def open(self) -> None:
        """Open and migrate."""
        await self._db.open()

    async def close(self) -> None:
        """Close."""
        await self._db.close()

    async def hit(self, key: str, limit: Limit, now: float, *, consume: bool) -> float | None:
        """See CounterStore.hit; one IMMEDIATE transaction."""
        index = int(now // limit.window)

        def run(conn: sqlite3.Connection) -> float | None:
            rows = dict(
                conn.execute(
                    "SELECT window, count FROM rate_counters WHERE key = ? AND window IN (?, ?)",
                    (key, index - 1, index),
                ).fetchall()
            )
            count, wait = _estimate(rows.get(index - 1, 0), rows.get(index, 0), limit.window, now)
            if count + 1 > limit.count:
                return wait or limit.window
            if consume:
                conn.execute(
                    "INSERT INTO rate_counters (key, window, count) VALUES (?, ?, 1) "
                    "ON CONFLICT (key, window) DO UPDATE SET count = count + 1",
                    (key, index),
                )
                conn.execute(
                    "DELETE FROM rate_counters WHERE key = ? AND window < ?", (key, index - 1)
                )
            return None

        return await self._db.write(run)


_REDIS_HIT = """
local window, now, max, consume = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local index = math.floor(now / window)
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (index - 1)) or '0')
local current = tonumber(redis.call('GET', KEYS[1] .. ':' .. index) or '0')
local start = index * window
local overlap = 1 - (now - start) / window
if previous * overlap + current + 1 > max then
  if current > 0 then return tostring(start + window - now) end
  return tostring(math.max(overlap * window, 1))
end
if consume == '1' then
  local key = KEYS[1] .. ':' .. index
  redis.call('INCR', key)
  redis.call('EXPIRE', key, math.ceil(window * 2) + 1)
end
return false
"""


class RedisCounters:
    """Counters in Redis, shared by every task; one round trip per hit."""

    def __init__(self, url: str, *, prefix: str) -> None:
        self._url = url
        self._prefix = prefix + "rate:"
        self._redis: aioredis.Redis | None = None
        self._script: object | None = None

    async def open(self) -> None:
        """Connect."""
        self._redis = aioredis.Redis.from_url(self._url, socket_timeout=5, socket_connect_timeout=5)
        self._script = self._redis.register_script(_REDIS_HIT)

    async def close(self) -> None:
        """Disconnect."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def hit(self, key: str, limit: Limit, now: float, *, consume: bool) -> float | None:
        """See CounterStore.hit."""
        if self._script is None:
            raise StoreError("the rate-limit store is not open")
        try:
            wait = await self._script(  # type: ignore[operator]
                keys=[self._prefix + key],
                args=[repr(limit.window), repr(now), limit.count, "1" if consume else "0"],
            )
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return None if wait is None else float(wait)


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits in force (0 turns one off)."""

    sends_per_ip: Limit
    sends_per_service: Limit
    sends_per_day: Limit
    failed_checks_per_ip: Limit


class RateLimiter:
    """Applies the limits for sends and checks."""

    def __init__(self, counters: CounterStore, limits: Limits) -> None:
        self._counters = counters
        self._limits = limits

    async def _hit(self, key: str, limit: Limit, now: float, *, consume: bool = True) -> None:
        if limit.count <= 0:
            return
        wait = await self._counters.hit(f"{limit.code}:{key}", limit, now, consume=consume)
        if wait is not None:
            raise limit.refuse(wait)

    async def send(self, *, service_id: str, client_ip: str | None, now: float) -> None:
        """Count a send against the client's IP, the service, and the global daily cap."""
        if client_ip:
            await self._hit(f"{service_id}:{client_ip}", self._limits.sends_per_ip, now)
        await self._hit(service_id, self._limits.sends_per_service, now)
        await self._hit("all", self._limits.sends_per_day, now)

    async def may_check(self, *, service_id: str, client_ip: str | None, now: float) -> None:
        """Refuse a check when the client's IP has used up its failed-check budget."""
        if client_ip:
            await self._hit(
                f"{service_id}:{client_ip}", self._limits.failed_checks_per_ip, now, consume=False
            )

    async def check_failed(self, *, service_id: str, client_ip: str | None, now: float) -> None:
        """A check failed: it consumes the IP's budget (right codes never do)."""
        if client_ip:
            # Already over: nothing more to count; the next check is refused by may_check.
            with contextlib.suppress(RateLimited):
                await self._hit(f"{service_id}:{client_ip}", self._limits.failed_checks_per_ip, now)
