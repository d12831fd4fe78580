"""Every backend raises an event with each final status, in the same transaction, and hands it
out with leases and retries."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from clave.verify.models import SendStatus, Status, Tenant
from clave.verify.store.base import VerifyBackend
from clave.verify.store.memory import MemoryVerificationStore
from clave.verify.store.redis import RedisVerificationStore
from clave.verify.store.sqlite import SqliteVerificationStore
from tests.contract.conftest import drop_prefix
from tests.contract.test_verification_store import NOW, candidate, service, start


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.e2e)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VerifyBackend]:
    prefix = f"t{secrets.token_hex(4)}:"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        backend: VerifyBackend = RedisVerificationStore(url, prefix=prefix, events=True)
    elif request.param == "sqlite":
        backend = SqliteVerificationStore(tmp_path / "verify.db", events=True)
    else:
        backend = MemoryVerificationStore(events=True)
    await backend.open()
    yield backend
    await backend.close()
    if request.param == "redis":
        await drop_prefix(url, prefix)


@pytest.fixture
async def svc(store: VerifyBackend) -> Tenant:
    s = service()
    await store.put_tenant(s)
    return s


async def claim(store: VerifyBackend, now: float = NOW) -> list[tuple[str, str, int]]:
    events = await store.claim_events(now, lease_until=now + 30, limit=50)
    return [(e.type, e.verification_id, e.tries) for e in events]


async def test_each_final_status_raises_one_event(store: VerifyBackend, svc: Tenant) -> None:
    approved, canceled, locked = (candidate(svc, f"+1415555271{i}") for i in range(3))
    for c in (approved, canceled, locked):
        await start(store, c)
    await store.transition(
        approved.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=NOW
    )
    await store.transition(
        approved.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=NOW
    )
    await store.transition(
        canceled.id, from_status=Status.PENDING, to_status=Status.CANCELED, now=NOW
    )
    await store.transition(
        locked.id, from_status=Status.PENDING, to_status=Status.MAX_ATTEMPTS_REACHED, now=NOW
    )
    assert sorted(await claim(store)) == sorted(
        [
            ("verification.approved", approved.id, 1),
            ("verification.canceled", canceled.id, 1),
            ("verification.max_attempts_reached", locked.id, 1),
        ]
    )


async def test_a_rebinding_send_raises_the_old_verifications_canceled_event(
    store: VerifyBackend, svc: Tenant
) -> None:
    old, new = candidate(svc), candidate(svc)
    await start(store, replace(old, binding=b"A" * 32))
    await start(store, replace(new, binding=b"B" * 32), now=NOW + 1)
    assert await claim(store, NOW + 1) == [("verification.canceled", old.id, 1)]


async def test_failed_and_swept_expiry(store: VerifyBackend, svc: Tenant) -> None:
    failing, stale = candidate(svc, "+14155552720"), candidate(svc, "+14155552721", ttl=60)
    await start(store, failing)
    await start(store, stale)
    deliveries = await store.claim_deliveries(NOW, lease_until=NOW + 30, limit=10)
    [d] = [x for x in deliveries if x.verification.id == failing.id]
    await store.finish_delivery(d, status=SendStatus.FAILED, provider=None, error="x", now=NOW)
    assert await store.expire_due(NOW + 59, limit=10) == 0
    assert await store.expire_due(NOW + 61, limit=10) == 1
    assert await store.expire_due(NOW + 62, limit=10) == 0
    expired = await store.get(svc.id, stale.id)
    assert expired is not None
    assert expired.status is Status.EXPIRED
    assert sorted(t for t, _, _ in await claim(store, NOW + 62)) == [
        "verification.expired",
        "verification.failed",
    ]


async def test_leases_retries_and_finishing(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc)
    await start(store, c)
    await store.transition(c.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=NOW)
    [event] = await store.claim_events(NOW, lease_until=NOW + 30, limit=10)
    assert (event.type, event.tenant_id, event.tries) == ("verification.approved", svc.id, 1)
    assert await store.claim_events(NOW + 10, lease_until=NOW + 40, limit=10) == []  # leased
    await store.retry_event(event, next_attempt_at=NOW + 100)
    assert await store.claim_events(NOW + 99, lease_until=NOW + 130, limit=10) == []
    [again] = await store.claim_events(NOW + 100, lease_until=NOW + 130, limit=10)
    assert (again.id, again.tries) == (event.id, 2)
    await store.finish_event(again)
    assert await store.claim_events(NOW + 1000, lease_until=NOW + 1030, limit=10) == []


async def test_no_events_unless_asked(tmp_path: Path) -> None:
    quiet = SqliteVerificationStore(tmp_path / "verify.db")
    await quiet.open()
    try:
        s = service()
        await quiet.put_tenant(s)
        c = candidate(s)
        await start(quiet, c)
        await quiet.transition(c.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=NOW)
        assert await quiet.claim_events(NOW, lease_until=NOW + 30, limit=10) == []
    finally:
        await quiet.close()
