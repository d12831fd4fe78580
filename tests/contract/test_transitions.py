"""The verification state machine, walked transition by transition on every backend.

Each table row names a state the destination's verification is in and an operation, with what
must follow. Every row is checked twice: the pure function of models.py that states the rule
must give the row's answer, and each backend (memory and SQLite apply those functions, Redis
restates them in Lua) must do exactly what the function says, events included. A rule changed
in one place and not the others fails here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from clave.verify.models import (
    FINAL,
    CheckGate,
    SendStatus,
    Status,
    Tenant,
    Verification,
    all_sends_failed,
    can_close,
    decide_check,
    decide_start,
    event_type,
    is_stale,
    new_id,
    reportable,
)
from clave.verify.store.base import VerifyBackend
from tests.contract.test_events import store, svc
from tests.contract.test_verification_store import NOW, TO, candidate, start

__all__ = ["store", "svc"]  # the event-raising backends, shared with test_events

AT = NOW + 60  # when the operation under test runs: a "stale" verification expired at NOW + 10
STATES = (
    "none",
    "pending",
    "stale",
    "exhausted",
    *(s.value for s in Status if s in FINAL),
)


async def drain(store: VerifyBackend) -> list[tuple[str, str]]:
    """(type, verification id) of every event waiting, each finished."""
    events = await store.claim_events(AT + 3600, lease_until=AT + 3700, limit=100)
    for event in events:
        await store.finish_event(event)
    return sorted((e.type, e.verification_id) for e in events)


async def arrange(store: VerifyBackend, svc: Tenant, state: str) -> Verification | None:
    """A verification for TO in `state`, its send attempt made and its events drained."""
    if state == "none":
        return None
    made = candidate(svc, ttl=10 if state == "stale" else 600)
    if state == "exhausted":
        made = replace(made, max_checks=1)
    await start(store, made)
    if state == "exhausted":
        await store.count_check(svc.id, now=NOW, window=600, verification_id=made.id)
    elif state == Status.FAILED.value:
        (delivery,) = await store.claim_deliveries(NOW, lease_until=NOW + 30, limit=5)
        await store.finish_delivery(
            delivery, status=SendStatus.FAILED, provider="test", error="refused", now=NOW
        )
    elif state != "pending" and state != "stale":
        assert await store.transition(
            made.id, from_status=Status.PENDING, to_status=Status(state), now=NOW
        )
    await drain(store)
    found = await store.get(svc.id, made.id)
    assert found is not None
    assert found.status.value == ("pending" if state in ("stale", "exhausted") else state)
    return found


async def status_of(store: VerifyBackend, svc: Tenant, verification_id: str) -> Status:
    found = await store.get(svc.id, verification_id)
    assert found is not None
    return found.status


# --- start: (state, variant) -> what the send does, and what the old verification becomes.
# variant: "same" binding as the pending one, "rebind" (other terms), "full" (window used up:
# max_sends is the one send already made, so "none" has no such row; a policy allows >= 1).
START = {
    ("none", "same"): ("created", None),
    ("none", "rebind"): ("created", None),
    ("pending", "same"): ("reused", "pending"),
    ("pending", "rebind"): ("created", "canceled"),
    ("pending", "full"): ("limited", "pending"),
    ("stale", "same"): ("created", "expired"),
    ("stale", "rebind"): ("created", "expired"),
    ("stale", "full"): ("limited", "expired"),
    ("exhausted", "same"): ("reused", "pending"),
    ("exhausted", "rebind"): ("created", "canceled"),
    ("exhausted", "full"): ("limited", "pending"),
    **{
        (s.value, variant): ("limited" if variant == "full" else "created", s.value)
        for s in FINAL
        for variant in ("same", "rebind", "full")
    },
}


@pytest.mark.parametrize(("state", "variant"), sorted(START))
async def test_start(store: VerifyBackend, svc: Tenant, state: str, variant: str) -> None:
    before = await arrange(store, svc, state)
    fresh = candidate(svc)
    if variant == "rebind":
        fresh = replace(fresh, binding=b"other terms")
    sends = 1 if before is not None else 0
    max_sends = sends if variant == "full" else 5
    pending = before if before is not None and before.status is Status.PENDING else None
    rule = decide_start(pending, fresh, sends_in_window=sends, max_sends=max_sends, now=AT)
    kind, old_after = START[(state, variant)]
    # The pure rule gives the table's answer.
    assert rule.limited == (kind == "limited")
    assert rule.reuse == (kind == "reused")
    if before is not None:
        assert (rule.close_existing or before.status).value == old_after

    outcome = await store.start(
        fresh, channel=fresh.channel, locale="en", now=AT, window=600, max_sends=max_sends
    )

    # The backend does what the rule says.
    assert (outcome.limited_until is not None) == rule.limited
    if not rule.limited:
        assert outcome.created == (not rule.reuse)
        expected_id = before.id if rule.reuse and before is not None else fresh.id
        assert outcome.verification.id == expected_id
        assert outcome.verification.status is Status.PENDING
    else:
        assert await store.get(svc.id, fresh.id) is None
    raised = []
    if before is not None:
        assert (await status_of(store, svc, before.id)).value == old_after
        kind_of = event_type(rule.close_existing) if rule.close_existing else None
        raised = [(kind_of, before.id)] if kind_of else []
    assert await drain(store) == raised


# --- check: (state, by) -> the gate, and the status the verification is left in.
def _check_row(state: str, by: str) -> tuple[str, str | None]:
    if state == "none":
        return "not_found", None
    if state == "pending":
        return "counted", "pending"
    if state == "stale":
        return "not_found", "expired"
    if state == "exhausted":
        return "locked", "pending"
    if state == "max_attempts_reached" and by == "id":
        return "locked", state
    return "not_found", state  # a closed one is never found by destination either


CHECK = {(state, by): _check_row(state, by) for state in STATES for by in ("id", "to")}


@pytest.mark.parametrize(("state", "by"), sorted(CHECK))
async def test_check(store: VerifyBackend, svc: Tenant, state: str, by: str) -> None:
    before = await arrange(store, svc, state)
    gate_name, left_in = CHECK[(state, by)]
    # What a store finds: by id, the verification whatever its status; by destination, only
    # the pending one.
    if by == "id":
        found = before
        lookup = {"verification_id": before.id if before else new_id("VE")}
    else:
        found = before if before is not None and before.status is Status.PENDING else None
        lookup = {"to": TO}
    gate, close = decide_check(found, AT)
    assert gate is CheckGate(gate_name)

    outcome = await store.count_check(svc.id, now=AT, window=600, **lookup)

    assert outcome.gate is gate
    if gate is CheckGate.NOT_FOUND:
        assert outcome.verification is None
    else:
        assert outcome.verification is not None
        assert before is not None
        spent = 1 if gate is CheckGate.COUNTED else 0
        assert outcome.verification.check_attempts == before.check_attempts + spent
        assert outcome.sends_in_window == 1
    if before is not None:
        assert (await status_of(store, svc, before.id)).value == left_in
    raised = [(event_type(close), before.id)] if close and before else []
    assert await drain(store) == raised


# --- close (a conditional transition from pending): (state, target) -> whether it happens.
CLOSE = {
    (state, target.value): state in ("pending", "stale", "exhausted")
    for state in STATES
    if state != "none"
    for target in FINAL
}


@pytest.mark.parametrize(("state", "target"), sorted(CLOSE))
async def test_close(store: VerifyBackend, svc: Tenant, state: str, target: str) -> None:
    before = await arrange(store, svc, state)
    assert before is not None
    to_status = Status(target)
    assert can_close(before.status, to_status) == CLOSE[(state, target)]

    changed = await store.transition(
        before.id, from_status=Status.PENDING, to_status=to_status, now=AT
    )

    assert changed == CLOSE[(state, target)]
    assert await status_of(store, svc, before.id) == (to_status if changed else before.status)
    assert await drain(store) == ([(event_type(to_status), before.id)] if changed else [])


@pytest.mark.parametrize("state", [s for s in STATES if s != "none"])
async def test_sweep_expires_only_stale_ones(store: VerifyBackend, svc: Tenant, state: str) -> None:
    before = await arrange(store, svc, state)
    assert before is not None
    stale = is_stale(before, AT)
    assert stale == (state == "stale")

    assert await store.expire_due(AT, limit=10) == int(stale)

    assert await status_of(store, svc, before.id) == (Status.EXPIRED if stale else before.status)
    assert await drain(store) == ([("verification.expired", before.id)] if stale else [])


# --- delivery: an attempt's outcome, then what a provider's later report may do.
@pytest.mark.parametrize("attempts", [1, 2])
@pytest.mark.parametrize("outcome", [SendStatus.SENT, SendStatus.FAILED])
async def test_a_verification_fails_when_every_attempt_failed(
    store: VerifyBackend, svc: Tenant, attempts: int, outcome: SendStatus
) -> None:
    made = candidate(svc)
    for _ in range(attempts):
        await start(store, made)
    first, *_ = await store.claim_deliveries(NOW, lease_until=NOW + 30, limit=5)
    await store.finish_delivery(first, status=outcome, provider="test", error=None, now=NOW)
    # The other attempt (if any) is still queued.
    statuses = [outcome] + [SendStatus.QUEUED] * (attempts - 1)
    fails = all_sends_failed(statuses)
    assert fails == (outcome is SendStatus.FAILED and attempts == 1)

    assert await status_of(store, svc, made.id) == (Status.FAILED if fails else Status.PENDING)
    assert await drain(store) == ([("verification.failed", made.id)] if fails else [])


REPORTED = (SendStatus.DELIVERED, SendStatus.UNDELIVERED, SendStatus.FAILED)
CURRENT = (SendStatus.SENT, SendStatus.DELIVERED, SendStatus.UNDELIVERED, SendStatus.FAILED)
# Reports arrive out of order: only forward moves apply (a late "delivered" still wins).
REPORT = {
    (current, reported): (current, reported)
    in {
        (SendStatus.SENT, SendStatus.DELIVERED),
        (SendStatus.SENT, SendStatus.UNDELIVERED),
        (SendStatus.SENT, SendStatus.FAILED),
        (SendStatus.UNDELIVERED, SendStatus.DELIVERED),
        (SendStatus.FAILED, SendStatus.DELIVERED),
    }
    for current in CURRENT
    for reported in REPORTED
}


@pytest.mark.parametrize(("current", "reported"), sorted(REPORT))
async def test_delivery_reports(
    store: VerifyBackend, svc: Tenant, current: SendStatus, reported: SendStatus
) -> None:
    made = candidate(svc)
    await start(store, made)
    (delivery,) = await store.claim_deliveries(NOW, lease_until=NOW + 30, limit=5)
    await store.finish_delivery(
        delivery, status=current, provider="test", error=None, now=NOW, provider_message_id="m1"
    )
    before = await status_of(store, svc, made.id)
    await drain(store)
    assert reportable(current, reported) == REPORT[(current, reported)]

    applied = await store.report_delivery("test", "m1", reported, error=None, now=AT)

    assert applied == REPORT[(current, reported)]
    final = reported if applied else current
    (attempt,) = (await store.get(svc.id, made.id) or made).sends
    assert attempt.status is final
    fails = before is Status.PENDING and all_sends_failed([final])
    assert await status_of(store, svc, made.id) == (Status.FAILED if fails else before)
    assert await drain(store) == ([("verification.failed", made.id)] if fails else [])
    assert await store.report_delivery("test", "unknown", reported, error=None, now=AT) is None


async def test_a_send_exactly_one_window_ago_is_outside_it(
    store: VerifyBackend, svc: Tenant
) -> None:
    made = candidate(svc)
    await start(store, made, now=NOW, max_sends=1)
    # The window holds sends after now - window: the first one no longer counts.
    again = await start(store, candidate(svc), now=NOW + 600, max_sends=1)
    assert again.limited_until is None
    assert again.sends_in_window == 1


async def test_a_stale_verification_is_closed_by_its_next_use_on_the_wall_clock(
    store: VerifyBackend, svc: Tenant
) -> None:
    """On a real clock too (where Redis expires keys by itself), a check after the expiry
    finds the verification, closes it as expired and raises its event (decide_check)."""
    now = time.time()
    made = replace(candidate(svc, ttl=1), created_at=now, updated_at=now, expires_at=now + 1)
    await start(store, made, now=now)
    await drain(store)
    await asyncio.sleep(1.2)
    later = time.time()
    assert decide_check(made, later) == (CheckGate.NOT_FOUND, Status.EXPIRED)

    outcome = await store.count_check(svc.id, now=later, window=600, to=TO)

    assert outcome.gate is CheckGate.NOT_FOUND
    assert await status_of(store, svc, made.id) is Status.EXPIRED
    events = await store.claim_events(later + 1, lease_until=later + 60, limit=10)
    assert [(e.type, e.verification_id) for e in events] == [("verification.expired", made.id)]
