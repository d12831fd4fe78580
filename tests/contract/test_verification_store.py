"""The contract every verify backend passes (every port of VerifyBackend)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from clave.verify.errors import TenantNameTaken
from clave.verify.models import (
    EVERY_ACCOUNT,
    ApiKey,
    Channel,
    CheckGate,
    Policy,
    SafeNumber,
    SealedCode,
    SendStatus,
    StartOutcome,
    Status,
    Tenant,
    Verification,
    new_id,
)
from clave.verify.service_rate_limits import Bucket, ServiceRateLimit
from clave.verify.store.base import VerifyBackend
from clave.verify.store.redis import RedisVerificationStore
from clave.verify.store.sqlite import SqliteVerificationStore
from tests.contract.conftest import drop_prefix

NOW = 1_800_000_000.0
TO = "+14155552671"


def service(name: str = "acme") -> Tenant:
    return Tenant(id=new_id("VA"), name=name, policy=Policy(friendly_name="Acme"), created_at=NOW)


def candidate(svc: Tenant, to: str = TO, *, ttl: float = 600, max_checks: int = 5) -> Verification:
    vid = new_id("VE")
    return Verification(
        id=vid,
        tenant_id=svc.id,
        to=to,
        channel=Channel.SMS,
        locale="en",
        code_length=6,
        code=SealedCode("k1", b"seed" * 4, b"digest" * 5),
        status=Status.PENDING,
        check_attempts=0,
        max_checks=max_checks,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + ttl,
    )


async def start(
    store: VerifyBackend, c: Verification, now: float = NOW, max_sends: int = 5
) -> StartOutcome:
    return await store.start(
        c, channel=Channel.SMS, locale="en", now=now, window=600, max_sends=max_sends
    )


@pytest.fixture
async def svc(store: VerifyBackend) -> Tenant:
    s = service()
    await store.put_tenant(s)
    return s


async def test_services_and_keys(store: VerifyBackend) -> None:
    s = service()
    await store.put_tenant(s)
    assert await store.get_tenant(s.id) == s
    assert await store.get_tenant_by_name("acme") == s
    changed = replace(
        s, policy=replace(s.policy, code_length=8, channels=frozenset({Channel.EMAIL}))
    )
    await store.put_tenant(changed)
    assert await store.get_tenant(s.id) == changed
    with pytest.raises(TenantNameTaken, match="taken"):
        await store.put_tenant(service("acme"))
    await store.put_tenant(service("beta"))
    assert [x.name for x in await store.list_tenants()] == ["acme", "beta"]
    key = ApiKey("SK1", s.id, b"h" * 32, NOW)
    await store.add_api_key(key)
    assert await store.key_for_hash(b"h" * 32) == (key, changed)
    assert await store.key_for_hash(b"x" * 32) is None


async def test_a_services_own_rate_limits_round_trip(store: VerifyBackend) -> None:
    bucket = Bucket(new_id("BL"), max=3, interval=600, created_at=NOW, updated_at=NOW + 1)
    rule = ServiceRateLimit(new_id("RK"), "end_user_ip", "per IP", NOW, NOW, (bucket,))
    s = service()
    await store.put_tenant(s)
    changed = await store.change_tenant(
        s.id, lambda t: replace(t, policy=replace(t.policy, rate_limits=(rule,)))
    )
    assert changed is not None
    stored = await store.get_tenant(s.id)
    assert stored is not None
    assert stored.policy.rate_limits == (rule,)
    assert stored == changed


async def test_a_key_has_a_life_cycle(store: VerifyBackend) -> None:
    s, other = service("acme"), service("other")
    await store.put_tenant(s)
    await store.put_tenant(other)
    first = ApiKey("SK1", s.id, b"1" * 32, NOW, name="ci", expires_at=NOW + 3600)
    second = ApiKey("SK2", s.id, b"2" * 32, NOW + 1)
    elsewhere = ApiKey("SK3", other.id, b"3" * 32, NOW + 2)
    for key in (second, elsewhere, first):
        await store.add_api_key(key)
    assert await store.list_api_keys(s.id) == [first, second]
    assert [k.id for k in await store.list_api_keys()] == ["SK1", "SK2", "SK3"]
    await store.touch_api_key("SK2", now=NOW + 50)
    assert await store.revoke_api_key("SK1", now=NOW + 60) is True
    assert await store.revoke_api_key("SK1", now=NOW + 70) is False  # already revoked
    assert await store.revoke_api_key("SK9", now=NOW + 70) is False  # no such key
    revoked, _ = await store.key_for_hash(b"1" * 32)  # type: ignore[misc]
    assert (revoked.revoked_at, revoked.expires_at, revoked.name) == (NOW + 60, NOW + 3600, "ci")
    assert not revoked.valid_at(NOW + 61)
    used, _ = await store.key_for_hash(b"2" * 32)  # type: ignore[misc]
    assert (used.last_used_at, used.revoked_at) == (NOW + 50, None)
    assert used.valid_at(NOW + 10**6)


async def test_accounts_of_a_service_round_trip(store: VerifyBackend) -> None:
    s = replace(service("shared"), accounts=frozenset({"AC" + "1" * 32, "AC" + "2" * 32}))
    await store.put_tenant(s)
    assert await store.get_tenant(s.id) == s
    await store.put_tenant(replace(s, accounts=frozenset()))
    assert (await store.get_tenant(s.id)).accounts == frozenset()  # type: ignore[union-attr]


async def test_start_creates_and_queues_one_send(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc)
    outcome = await start(store, c)
    assert outcome.created
    assert outcome.limited_until is None
    assert outcome.sends_in_window == 1
    v = outcome.verification
    assert (v.id, v.to, v.status, v.code) == (c.id, TO, Status.PENDING, c.code)
    assert [s.status for s in v.sends] == [SendStatus.QUEUED]
    assert await store.pending_deliveries() == 1
    assert await store.get(svc.id, c.id) == v
    assert await store.get("VAother", c.id) is None


async def test_start_reuses_the_pending_verification(store: VerifyBackend, svc: Tenant) -> None:
    first = await start(store, candidate(svc))
    again = await store.start(
        candidate(svc), channel=Channel.CALL, locale="es", now=NOW + 5, window=600, max_sends=5
    )
    assert not again.created
    assert again.verification.id == first.verification.id
    assert again.verification.code == first.verification.code
    assert again.verification.expires_at == first.verification.expires_at
    assert again.verification.channel is Channel.CALL
    assert [s.channel for s in again.verification.sends] == [Channel.SMS, Channel.CALL]
    assert again.sends_in_window == 2
    assert await store.pending_deliveries() == 2


async def test_a_send_with_another_binding_replaces_the_pending_verification(
    store: VerifyBackend, svc: Tenant
) -> None:
    first = await start(store, replace(candidate(svc), binding=b"A" * 32))
    same = await start(store, replace(candidate(svc), binding=b"A" * 32), now=NOW + 5)
    assert (same.created, same.verification.id) == (False, first.verification.id)
    other = replace(candidate(svc), binding=b"B" * 32)
    rebound = await start(store, other, now=NOW + 10)
    # A new verification with the candidate's code; the old one is canceled, its code dead.
    assert rebound.created
    assert rebound.verification.id == other.id
    assert (rebound.verification.code, rebound.verification.binding) == (other.code, b"B" * 32)
    assert [s.status for s in rebound.verification.sends] == [SendStatus.QUEUED]
    old = await store.get(svc.id, first.verification.id)
    assert old is not None
    assert old.status is Status.CANCELED
    assert (await store.find_pending(svc.id, TO)).id == other.id  # type: ignore[union-attr]
    # The sends to the destination still count together: the window is not reset.
    assert rebound.sends_in_window == 3
    assert await store.pending_deliveries() == 3


async def test_a_full_window_refuses_without_touching_the_pending_one(
    store: VerifyBackend, svc: Tenant
) -> None:
    first = await start(store, replace(candidate(svc), binding=b"A" * 32), max_sends=1)
    refused = await start(store, replace(candidate(svc), binding=b"B" * 32), max_sends=1)
    assert refused.limited_until is not None
    kept = await store.get(svc.id, first.verification.id)
    assert kept is not None
    assert kept.status is Status.PENDING


async def test_start_refuses_past_the_window_limit(store: VerifyBackend, svc: Tenant) -> None:
    for i in range(3):
        await start(store, candidate(svc), now=NOW + i * 10, max_sends=3)
    refused = await start(store, candidate(svc), now=NOW + 30, max_sends=3)
    assert refused.limited_until == NOW + 600
    assert refused.sends_in_window == 3
    assert await store.pending_deliveries() == 3
    assert await store.count_sends(svc.id, TO, NOW - 1) == 3
    # Once the first send leaves the window, one more is allowed.
    allowed = await start(store, candidate(svc), now=NOW + 601, max_sends=3)
    assert allowed.limited_until is None


async def test_other_destinations_and_services_do_not_share_limits(
    store: VerifyBackend, svc: Tenant
) -> None:
    other = service("other")
    await store.put_tenant(other)
    await start(store, candidate(svc), max_sends=1)
    assert (await start(store, candidate(svc, "+14155552672"), max_sends=1)).created
    assert (await start(store, candidate(other), max_sends=1)).created


async def test_stale_pending_is_expired_and_replaced(store: VerifyBackend, svc: Tenant) -> None:
    first = await start(store, candidate(svc, ttl=60))
    second = await start(store, candidate(svc), now=NOW + 61)
    assert second.created
    assert second.verification.id != first.verification.id
    old = await store.get(svc.id, first.verification.id)
    assert old is not None
    assert old.status is Status.EXPIRED


async def test_count_check_counts_until_locked(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc, max_checks=2)
    await start(store, c)
    first = await store.count_check(svc.id, window=600, now=NOW, to=TO)
    assert first.gate is CheckGate.COUNTED
    assert first.verification is not None
    assert first.verification.check_attempts == 1
    assert first.sends_in_window == 1
    second = await store.count_check(svc.id, window=600, now=NOW, verification_id=c.id)
    assert second.gate is CheckGate.COUNTED
    assert second.verification is not None
    assert second.verification.check_attempts == 2
    third = await store.count_check(svc.id, window=600, now=NOW, verification_id=c.id)
    assert third.gate is CheckGate.LOCKED
    stored = await store.get(svc.id, c.id)
    assert stored is not None
    assert stored.check_attempts == 2


async def test_a_counted_check_returns_the_verification_as_stored(
    store: VerifyBackend, svc: Tenant
) -> None:
    """What count_check answers is what it wrote, with the sends to the destination inside
    the window from this service only."""
    other = service("other")
    await store.put_tenant(other)
    c = candidate(svc, ttl=3600)
    await start(store, c)
    await start(store, candidate(other, ttl=3600))  # another service's send to the same number
    counted = await store.count_check(svc.id, window=600, now=NOW + 10, verification_id=c.id)
    assert counted.gate is CheckGate.COUNTED
    assert counted.sends_in_window == 1
    assert counted.verification == await store.get(svc.id, c.id)
    assert counted.verification is not None
    assert (counted.verification.check_attempts, counted.verification.updated_at) == (1, NOW + 10)
    assert len(counted.verification.sends) == 1
    # A window that began after the send counts none of it.
    later = await store.count_check(svc.id, window=5, now=NOW + 10, to=TO)
    assert (later.gate, later.sends_in_window) == (CheckGate.COUNTED, 0)
    locked = candidate(svc, "+14155550000", max_checks=1)
    await start(store, locked)
    await store.count_check(svc.id, window=600, now=NOW, verification_id=locked.id)
    refused = await store.count_check(svc.id, window=600, now=NOW, verification_id=locked.id)
    assert (refused.gate, refused.sends_in_window) == (CheckGate.LOCKED, 1)
    assert refused.verification is not None
    assert refused.verification.check_attempts == 1


async def test_count_check_not_found_cases(store: VerifyBackend, svc: Tenant) -> None:
    assert (await store.count_check(svc.id, window=600, now=NOW, to=TO)).gate is CheckGate.NOT_FOUND
    c = candidate(svc, ttl=60)
    await start(store, c)
    assert (
        await store.count_check("VAother", window=600, now=NOW, verification_id=c.id)
    ).gate is CheckGate.NOT_FOUND
    assert (
        await store.count_check(svc.id, window=600, now=NOW + 60, to=TO)
    ).gate is CheckGate.NOT_FOUND
    expired = await store.get(svc.id, c.id)
    assert expired is not None
    assert expired.status is Status.EXPIRED
    assert expired.check_attempts == 0  # nothing counted for a dead verification


async def test_transition_is_conditional(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc)
    await start(store, c)
    ok = await store.transition(
        c.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=NOW
    )
    again = await store.transition(
        c.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=NOW
    )
    assert (ok, again) == (True, False)
    assert not await store.transition(
        "VEnone", from_status=Status.PENDING, to_status=Status.CANCELED, now=NOW
    )
    assert (
        await store.count_check(svc.id, window=600, now=NOW, verification_id=c.id)
    ).gate is CheckGate.NOT_FOUND
    assert await store.find_pending(svc.id, TO) is None


async def test_locked_status_reports_locked(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc)
    await start(store, c)
    await store.transition(
        c.id, from_status=Status.PENDING, to_status=Status.MAX_ATTEMPTS_REACHED, now=NOW
    )
    assert (
        await store.count_check(svc.id, window=600, now=NOW, verification_id=c.id)
    ).gate is CheckGate.LOCKED


async def test_outbox_lease_retry_and_finish(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc)
    await start(store, c)
    claimed = await store.claim_deliveries(NOW, lease_until=NOW + 30, limit=10)
    assert len(claimed) == 1
    d = claimed[0]
    assert (d.channel, d.to, d.locale, d.tries, d.friendly_name) == (
        Channel.SMS,
        TO,
        "en",
        1,
        "Acme",
    )
    assert d.verification.code == c.code
    # Leased: nobody else gets it until the lease ends.
    assert await store.claim_deliveries(NOW + 29, lease_until=NOW + 60, limit=10) == []
    again = await store.claim_deliveries(NOW + 31, lease_until=NOW + 61, limit=10)
    assert [x.tries for x in again] == [2]
    await store.retry_delivery(again[0], next_attempt_at=NOW + 100, error="later")
    assert await store.claim_deliveries(NOW + 99, lease_until=NOW + 130, limit=10) == []
    third = await store.claim_deliveries(NOW + 100, lease_until=NOW + 130, limit=10)
    assert [x.tries for x in third] == [3]
    await store.finish_delivery(
        third[0], status=SendStatus.SENT, provider="inbox", error=None, now=NOW + 101
    )
    assert await store.pending_deliveries() == 0
    assert await store.claim_deliveries(NOW + 1000, lease_until=NOW + 1030, limit=10) == []
    v = await store.get(svc.id, c.id)
    assert v is not None
    assert (v.sends[0].status, v.sends[0].provider) == (SendStatus.SENT, "inbox")
    assert v.status is Status.PENDING


async def test_claim_respects_limit_and_order(store: VerifyBackend, svc: Tenant) -> None:
    for i in range(5):
        await start(store, candidate(svc, f"+1415555267{i}"), now=NOW + i)
    first = await store.claim_deliveries(NOW + 10, lease_until=NOW + 40, limit=3)
    assert [d.to for d in first] == [f"+1415555267{i}" for i in range(3)]
    rest = await store.claim_deliveries(NOW + 10, lease_until=NOW + 40, limit=3)
    assert [d.to for d in rest] == ["+14155552673", "+14155552674"]


async def test_every_attempt_failed_fails_the_verification(
    store: VerifyBackend, svc: Tenant
) -> None:
    c = candidate(svc)
    await start(store, c)
    await start(store, candidate(svc), now=NOW + 1)
    first, second = await store.claim_deliveries(NOW + 2, lease_until=NOW + 30, limit=10)
    await store.finish_delivery(
        first, status=SendStatus.FAILED, provider=None, error="x", now=NOW + 3
    )
    v = await store.get(svc.id, c.id)
    assert v is not None
    assert v.status is Status.PENDING  # one attempt is still queued
    await store.finish_delivery(
        second, status=SendStatus.FAILED, provider=None, error="y", now=NOW + 4
    )
    v = await store.get(svc.id, c.id)
    assert v is not None
    assert v.status is Status.FAILED


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.e2e)])
async def shared_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[list[VerifyBackend]]:
    """Four stores on one backend, each with its own connection, as four worker processes."""
    prefix = f"t{secrets.token_hex(4)}:"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        stores: list[VerifyBackend] = [RedisVerificationStore(url, prefix=prefix) for _ in range(4)]
    else:
        stores = [SqliteVerificationStore(tmp_path / "verify.db") for _ in range(4)]
    for s in stores:
        await s.open()
    yield stores
    for s in stores:
        await s.close()
    if request.param == "redis":
        await drop_prefix(url, prefix)


async def test_concurrent_checks_count_exactly_max(shared_stores: list[VerifyBackend]) -> None:
    """Several connections race on one verification: exactly max_checks are counted."""
    stores = shared_stores
    svc = service()
    await stores[0].put_tenant(svc)
    c = candidate(svc, max_checks=5)
    await start(stores[0], c)
    results = await asyncio.gather(
        *(
            stores[i % 4].count_check(svc.id, window=600, now=NOW, verification_id=c.id)
            for i in range(40)
        )
    )
    gates = [r.gate for r in results]
    assert gates.count(CheckGate.COUNTED) == 5
    assert gates.count(CheckGate.LOCKED) == 35
    assert sorted(
        r.verification.check_attempts
        for r in results
        if r.gate is CheckGate.COUNTED and r.verification
    ) == [1, 2, 3, 4, 5]
    approvals = await asyncio.gather(
        *(
            stores[i % 4].transition(
                c.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=NOW
            )
            for i in range(20)
        )
    )
    assert approvals.count(True) == 1


async def test_concurrent_tenant_changes_all_stay(shared_stores: list[VerifyBackend]) -> None:
    """Changes of one tenant racing on several connections: none undoes another, and a
    change never brings a deleted tenant back."""
    stores = shared_stores
    svc = service()
    await stores[0].put_tenant(svc)
    accounts = [new_id("AC") for _ in range(24)]

    def adding(account: str) -> Callable[[Tenant], Tenant]:
        return lambda t: replace(t, accounts=t.accounts | {account}, updated_at=NOW + 1)

    await asyncio.gather(
        *(stores[i % 4].change_tenant(svc.id, adding(a)) for i, a in enumerate(accounts)),
        stores[1].change_tenant(
            svc.id, lambda t: replace(t, policy=replace(t.policy, code_ttl=90))
        ),
    )
    stored = await stores[2].get_tenant(svc.id)
    assert stored is not None
    assert stored.accounts == frozenset(accounts)
    assert (stored.policy.code_ttl, stored.name, stored.updated_at) == (90, "acme", NOW + 1)

    def failing(t: Tenant) -> Tenant:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await stores[3].change_tenant(svc.id, failing)
    assert await stores[0].get_tenant(svc.id) == stored
    assert await stores[0].delete_tenant(svc.id)
    assert await stores[1].change_tenant(svc.id, adding(new_id("AC"))) is None
    assert await stores[2].get_tenant(svc.id) is None
    assert await stores[2].get_tenant_by_name("acme") is None


async def test_concurrent_claims_hand_each_send_to_one_dispatcher(
    shared_stores: list[VerifyBackend],
) -> None:
    stores = shared_stores
    svc = service()
    await stores[0].put_tenant(svc)
    for i in range(30):
        await start(stores[0], candidate(svc, f"+1415555{2600 + i}"))
    batches = await asyncio.gather(
        *(s.claim_deliveries(NOW, lease_until=NOW + 30, limit=10) for s in stores for _ in range(2))
    )
    claimed = [d.attempt_id for batch in batches for d in batch]
    assert len(claimed) == 30
    assert len(set(claimed)) == 30


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "verify.db"
    first = SqliteVerificationStore(path)
    await first.open()
    svc = service()
    await first.put_tenant(svc)
    c = candidate(svc)
    await start(first, c)
    await first.close()
    second = SqliteVerificationStore(path)
    await second.open()
    try:
        assert (await second.get(svc.id, c.id)) is not None
        assert await second.pending_deliveries() == 1
    finally:
        await second.close()


async def test_delivery_reports_by_provider_message_id(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc)
    await start(store, c)
    [d] = await store.claim_deliveries(NOW, lease_until=NOW + 30, limit=10)
    await store.finish_delivery(
        d, status=SendStatus.SENT, provider="twilio", error=None, now=NOW, provider_message_id="SM1"
    )
    v = await store.get(svc.id, c.id)
    assert v is not None
    assert (v.sends[0].provider_message_id, v.sends[0].status) == ("SM1", SendStatus.SENT)
    assert (
        await store.report_delivery("twilio", "SM404", SendStatus.DELIVERED, error=None, now=NOW)
        is None
    )
    assert (
        await store.report_delivery("sns", "SM1", SendStatus.DELIVERED, error=None, now=NOW) is None
    )
    assert (
        await store.report_delivery("twilio", "SM1", SendStatus.DELIVERED, error=None, now=NOW + 1)
        is True
    )
    # Out of order: "undelivered" after "delivered" does not move it back.
    assert (
        await store.report_delivery(
            "twilio", "SM1", SendStatus.UNDELIVERED, error="late", now=NOW + 2
        )
        is False
    )
    v = await store.get(svc.id, c.id)
    assert v is not None
    assert (v.sends[0].status, v.status) == (SendStatus.DELIVERED, Status.PENDING)


async def test_undelivered_everywhere_fails_the_verification(
    store: VerifyBackend, svc: Tenant
) -> None:
    c = candidate(svc)
    await start(store, c)
    await start(store, candidate(svc), now=NOW + 1)
    first, second = await store.claim_deliveries(NOW + 2, lease_until=NOW + 30, limit=10)
    await store.finish_delivery(
        first,
        status=SendStatus.SENT,
        provider="twilio",
        error=None,
        now=NOW,
        provider_message_id="A",
    )
    await store.finish_delivery(
        second,
        status=SendStatus.SENT,
        provider="twilio",
        error=None,
        now=NOW,
        provider_message_id="B",
    )
    assert await store.report_delivery(
        "twilio", "A", SendStatus.UNDELIVERED, error="30003", now=NOW + 3
    )
    v = await store.get(svc.id, c.id)
    assert v is not None
    assert v.status is Status.PENDING
    assert await store.report_delivery("twilio", "B", SendStatus.FAILED, error="30005", now=NOW + 4)
    v = await store.get(svc.id, c.id)
    assert v is not None
    assert v.status is Status.FAILED
    assert [s.error for s in v.sends] == ["30003", "30005"]


async def test_a_send_not_delivered_is_recorded_but_never_queued(
    store: VerifyBackend, svc: Tenant
) -> None:
    c = candidate(svc)
    outcome = await store.start(
        c, channel=Channel.SMS, locale="en", now=NOW, window=600, max_sends=5, deliver=False
    )
    assert outcome.created
    assert [s.status for s in outcome.verification.sends] == [SendStatus.SKIPPED]
    assert outcome.sends_in_window == 1
    assert await store.pending_deliveries() == 0
    assert await store.claim_deliveries(NOW + 1, lease_until=NOW + 30, limit=10) == []


async def test_service_policy_round_trips(store: VerifyBackend) -> None:
    policy = Policy(
        friendly_name="Strict",
        countries=frozenset({"US", "ES"}),
        limits=(("failed_checks_per_ip", "3/900"), ("sends_per_ip", "2/3600")),
        flags=frozenset({"custom_code", "psd2"}),
    )
    s = Tenant(id=new_id("VA"), name="strict", policy=policy, created_at=NOW)
    await store.put_tenant(s)
    assert await store.get_tenant(s.id) == s
    assert await store.get_tenant_by_name("strict") == s


async def test_deleting_a_service_drops_it_its_name_and_its_keys(store: VerifyBackend) -> None:
    gone, kept = service("gone"), service("kept")
    await store.put_tenant(gone)
    await store.put_tenant(kept)
    await store.add_api_key(ApiKey("SK1", gone.id, b"g" * 32, NOW))
    await store.add_api_key(ApiKey("SK2", kept.id, b"k" * 32, NOW))
    assert await store.delete_tenant(gone.id) is True
    assert await store.delete_tenant(gone.id) is False
    assert await store.get_tenant(gone.id) is None
    assert await store.get_tenant_by_name("gone") is None
    assert await store.key_for_hash(b"g" * 32) is None
    assert await store.key_for_hash(b"k" * 32) == (ApiKey("SK2", kept.id, b"k" * 32, NOW), kept)
    assert [x.name for x in await store.list_tenants()] == ["kept"]
    await store.put_tenant(service("gone"))  # the name is free again


async def test_a_sends_payment_is_read_back(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc)
    options = {"amount": "€39.99", "payee": "Acme Books", "app_hash": "FA+9qCX9VSu"}
    await store.start(
        c, channel=Channel.SMS, locale="en", now=NOW, window=600, max_sends=5, options=options
    )
    found = await store.get(svc.id, c.id)
    assert found is not None
    assert [s.payment for s in found.sends] == [("€39.99", "Acme Books")]
    plain = candidate(svc, "+14155550000")
    await start(store, plain)
    other = await store.get(svc.id, plain.id)
    assert other is not None
    assert [s.payment for s in other.sends] == [None]


async def test_a_custom_codes_longer_seed_round_trips(store: VerifyBackend, svc: Tenant) -> None:
    c = candidate(svc)
    c = replace(c, code=replace(c.code, seed=bytes(range(26))))  # 16 random + 10 offset bytes
    await start(store, c)
    found = await store.get(svc.id, c.id)
    assert found is not None
    assert found.code == c.code


async def test_redis_keys_from_before_life_cycles_are_adopted(redis_url: str) -> None:
    prefix = f"t{secrets.token_hex(4)}:"
    import redis.asyncio as aioredis

    old = RedisVerificationStore(redis_url, prefix=prefix)
    await old.open()
    try:
        s = service("legacy")
        await old.put_tenant(s)
        raw = aioredis.Redis.from_url(redis_url)
        # As clave stored a key before keys had records: the hash naming its service.
        await raw.set(prefix + "key:" + (b"L" * 32).hex(), s.id)
        await raw.delete(prefix + "keys-adopted")
        await raw.aclose()
        new = RedisVerificationStore(redis_url, prefix=prefix)
        await new.open()
        try:
            found = await new.key_for_hash(b"L" * 32)
            assert found is not None
            key, owner = found
            assert (owner.id, key.tenant_id, key.revoked_at) == (s.id, s.id, None)
            assert [k.id for k in await new.list_api_keys(s.id)] == [key.id]
            assert await new.revoke_api_key(key.id, now=NOW) is True
        finally:
            await new.close()
    finally:
        await old.close()
        await drop_prefix(redis_url, prefix)


async def test_latest_sent_finds_how_the_last_attempt_to_a_destination_ended(
    store: VerifyBackend, svc: Tenant
) -> None:
    assert await store.latest_sent(svc.id, TO, NOW - 600) is None
    first = await start(store, candidate(svc))
    await store.transition(
        first.verification.id,
        from_status=Status.PENDING,
        to_status=Status.MAX_ATTEMPTS_REACHED,
        now=NOW + 1,
    )
    locked = await store.latest_sent(svc.id, TO, NOW - 600)
    assert locked is not None
    assert (locked.id, locked.status) == (first.verification.id, Status.MAX_ATTEMPTS_REACHED)
    # A newer verification to the destination is the latest, closed or not.
    second = await start(store, candidate(svc), now=NOW + 10)
    latest = await store.latest_sent(svc.id, TO, NOW - 600)
    assert latest is not None
    assert (latest.id, latest.status) == (second.verification.id, Status.PENDING)
    # Only sends after `since` count; another destination or tenant sees nothing.
    assert await store.latest_sent(svc.id, TO, NOW + 10) is None
    assert await store.latest_sent(svc.id, "+14155552672", NOW - 600) is None
    other = service("other")
    await store.put_tenant(other)
    assert await store.latest_sent(other.id, TO, NOW - 600) is None


async def test_a_tenant_keeps_when_its_policy_last_changed(store: VerifyBackend) -> None:
    s = service("dated")
    await store.put_tenant(s)
    stored = await store.get_tenant(s.id)
    assert stored is not None
    assert stored.updated_at is None  # never changed since created
    changed = replace(s, policy=replace(s.policy, code_length=8), updated_at=NOW + 60)
    await store.put_tenant(changed)
    assert await store.get_tenant(s.id) == changed
    assert await store.get_tenant_by_name("dated") == changed


async def test_the_safe_list_keeps_each_owners_numbers(store: VerifyBackend) -> None:
    first = SafeNumber("GN" + "1" * 32, "ACone", TO, NOW)
    assert await store.add_safe_number(first) == first
    # Listed again: the first listing stays.
    again = await store.add_safe_number(SafeNumber("GN" + "2" * 32, "ACone", TO, NOW + 5))
    assert again == first
    other = SafeNumber("GN" + "3" * 32, EVERY_ACCOUNT, "+14155552672", NOW)
    await store.add_safe_number(other)
    assert await store.get_safe_number("ACone", TO) == first
    assert await store.get_safe_number("ACtwo", TO) is None
    assert await store.list_safe_numbers("ACone") == [first]
    assert await store.is_safe({"ACone"}, TO)
    assert not await store.is_safe({"ACtwo", EVERY_ACCOUNT}, TO)
    assert await store.is_safe({"ACtwo", EVERY_ACCOUNT}, "+14155552672")
    assert not await store.is_safe(set(), TO)
    assert await store.remove_safe_number("ACone", TO)
    assert not await store.remove_safe_number("ACone", TO)
    assert not await store.is_safe({"ACone"}, TO)
