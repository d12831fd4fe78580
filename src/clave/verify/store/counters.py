"""The counters port of rate limits and the fraud guard, on memory and SQLite (Redis:
redis_counters.py).

A sliding window is approximated from two fixed windows (the current count plus the previous
one weighted by how much of it still overlaps), which is accurate to a few percent, needs two
counters per key, and has no burst at window edges. That estimate can admit up to twice the
count within one window's length (all of one window's hits at its end, then the next window's as
the first fade), so a `strict` limit keeps the window in 24 slots and sums the last 25: no span
of `window` seconds ever holds more than `count` hits (the guess budget rests on that bound),
and a spent one frees up as its oldest slots leave, within a window and a slot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from clave.platform.sqlite import SqliteDatabase
from clave.verify.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` hits per `window` seconds; `code` names it in errors."""

    code: str
    count: int
    window: float
    what: str
    # Exact over any span of `window` seconds (slots), instead of the sliding estimate.
    strict: bool = False

    def refuse(self, retry_after: float) -> RateLimited:
        """The error for a refused hit."""
        return RateLimited(
            self.code, f"{self.what}: at most {self.count} per {self.window:g} s", retry_after
        )


@dataclass(frozen=True, slots=True)
class Hit:
    """One key to count against its limit. A `cost` of 0 only asks whether one more hit would
    still fit (a gate: a destination whose guess budget is spent gets no new code)."""

    key: str
    limit: Limit
    cost: int = 1


STRICT_SLOTS = 24


def slot_seconds(limit: Limit) -> float:
    """Seconds per counter: the window, or a 24th of it for a strict limit."""
    return limit.window / STRICT_SLOTS if limit.strict else limit.window


def slots_back(limit: Limit) -> int:
    """How many counters before the current one a hit reads."""
    return STRICT_SLOTS if limit.strict else 1


