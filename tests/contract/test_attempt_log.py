"""The AttemptLog port on every backend: the same sends found by every filter, newest first,
paged, and summed (verify/attempts.py)."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest

from clave.platform.contacts import region_of
from clave.verify.attempts import AttemptQuery
from clave.verify.errors import QueryTooBroad
from clave.verify.models import Channel, Status, Tenant, new_id
from clave.verify.store import redis_attempts
from clave.verify.store.base import VerifyBackend
from clave.verify.store.redis import RedisVerificationStore
from tests.contract.conftest import drop_prefix
from tests.contract.test_verification_store import NOW, candidate, service

US, ES = "+14155552671", "+34612345678"


async def _send(
    store: VerifyBackend, svc: Tenant, to: str, at: float, channel: Channel = Channel.SMS
) -> tuple[str, str]:
    """(verification id, send sid) of one send to `to` at `at`."""
    sid = new_id("VL")
    c = replace(candidate(svc, to), channel=channel, created_at=at, updated_at=at)
    outcome = await store.start(
        replace(c, expires_at=at + 600),
        channel=channel,
        locale=None,
        now=at,
        window=600,
        max_sends=5,
        # What the service records with each send.
        options={"attempt_sid": sid, **({"country": r} if (r := region_of(to)) else {})},
    )
    return outcome.verification.id, sid


async def test_the_log_finds_filters_pages_and_sums(store: VerifyBackend) -> None:
    shop, other = service("shop"), service("other")
    await store.put_tenant(shop)
    await store.put_tenant(other)
    v1, s1 = await _send(store, shop, US, NOW)
    _, s2 = await _send(store, shop, ES, NOW + 10)
    v1b, s3 = await _send(store, shop, US, NOW + 20)  # a re-send: the same verification
    _, s4 = await _send(store, shop, "ana@example.com", NOW + 30, Channel.EMAIL)
    _, s5 = await _send(store, other, US, NOW + 40)
    assert v1b == v1
    assert await store.transition(
        v1, from_status=Status.PENDING, to_status=Status.APPROVED, now=NOW + 50
    )
    mine = frozenset({shop.id})

    async def sids(**filters: object) -> list[str]:
        query = AttemptQuery(mine, **filters)  # type: ignore[arg-type]
        return [r.sid for r in await store.find_attempts(query, offset=0, limit=100)]

    assert await sids() == [s4, s3, s2, s1]  # newest first, only the tenant's own
    assert await sids(created_after=NOW, created_before=NOW + 30) == [s3, s2]
    assert await sids(to=US) == [s3, s1]
    assert await sids(country="ES") == [s2]
    assert await sids(destination_prefix="+3461") == [s2]
    assert await sids(destination_prefix="+1415") == [s3, s1]
    assert await sids(country="US") == [s3, s1]
    assert await sids(channel=Channel.EMAIL) == [s4]
    assert await sids(verification_id=v1) == [s3, s1]
    assert await sids(converted=True) == [s3, s1]
    assert await sids(converted=False) == [s4, s2]
    assert await sids(sid=s2) == [s2]
    assert await sids(sid=s5) == []  # another tenant's send is not found
    page = await store.find_attempts(AttemptQuery(mine), offset=1, limit=2)
    assert [r.sid for r in page] == [s3, s2]
    [first] = await store.find_attempts(AttemptQuery(mine, sid=s1), offset=0, limit=1)
    assert (first.tenant_id, first.verification_id, first.to, first.channel) == (
        shop.id,
        v1,
        US,
        Channel.SMS,
    )
    assert (first.created_at, first.converted) == (NOW, True)
    assert first.status.value == "queued"
    assert await store.count_attempts(AttemptQuery(mine)) == (4, 2)
    assert await store.count_attempts(AttemptQuery(mine, country="US")) == (2, 2)
    both = AttemptQuery(frozenset({shop.id, other.id}), to=US)
    assert await store.count_attempts(both) == (3, 2)
    assert [r.sid for r in await store.find_attempts(both, offset=0, limit=10)] == [s5, s3, s1]
    assert await store.count_attempts(AttemptQuery(frozenset({new_id("VA")}))) == (0, 0)


@pytest.mark.e2e
async def test_redis_reads_a_page_by_the_index_and_refuses_a_scan_too_broad(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"t{secrets.token_hex(4)}:"
    store = RedisVerificationStore(redis_url, prefix=prefix)
    await store.open()
    try:
        shop = service("shop")
        await store.put_tenant(shop)
        sends = [await _send(store, shop, f"+1415555{2700 + i}", NOW + i) for i in range(5)]
        sids = [sid for _, sid in sends]
        monkeypatch.setattr(redis_attempts, "MAX_SCAN", 3)
        mine = AttemptQuery(frozenset({shop.id}))
        page = await store.find_attempts(mine, offset=1, limit=2)
        assert [r.sid for r in page] == [sids[3], sids[2]]  # by the index alone
        with pytest.raises(QueryTooBroad, match="narrow the dates"):
            await store.count_attempts(mine)
        recent = AttemptQuery(frozenset({shop.id}), created_after=NOW + 2)
        assert await store.count_attempts(recent) == (2, 0)
    finally:
        await store.close()
        await drop_prefix(redis_url, prefix)
