"""The rate-limit counters behave the same on memory, SQLite and Redis."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clave.verify.store.counters import (
    CounterStore,
    Hit,
    Limit,
    MemoryCounters,
    SqliteCounters,
)
from clave.verify.store.redis_counters import RedisCounters
from tests.contract.conftest import drop_prefix

NOW = 1_800_000_000.0  # a window boundary for 60 s and 3600 s windows


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.e2e)])
async def counters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CounterStore]:
    prefix = f"t{secrets.token_hex(4)}:"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        store: CounterStore = RedisCounters(url, prefix=prefix)
    elif request.param == "sqlite":
        store = SqliteCounters(tmp_path / "limits.db")
    else:
        store = MemoryCounters()
    await store.open()
    yield store
    await store.close()
    if request.param == "redis":
        await drop_prefix(url, prefix)


LIMIT = Limit("test_limit", 3, 60, "things")


def hits(*keys: str, limit: Limit = LIMIT, cost: int = 1) -> list[Hit]:
    return [Hit(key, limit, cost) for key in keys]


async def test_allows_up_to_the_count_then_says_how_long_to_wait(counters: CounterStore) -> None:
    for _ in range(3):
        assert await counters.hit(hits("k"), NOW + 10) is None
    refused = await counters.hit(hits("k"), NOW + 10)
    assert refused is not None
    assert refused[0] is LIMIT
    assert 0 < refused[1] <= 60
    assert await counters.hit(hits("other"), NOW + 10) is None


async def test_a_gate_looks_without_counting(counters: CounterStore) -> None:
    for _ in range(10):
        assert await counters.hit(hits("k", cost=0), NOW) is None
    for _ in range(3):
        assert await counters.hit(hits("k"), NOW) is None
    assert await counters.hit(hits("k", cost=0), NOW) is not None
    # A gate refuses with the rest of its hit: nothing of the other key is counted.
    assert await counters.hit([*hits("fresh"), *hits("k", cost=0)], NOW) is not None
    for _ in range(3):
        assert await counters.hit(hits("fresh"), NOW) is None


async def test_the_window_slides(counters: CounterStore) -> None:
    for _ in range(3):
        await counters.hit(hits("k"), NOW + 50)
    # 10 s into the next window, 5/6 of the last one still counts: 2.5 + 1 > 3.
    assert await counters.hit(hits("k"), NOW + 70) is not None
    # 45 s in, only a quarter of it does: 0.75 + 1 <= 3.
    assert await counters.hit(hits("k"), NOW + 105) is None
    # Two windows later it is all forgotten.
    for _ in range(3):
        assert await counters.hit(hits("k"), NOW + 250) is None


async def test_a_strict_limit_never_exceeds_its_count_in_any_window(
    counters: CounterStore,
) -> None:
    # 3 a day, in 24 one-hour slots (NOW is a day boundary).
    strict = Limit("strict", 3, 86400, "guesses", strict=True)
    hour = 3600.0
    assert await counters.hit(hits("k", limit=strict), NOW + 2 * hour) is None
    for _ in range(2):  # spent at the very end of the day ...
        assert await counters.hit(hits("k", limit=strict), NOW + 24 * hour - 1) is None
    # ... the next day does not start afresh (the sliding estimate would allow 2 more here,
    # 5 in the same hour): every hit of the last 24 hours counts.
    refused = await counters.hit(hits("k", limit=strict), NOW + 24 * hour + 60)
    assert refused is not None
    # One more fits when the oldest hit's slot (02:00-03:00) has left: at 03:00 the next day.
    assert refused[1] == pytest.approx(27 * hour - (24 * hour + 60))
    assert await counters.hit(hits("k", limit=strict), NOW + 26 * hour + 59 * 60) is not None
    assert await counters.hit(hits("k", limit=strict), NOW + 27 * hour) is None
    # Full again: the two late hits leave with their slot, an hour after a day has passed.
    refused = await counters.hit(hits("k", limit=strict), NOW + 30 * hour)
    assert refused is not None
    assert refused[1] == pytest.approx(48 * hour - 30 * hour)
    # A release gives a hit back to the slot it was counted in.
    await counters.release(hits("k", limit=strict), NOW + 27 * hour)
    assert await counters.hit(hits("k", limit=strict), NOW + 30 * hour) is None


async def test_all_or_nothing(counters: CounterStore) -> None:
    small = Limit("small", 1, 60, "small things")
    both = [Hit("a", LIMIT), Hit("b", small)]
    assert await counters.hit(both, NOW) is None
    refused = await counters.hit(both, NOW)
    assert refused is not None
    assert refused[0] is small
    # "a" was not spent by the refused hit: two more fit (3 in all).
    assert await counters.hit(hits("a"), NOW) is None
    assert await counters.hit(hits("a"), NOW) is None
    assert await counters.hit(hits("a"), NOW) is not None


async def test_release_gives_back_what_was_counted_at_that_time(counters: CounterStore) -> None:
    for _ in range(3):
        assert await counters.hit(hits("k", "j"), NOW + 10) is None
    assert await counters.hit(hits("k"), NOW + 20) is not None
    await counters.release(hits("k"), NOW + 10)
    assert await counters.hit(hits("k"), NOW + 20) is None  # the released one fits again
    assert await counters.hit(hits("k"), NOW + 20) is not None
    assert await counters.hit(hits("j"), NOW + 20) is not None  # "j" was not released
    # Never below zero: releasing more than was counted gives nothing extra.
    for _ in range(5):
        await counters.release(hits("z"), NOW + 10)
    for _ in range(3):
        assert await counters.hit(hits("z"), NOW + 20) is None
    assert await counters.hit(hits("z"), NOW + 20) is not None


async def test_distinct_members_up_to_a_limit_until_expiry(counters: CounterStore) -> None:
    until = NOW + 100
    assert await counters.add_distinct("ip", "US", limit=2, expires_at=until, now=NOW)
    assert await counters.add_distinct("ip", "ES", limit=2, expires_at=until, now=NOW)
    assert await counters.add_distinct("ip", "US", limit=2, expires_at=until, now=NOW)  # known
    assert not await counters.add_distinct("ip", "FR", limit=2, expires_at=until, now=NOW)
    assert await counters.add_distinct("other", "FR", limit=2, expires_at=until, now=NOW)


async def test_daily_counts(counters: CounterStore) -> None:
    await counters.add_daily("sends:US", 100)
    await counters.add_daily("sends:US", 100, 2)
    await counters.add_daily("sends:US", 102)
    await counters.add_daily("sends:ES", 102)
    assert await counters.daily(["sends:US"], 99, 102) == [[0, 3, 0, 1]]
    assert await counters.daily(["sends:FR", "sends:ES", "sends:US"], 101, 102) == [
        [0, 0],
        [0, 1],
        [0, 1],
    ]