def _index(limit: Limit, now: float) -> int:
    """The counter `now` falls in."""
    return int(now // slot_seconds(limit))


def _estimate(counts: Mapping[int, int], limit: Limit, now: float) -> tuple[float, float]:
    """(count, seconds until one more hit would fit), from the counters by index: the sliding
    estimate over two windows, or a strict limit's exact sum of its last 25 slots."""
    slot, index = slot_seconds(limit), _index(limit, now)
    if limit.strict:
        oldest = index - STRICT_SLOTS
        values = [counts.get(i, 0) for i in range(oldest, index + 1)]
        total = sum(values)
        excess, freed = total + 1 - limit.count, 0
        for offset, value in enumerate(values):  # oldest first: when do enough hits leave?
            freed += value
            if excess > 0 and freed >= excess:
                return total, (oldest + offset + STRICT_SLOTS + 1) * slot - now
        return total, 0.0
    previous, current = counts.get(index - 1, 0), counts.get(index, 0)
    start = index * slot
    overlap = 1 - (now - start) / slot
    count = previous * overlap + current
    return count, (start + slot - now) if current else max(0.0, overlap * slot)


class CounterStore(Protocol):
    """Two fixed-window counters per key, read and bumped atomically."""

    async def open(self) -> None:
        """Connect."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def hit(self, hits: Sequence[Hit], now: float) -> tuple[Limit, float] | None:
        """All-or-nothing: None when one more hit fits under every key's limit (then each key
        counts its `cost`); else the first limit reached and the seconds to wait, counting
        nothing."""
        ...

    async def release(self, hits: Sequence[Hit], at: float) -> None:
        """Take back hits counted at time `at` (a reservation that was not used: a check that
        turned out right gives its failed-check hit back). Never below zero."""
        ...

    async def add_distinct(
        self, key: str, member: str, *, limit: int, expires_at: float, now: float
    ) -> bool:
        """Add `member` to the set at `key` (forgotten at `expires_at`) unless that would make
        more than `limit` distinct members; True when the member is in the set afterwards."""
        ...

    async def add_daily(self, key: str, day: int, amount: int = 1) -> None:
        """Add to the count of `key` on `day` (days since the epoch); kept ~15 days."""
        ...

    async def daily(self, keys: Sequence[str], first: int, last: int) -> list[list[int]]:
        """Per key, its counts for days `first`..`last`, oldest first (0 for none): one read."""
        ...


class MemoryCounters:
    """Counters in a dict (one process)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._sets: dict[str, tuple[float, set[str]]] = {}
        self._daily: dict[tuple[str, int], int] = {}

    async def add_daily(self, key: str, day: int, amount: int = 1) -> None:
        """See CounterStore.add_daily."""
        self._daily[(key, day)] = self._daily.get((key, day), 0) + amount
        for stale in [k for k in self._daily if k[0] == key and k[1] < day - DAYS_KEPT]:
            del self._daily[stale]

    async def daily(self, keys: Sequence[str], first: int, last: int) -> list[list[int]]:
        """See CounterStore.daily."""
        days = range(first, last + 1)
        return [[self._daily.get((key, day), 0) for day in days] for key in keys]

    async def add_distinct(
        self, key: str, member: str, *, limit: int, expires_at: float, now: float
    ) -> bool:
        """See CounterStore.add_distinct."""
        until, members = self._sets.get(key, (expires_at, set()))
        if until <= now:
            members = set()
        if member not in members:
            if len(members) >= limit:
                return False
            members.add(member)
        self._sets[key] = (expires_at, members)
        return True

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to close."""

    async def hit(self, hits: Sequence[Hit], now: float) -> tuple[Limit, float] | None:
        """See CounterStore.hit."""
        for h in hits:
            index = _index(h.limit, now)
            counts = {
                i: self._counts.get((h.key, i), 0)
                for i in range(index - slots_back(h.limit), index + 1)
            }
            count, wait = _estimate(counts, h.limit, now)
            if count + 1 > h.limit.count:
                return h.limit, wait or h.limit.window
        for h in hits:
            if h.cost:
                index = _index(h.limit, now)
                self._counts[(h.key, index)] = self._counts.get((h.key, index), 0) + h.cost
                oldest = index - slots_back(h.limit)
                for stale in [k for k in self._counts if k[0] == h.key and k[1] < oldest]:
                    del self._counts[stale]
        return None

    async def release(self, hits: Sequence[Hit], at: float) -> None:
        """See CounterStore.release."""
        for h in hits:
            slot = (h.key, _index(h.limit, at))
            if slot in self._counts:
                self._counts[slot] = max(0, self._counts[slot] - h.cost)


_COUNTER_SCHEMA = (
    "CREATE TABLE rate_counters (key TEXT NOT NULL, window INTEGER NOT NULL, "
    "count INTEGER NOT NULL, PRIMARY KEY (key, window)) WITHOUT ROWID",
    "CREATE TABLE distinct_members (key TEXT NOT NULL, member TEXT NOT NULL, "
    "expires_at REAL NOT NULL, PRIMARY KEY (key, member)) WITHOUT ROWID",
    "CREATE TABLE daily_counts (key TEXT NOT NULL, day INTEGER NOT NULL, "
    "count INTEGER NOT NULL, PRIMARY KEY (key, day)) WITHOUT ROWID",
)
DAYS_KEPT = 15


class SqliteCounters:
    """Counters in their own SQLite file, shared by the workers of one machine."""

    def __init__(self, path: Path | str) -> None:
        self._db = SqliteDatabase(path, _COUNTER_SCHEMA)
        # key -> the slot below which this process last pruned it: a key's old slots are
        # deleted once per new slot, not on every hit (two statements fewer per check).
        self._pruned: dict[str, int] = {}

    async def add_daily(self, key: str, day: int, amount: int = 1) -> None:
        """See CounterStore.add_daily."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO daily_counts (key, day, count) VALUES (?, ?, ?) "
                "ON CONFLICT (key, day) DO UPDATE SET count = count + excluded.count",
                (key, day, amount),
            )
            conn.execute(
                "DELETE FROM daily_counts WHERE key = ? AND day < ?", (key, day - DAYS_KEPT)
            )

        await self._db.write(run)

    async def daily(self, keys: Sequence[str], first: int, last: int) -> list[list[int]]:
        """See CounterStore.daily; one query for every key."""

        def run(conn: sqlite3.Connection) -> list[list[int]]:
            found: dict[tuple[str, int], int] = {}
            marks = ",".join("?" * len(keys))
            for key, day, count in conn.execute(
                f"SELECT key, day, count FROM daily_counts WHERE key IN ({marks}) "  # noqa: S608
                "AND day BETWEEN ? AND ?",
                (*keys, first, last),
            ):
                found[(key, day)] = count
            return [[found.get((k, d), 0) for d in range(first, last + 1)] for k in keys]

        return await self._db.read(run)

    async def add_distinct(
        self, key: str, member: str, *, limit: int, expires_at: float, now: float
    ) -> bool:
        """See CounterStore.add_distinct; one IMMEDIATE transaction."""

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "DELETE FROM distinct_members WHERE key = ? AND expires_at <= ?", (key, now)
            )
            if conn.execute(
                "SELECT 1 FROM distinct_members WHERE key = ? AND member = ?", (key, member)
            ).fetchone():
                return True
            count = conn.execute(
                "SELECT count(*) FROM distinct_members WHERE key = ?", (key,)
            ).fetchone()[0]
            if count >= limit:
                return False
            conn.execute(
                "INSERT INTO distinct_members (key, member, expires_at) VALUES (?, ?, ?)",
                (key, member, expires_at),
            )
            return True

        return await self._db.write(run)

    async def open(self) -> None:
        """Open and migrate."""
        await self._db.open()

    async def close(self) -> None:
        """Close."""
        await self._db.close()

    async def hit(self, hits: Sequence[Hit], now: float) -> tuple[Limit, float] | None:
        """See CounterStore.hit; one IMMEDIATE transaction for all the keys."""

        def run(conn: sqlite3.Connection) -> tuple[Limit, float] | None:
            for h in hits:
                index = _index(h.limit, now)
                rows: dict[int, int] = dict(
                    conn.execute(
                        "SELECT window, count FROM rate_counters "
                        "WHERE key = ? AND window BETWEEN ? AND ?",
                        (h.key, index - slots_back(h.limit), index),
                    ).fetchall()
                )
                count, wait = _estimate(rows, h.limit, now)
                if count + 1 > h.limit.count:
                    return h.limit, wait or h.limit.window
            for h in hits:
                if not h.cost:
                    continue
                index = _index(h.limit, now)
                conn.execute(
                    "INSERT INTO rate_counters (key, window, count) VALUES (?, ?, ?) "
                    "ON CONFLICT (key, window) DO UPDATE SET count = count + excluded.count",
                    (h.key, index, h.cost),
                )
                oldest = index - slots_back(h.limit)
                if self._pruned.get(h.key) != oldest:
                    conn.execute(
                        "DELETE FROM rate_counters WHERE key = ? AND window < ?", (h.key, oldest)
                    )
                    if len(self._pruned) > 100_000:
                        self._pruned.clear()
                    self._pruned[h.key] = oldest
            return None

        return await self._db.write(run)

    async def release(self, hits: Sequence[Hit], at: float) -> None:
        """See CounterStore.release; one transaction."""

        def run(conn: sqlite3.Connection) -> None:
            for h in hits:
                conn.execute(
                    "UPDATE rate_counters SET count = max(0, count - ?) "
                    "WHERE key = ? AND window = ?",
                    (h.cost, h.key, _index(h.limit, at)),
                )

        await self._db.write(run)
