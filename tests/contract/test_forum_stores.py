"""The contract every users, threads and posts store backend passes: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from clave.platform.sql import IntegrityViolation
from clave.platform.store_domain import open_database
from clave.posts.bootstrap import build_store as posts_store
from clave.posts.models import SEED as POSTS
from clave.threads.bootstrap import build_store as threads_store
from clave.threads.models import SEED as THREADS
from clave.users.bootstrap import build_store as users_store
from clave.users.models import SEED as USERS
from clave.users.models import Contact, NewUser, StartCount
from clave.users.store.base import SIGN_INS
from clave.users.store.sql import MIGRATIONS as USERS_MIGRATIONS
from clave.users.store.sql import SqlUserStore

NOW = 1_800_000_000.0
H1, H2, H3 = (bytes([n]) * 32 for n in (1, 2, 3))
T = TypeVar("T")


def known(found: T | None) -> T:
    """What a store found, asserted there (it answers None for an unknown id)."""
    assert found is not None
    return found


async def _database(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A database URL of the requested backend; PostgreSQL gets a schema of its own."""
    if request.param == "memory":
        yield "memory"
    elif request.param == "sqlite":
        yield "sqlite"
    else:
        base: str = request.getfixturevalue("postgres_url")
        schema = "t_" + secrets.token_hex(6)
        conn = await asyncpg.connect(base)
        await conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{base}?search_path={schema}"
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
            await conn.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.e2e)])
async def db_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A database URL of each backend."""
    async for url in _database(request):
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.e2e)])
async def sql_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A database URL of each SQL backend (schemas and migrations)."""
    async for url in _database(request):
        yield url


def opener(build: Callable[[str, Path], Any], url: str, tmp_path: Path) -> Callable[[], Any]:
    return lambda: build(url, tmp_path)


@pytest.fixture
async def users(db_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    store = users_store(db_url, tmp_path)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def threads(db_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    store = threads_store(db_url, tmp_path)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def posts(db_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    store = posts_store(db_url, tmp_path)
    await store.open()
    yield store
    await store.close()


async def test_users_create_get_list_update_delete(users: Any) -> None:
    ana = await users.create(
        NewUser("ana", "Ana", "hi", "ana@example.com", "+14155552671"), now=NOW
    )
    bob = await users.create(NewUser("bob", "Bob"), now=NOW)
    assert ana.id < bob.id
    assert (ana.username, ana.email, ana.phone, ana.email_verified) == (
        "ana",
        "ana@example.com",
        "+14155552671",
        False,
    )
    assert await users.get(ana.id) == ana
    assert await users.get(10_000) is None
    assert [u.id for u in await users.list(after=0, limit=10)] == [ana.id, bob.id]
    assert [u.id for u in await users.list(after=ana.id, limit=10)] == [bob.id]
    assert [u.id for u in await users.list(after=0, limit=1)] == [ana.id]
    changed = await users.update(
        ana.id,
        {"bio": "new", "phone_verified": True, "pending_contact": Contact.PHONE},
        now=NOW + 1,
    )
    assert (changed.bio, changed.phone_verified, changed.pending_contact, changed.updated_at) == (
        "new",
        True,
        Contact.PHONE,
        NOW + 1,
    )
    assert await users.update(10_000, {"bio": "x"}, now=NOW) is None
    with pytest.raises(ValueError, match="not updatable"):
        await users.update(ana.id, {"id": 5}, now=NOW)
    assert await users.delete(bob.id)
    assert not await users.delete(bob.id)
    assert await users.get(bob.id) is None


async def test_usernames_are_unique(users: Any) -> None:
    first = await users.create(NewUser("ana", "Ana"), now=NOW)
    with pytest.raises(IntegrityViolation):
        await users.create(NewUser("ana", "Other"), now=NOW)
    other = await users.create(NewUser("bob", "Bob"), now=NOW)
    with pytest.raises(IntegrityViolation):
        await users.update(other.id, {"username": "ana"}, now=NOW)
    assert (await users.get(first.id)).name == "Ana"


async def test_users_seed_once_then_ids_continue(users: Any) -> None:
    assert await users.seed(USERS, now=NOW)
    assert not await users.seed(USERS, now=NOW)
    listed = await users.list(after=0, limit=10)
    assert [(u.id, u.username) for u in listed] == [
        (1, "marceline"),
        (2, "finn"),
        (3, "pb"),
        (4, "jake"),
    ]
    await users.delete(4)
    assert not await users.seed(USERS, now=NOW)  # a deleted sample user is not brought back
    fresh = await users.create(NewUser("bmo", "BMO"), now=NOW)
    assert fresh.id == 5


async def test_threads(threads: Any) -> None:
    assert await threads.seed(THREADS, now=NOW)
    assert [(t.id, t.title, t.created_by) for t in await threads.list(after=0, limit=10)] == list(
        THREADS
    )
    made = await threads.create(title="New", created_by=2, now=NOW)
    assert made.id == 4
    assert (await threads.update(made.id, title="Renamed", now=NOW + 1)).title == "Renamed"
    assert await threads.update(99, title="x", now=NOW) is None
    assert await threads.delete(made.id)
    assert await threads.get(made.id) is None
    assert [t.id for t in await threads.list(after=1, limit=1)] == [2]


async def test_posts_filters_and_pages(posts: Any) -> None:
    assert await posts.seed(POSTS, now=NOW)
    assert [p.id for p in await posts.list(after=0, limit=100)] == [1, 2, 3, 4, 5, 6]
    assert [p.id for p in await posts.list(after=0, limit=100, thread=2)] == [3, 4, 5]
    assert [p.id for p in await posts.list(after=3, limit=1, thread=2)] == [4]
    assert [p.id for p in await posts.list(after=0, limit=100, user=1)] == [5, 6]
    assert await posts.list(after=0, limit=100, thread=99) == []
    made = await posts.create(thread=3, text="more", user=2, now=NOW)
    assert (made.id, made.thread, made.user) == (7, 3, 2)
    assert (await posts.update(7, text="edited", now=NOW)).text == "edited"
    assert await posts.delete(7)
    assert await posts.get(7) is None


async def test_concurrent_creates_get_distinct_ids(users: Any) -> None:
    made = await asyncio.gather(*(users.create(NewUser(f"u{i}", "U"), now=NOW) for i in range(20)))
    assert len({u.id for u in made}) == 20


def test_unknown_database_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        open_database("mysql://x", data_dir=tmp_path, component="users", migrations={})


async def test_ids_are_never_reused_after_a_delete(threads: Any) -> None:
    first = await threads.create(title="a", created_by=1, now=NOW)
    second = await threads.create(title="b", created_by=1, now=NOW)
    await threads.delete(second.id)
    third = await threads.create(title="c", created_by=1, now=NOW)
    assert third.id > second.id > first.id


async def test_a_user_is_found_by_its_token_hash_only(users: Any) -> None:
    assert await users.seed(USERS, now=NOW)  # the sample users have no token
    ana = await users.create(NewUser("ana", "Ana"), now=NOW, token_hash=H1)
    bob = await users.create(NewUser("bob", "Bob"), now=NOW)  # none either
    assert await users.by_token(H1) == ana
    assert await users.by_token(H2) is None
    assert await users.by_token(b"") is None
    # A hash belongs to one user.
    with pytest.raises(IntegrityViolation):
        await users.create(NewUser("eve", "Eve"), now=NOW, token_hash=H1)
    with pytest.raises(IntegrityViolation):
        await users.set_token(bob.id, H1)
    assert await users.by_token(H1) == ana
    # Other changes leave the token alone.
    changed = await users.update(ana.id, {"bio": "new"}, now=NOW + 1)
    assert await users.by_token(H1) == changed


async def test_token_rotation_is_a_compare_and_set(users: Any) -> None:
    ana = await users.create(NewUser("ana", "Ana"), now=NOW, token_hash=H1)
    assert await users.set_token(ana.id, H2, current=H1)
    assert await users.by_token(H1) is None  # the old one stops at once
    assert (await users.by_token(H2)).id == ana.id
    # A second rotation with the same old token loses.
    assert not await users.set_token(ana.id, H3, current=H1)
    assert (await users.by_token(H2)).id == ana.id
    assert await users.by_token(H3) is None
    # The operator's issue replaces whatever there was.
    assert await users.set_token(ana.id, H3)
    assert await users.by_token(H2) is None
    assert not await users.set_token(10_000, H1)
    assert not await users.set_token(10_000, H1, current=H3)
    # Deleting the user deletes its token; the hash is free again.
    assert await users.delete(ana.id)
    assert await users.by_token(H3) is None
    bob = await users.create(NewUser("bob", "Bob"), now=NOW, token_hash=H3)
    assert (await users.by_token(H3)).id == bob.id


async def test_starts_are_counted_in_a_window_from_the_first(users: Any) -> None:
    ana = await users.create(NewUser("ana", "Ana"), now=NOW)
    bob = await users.create(NewUser("bob", "Bob"), now=NOW)

    async def count(user: int, at: float) -> StartCount | None:
        result: StartCount | None = await users.count_start(user, now=at, limit=3, window=100)
        return result

    assert await count(ana.id, NOW) == StartCount(True, NOW)
    assert await count(ana.id, NOW + 10) == StartCount(True, NOW)
    assert await count(ana.id, NOW + 20) == StartCount(True, NOW)
    assert await count(ana.id, NOW + 30) == StartCount(False, NOW)
    assert await count(ana.id, NOW + 99.5) == StartCount(False, NOW)
    assert await count(bob.id, NOW + 30) == StartCount(True, NOW + 30)  # its own
    # The window is over: a new one begins at the next start.
    assert await count(ana.id, NOW + 100) == StartCount(True, NOW + 100)
    # A start given back to an old window changes nothing; to the current one, frees one.
    await users.uncount_start(ana.id, since=NOW)
    assert [await count(ana.id, NOW + 101 + i) for i in range(3)] == [
        StartCount(True, NOW + 100),
        StartCount(True, NOW + 100),
        StartCount(False, NOW + 100),
    ]
    await users.uncount_start(ana.id, since=NOW + 100)
    assert await count(ana.id, NOW + 110) == StartCount(True, NOW + 100)
    assert await count(ana.id, NOW + 111) == StartCount(False, NOW + 100)
    # Never below zero: giving back more than was counted buys nothing.
    carl = await users.create(NewUser("carl", "Carl"), now=NOW)
    assert await count(carl.id, NOW) == StartCount(True, NOW)
    for _ in range(5):
        await users.uncount_start(carl.id, since=NOW)
    assert [known(await count(carl.id, NOW + 1)).counted for _ in range(4)] == [True] * 3 + [False]
    # Unknown users, and the count goes with a deleted user.
    assert await count(10_000, NOW) is None
    await users.uncount_start(10_000, since=NOW)
    assert await users.delete(ana.id)
    assert await count(ana.id, NOW + 120) is None
    # Contacts and verification state do not touch the count.
    await users.update(bob.id, {"phone": "+14155552671", "phone_verified": False}, now=NOW + 31)
    assert await count(bob.id, NOW + 32) == StartCount(True, NOW + 30)


async def test_concurrent_starts_count_exactly_across_connections(
    db_url: str, tmp_path: Path
) -> None:
    """Several stores on one database stand for several worker processes."""
    first = users_store(db_url, tmp_path)
    await first.open()
    others = [] if db_url == "memory" else [users_store(db_url, tmp_path) for _ in range(3)]
    for store in others:
        await store.open()
    stores = [first, *others]
    try:
        ana = await first.create(NewUser("ana", "Ana"), now=NOW)
        results = await asyncio.gather(
            *(
                stores[i % len(stores)].count_start(ana.id, now=NOW + i, limit=7, window=86400)
                for i in range(40)
            )
        )
        assert sum(known(r).counted for r in results) == 7
        assert {known(r).since for r in results} == {min(known(r).since for r in results)}
    finally:
        for store in stores:
            await store.close()


async def test_the_token_and_count_migration_keeps_existing_users(
    sql_url: str, tmp_path: Path
) -> None:
    db_url = sql_url
    version_1 = {dialect: scripts[:1] for dialect, scripts in USERS_MIGRATIONS.items()}
    old = SqlUserStore(
        open_database(db_url, data_dir=tmp_path, component="users", migrations=version_1)
    )
    await old.open()
    assert await old.seed(USERS, now=NOW)
    await old.close()

    store = users_store(db_url, tmp_path)
    await store.open()
    try:
        assert [u.username for u in await store.list(after=0, limit=10)] == [
            "marceline",
            "finn",
            "pb",
            "jake",
        ]
        assert await store.count_start(1, now=NOW, limit=1, window=10) == StartCount(True, NOW)
        assert await store.count_start(1, now=NOW, limit=1, window=10) == StartCount(False, NOW)
        assert await store.set_token(1, H1)
        assert known(await store.by_token(H1)).username == "marceline"
        assert await store.set_token(2, H2)  # many users may have had no token
        made = await store.create(NewUser("bmo", "BMO"), now=NOW)
        assert made.id == 5
    finally:
        await store.close()


async def test_sign_in_starts_have_their_own_count(users: Any) -> None:
    ana = await users.create(NewUser("ana", "Ana"), now=NOW)
    for _ in range(2):
        assert (await users.count_start(ana.id, now=NOW, limit=2, window=100)).counted
    assert not (await users.count_start(ana.id, now=NOW, limit=2, window=100)).counted
    sign_in = await users.count_start(ana.id, now=NOW + 1, limit=2, window=100, counter=SIGN_INS)
    assert (sign_in.counted, sign_in.since) == (True, NOW + 1)
    await users.uncount_start(ana.id, since=NOW + 1, counter=SIGN_INS)
    for _ in range(2):
        counted = await users.count_start(
            ana.id, now=NOW + 2, limit=2, window=100, counter=SIGN_INS
        )
        assert counted.counted
    assert not (
        await users.count_start(ana.id, now=NOW + 2, limit=2, window=100, counter=SIGN_INS)
    ).counted
    # Where a code went is kept with the pending verification.
    updated = await users.update(
        ana.id,
        {"pending_verification": "VE1", "pending_contact": "phone", "pending_to": "+14155552671"},
        now=NOW + 3,
    )
    assert updated.pending_to == "+14155552671"
    assert (await users.get(ana.id)).pending_to == "+14155552671"
