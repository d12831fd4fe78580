"""In-memory verify store for unit tests and development; atomic because it never awaits."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from clave.verify.errors import TenantNameTaken
from clave.verify.factor_models import Challenge, Entity, Factor
from clave.verify.models import (
    ApiKey,
    Channel,
    CheckGate,
    CheckOutcome,
    Delivery,
    Event,
    SafeNumber,
    SendAttempt,
    SendStatus,
    StartOutcome,
    Status,
    Tenant,
    Verification,
    all_sends_failed,
    can_close,
    decide_check,
    decide_start,
    event_type,
    is_stale,
    payment_of,
    reportable,
)
from clave.verify.store.memory_attempts import MemoryAttempts
from clave.verify.store.memory_factors import MemoryFactors


@dataclass(slots=True)
class _Attempt:
    attempt: SendAttempt
    verification_id: str
    tenant_id: str
    to: str
    locale: str | None
    options: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Outbox:
    id: int
    attempt_id: int
    tries: int
    next_attempt_at: float
    lease_until: float
    last_error: str | None = None


class MemoryVerificationStore(MemoryFactors, MemoryAttempts):
    """Dicts in one process. Each method runs to completion without awaiting, so it is atomic."""

    def __init__(self, *, events: bool = False) -> None:
        self._events_on = events
        self._events: dict[int, list[Any]] = {}  # id -> [Event, next_attempt_at, lease_until]
        self._tenants: dict[str, Tenant] = {}
        self._safe: dict[tuple[str, str], SafeNumber] = {}
        self._factors: dict[str, Factor] = {}
        self._entities: dict[tuple[str, str], Entity] = {}
        self._challenges: dict[str, Challenge] = {}
        self._keys: dict[bytes, ApiKey] = {}
        self._verifications: dict[str, Verification] = {}
        self._attempts: dict[int, _Attempt] = {}
        self._outbox: dict[int, _Outbox] = {}
        self._ids = itertools.count(1)

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    async def ping(self) -> None:
        """Always answers."""

    async def put_tenant(self, tenant: Tenant) -> None:
        """Insert or update by id."""
        for other in self._tenants.values():
            if other.name == tenant.name and other.id != tenant.id:
                raise TenantNameTaken(f"service name {tenant.name!r} is taken")
        self._tenants[tenant.id] = tenant

    async def change_tenant(
        self, tenant_id: str, change: Callable[[Tenant], Tenant]
    ) -> Tenant | None:
        """Apply `change` (nothing awaits in between: atomic on one event loop)."""
        found = self._tenants.get(tenant_id)
        if found is None:
            return None
        changed = change(found)
        updated = replace(
            found,
            policy=changed.policy,
            accounts=changed.accounts,
            updated_at=changed.updated_at,
        )
        self._tenants[tenant_id] = updated
        return updated

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        return self._tenants.get(tenant_id)

    async def get_tenant_by_name(self, name: str) -> Tenant | None:
        """A tenant by name."""
        return next((s for s in self._tenants.values() if s.name == name), None)

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        return sorted(self._tenants.values(), key=lambda s: s.name)

    async def delete_tenant(self, tenant_id: str) -> bool:
        """Delete a tenant and its API keys."""
        if self._tenants.pop(tenant_id, None) is None:
            return False
        for digest in [d for d, k in self._keys.items() if k.tenant_id == tenant_id]:
            del self._keys[digest]
        for factor_id in [i for i, f in self._factors.items() if f.tenant_id == tenant_id]:
            del self._factors[factor_id]
        return True

    async def add_api_key(self, key: ApiKey) -> None:
        """Store the key."""
        self._keys[key.key_hash] = key

    async def key_for_hash(self, key_hash: bytes) -> tuple[ApiKey, Tenant] | None:
        """See TenantStore.key_for_hash."""
        key = self._keys.get(key_hash)
        tenant = self._tenants.get(key.tenant_id) if key else None
        return (key, tenant) if key and tenant else None

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """See TenantStore.list_api_keys."""
        found = [k for k in self._keys.values() if tenant_id in (None, k.tenant_id)]
        return sorted(found, key=lambda k: (k.created_at, k.id))

    def _key_by_id(self, key_id: str) -> ApiKey | None:
        return next((k for k in self._keys.values() if k.id == key_id), None)

    async def revoke_api_key(self, key_id: str, *, now: float) -> bool:
        """See TenantStore.revoke_api_key."""
        key = self._key_by_id(key_id)
        if key is None or key.revoked_at is not None:
            return False
        self._keys[key.key_hash] = replace(key, revoked_at=now)
        return True

    async def touch_api_key(self, key_id: str, *, now: float) -> None:
        """See TenantStore.touch_api_key."""
        key = self._key_by_id(key_id)
        if key is not None:
            self._keys[key.key_hash] = replace(key, last_used_at=now)

    def _with_sends(self, verification: Verification) -> Verification:
        sends = tuple(
            a.attempt for a in self._attempts.values() if a.verification_id == verification.id
        )
        return replace(verification, sends=tuple(sorted(sends, key=lambda s: s.id)))

    def _pending(self, tenant_id: str, to: str) -> Verification | None:
        return next(
            (
                v
                for v in self._verifications.values()
                if v.tenant_id == tenant_id and v.to == to and v.status is Status.PENDING
            ),
            None,
        )

    def _close(self, verification: Verification, status: Status, now: float) -> bool:
        """Close a pending verification (models.can_close), raising its event."""
        current = self._verifications[verification.id]
        if not can_close(current.status, status):
            return False
        self._verifications[verification.id] = replace(current, status=status, updated_at=now)
        kind = event_type(status)
        if kind is not None:
            self._raise(kind, verification.id, verification.tenant_id, now)
        return True

    def _raise(self, kind: str, subject_id: str, tenant_id: str, now: float) -> None:
        if self._events_on:
            eid = next(self._ids)
            self._events[eid] = [Event(eid, kind, subject_id, tenant_id, now, 0), now, 0.0]

    async def expire_due(self, now: float, *, limit: int) -> int:
        """See EventLog.expire_due."""
        due = [v for v in self._verifications.values() if is_stale(v, now)][:limit]
        return sum(self._close(v, Status.EXPIRED, now) for v in due)

    async def claim_events(self, now: float, *, lease_until: float, limit: int) -> list[Event]:
        """See EventLog.claim_events."""
        claimed: list[Event] = []
        for entry in sorted(self._events.values(), key=lambda e: e[1]):
            if len(claimed) >= limit:
                break
            event, next_at, lease = entry
            if next_at <= now and lease <= now:
                entry[0] = replace(event, tries=event.tries + 1)
                entry[2] = lease_until
                claimed.append(entry[0])
        return claimed

    async def finish_event(self, event: Event) -> None:
        """See EventLog.finish_event."""
        self._events.pop(int(event.id), None)

    async def retry_event(self, event: Event, *, next_attempt_at: float) -> None:
        """See EventLog.retry_event."""
        entry = self._events.get(int(event.id))
        if entry is not None:
            entry[1], entry[2] = next_attempt_at, 0.0

    async def start(
        self,
        candidate: Verification,
        *,
        channel: Channel,
        locale: str | None,
        now: float,
        window: float,
        max_sends: int,
        deliver: bool = True,
        options: Mapping[str, str] | None = None,
    ) -> StartOutcome:
        """See VerificationStore.start."""
        existing = self._pending(candidate.tenant_id, candidate.to)
        recent = sorted(
            a.attempt.created_at
            for a in self._attempts.values()
            if a.tenant_id == candidate.tenant_id
            and a.to == candidate.to
            and a.attempt.created_at > now - window
        )
        decision = decide_start(
            existing, candidate, sends_in_window=len(recent), max_sends=max_sends, now=now
        )
        if existing is not None and decision.close_existing is not None:
            self._close(existing, decision.close_existing, now)
            existing = None
        if decision.limited:
            return StartOutcome(
                self._with_sends(existing or candidate),
                False,
                len(recent),
                limited_until=recent[0] + window,
            )
        target = existing if decision.reuse and existing is not None else candidate
        if target is candidate:
            self._verifications[candidate.id] = candidate
        else:
            self._verifications[target.id] = replace(target, channel=channel, updated_at=now)
        attempt_id = next(self._ids)
        status = SendStatus.QUEUED if deliver else SendStatus.SKIPPED
        self._attempts[attempt_id] = _Attempt(
            SendAttempt(
                attempt_id,
                channel,
                status,
                now,
                now,
                payment=payment_of(options),
                sid=(options or {}).get("attempt_sid"),
            ),
            target.id,
            target.tenant_id,
            target.to,
            locale,
            dict(options or {}),
        )
        if deliver:
            self._outbox[attempt_id] = _Outbox(attempt_id, attempt_id, 0, now, 0.0)
        current = self._verifications[target.id]
        return StartOutcome(self._with_sends(current), target is candidate, len(recent) + 1)

    async def get(self, tenant_id: str, verification_id: str) -> Verification | None:
        """A verification of the tenant."""
        found = self._verifications.get(verification_id)
        if found is None or found.tenant_id != tenant_id:
            return None
        return self._with_sends(found)

    async def find_pending(self, tenant_id: str, to: str) -> Verification | None:
        """The pending verification for a destination."""
        found = self._pending(tenant_id, to)
        return self._with_sends(found) if found else None

    async def latest_sent(self, tenant_id: str, to: str, since: float) -> Verification | None:
        """The verification of the latest send to a destination after `since`."""
        sent = [
            a
            for a in self._attempts.values()
            if a.tenant_id == tenant_id and a.to == to and a.attempt.created_at > since
        ]
        if not sent:
            return None
        latest = max(sent, key=lambda a: (a.attempt.created_at, a.attempt.id))
        return self._with_sends(self._verifications[latest.verification_id])

    async def add_safe_number(self, entry: SafeNumber) -> SafeNumber:
        """See SafeList.add_safe_number."""
        return self._safe.setdefault((entry.owner, entry.number), entry)

    async def get_safe_number(self, owner: str, number: str) -> SafeNumber | None:
        """See SafeList.get_safe_number."""
        return self._safe.get((owner, number))

    async def remove_safe_number(self, owner: str, number: str) -> bool:
        """See SafeList.remove_safe_number."""
        return self._safe.pop((owner, number), None) is not None

    async def list_safe_numbers(self, owner: str) -> list[SafeNumber]:
        """See SafeList.list_safe_numbers."""
        return sorted((e for e in self._safe.values() if e.owner == owner), key=lambda e: e.number)

    async def is_safe(self, owners: Collection[str], number: str) -> bool:
        """See SafeList.is_safe."""
        return any((owner, number) in self._safe for owner in owners)

    async def count_sends(self, tenant_id: str, to: str, since: float) -> int:
        """Send attempts to a destination since a time."""
        return sum(
            1
            for a in self._attempts.values()
            if a.tenant_id == tenant_id and a.to == to and a.attempt.created_at > since
        )

    async def count_check(
        self,
        tenant_id: str,
        *,
        now: float,
        window: float,
        verification_id: str | None = None,
        to: str | None = None,
    ) -> CheckOutcome:
        """See VerificationStore.count_check."""
        if verification_id is not None:
            found = self._verifications.get(verification_id)
            if found is not None and found.tenant_id != tenant_id:
                found = None
        else:
            found = self._pending(tenant_id, to or "")
        gate, close = decide_check(found, now)
        if found is None or gate is CheckGate.NOT_FOUND:
            if found is not None and close is not None:
                self._close(found, close, now)
            return CheckOutcome(CheckGate.NOT_FOUND)
        sends = await self.count_sends(tenant_id, found.to, now - window)
        if gate is CheckGate.COUNTED:
            found = replace(found, check_attempts=found.check_attempts + 1, updated_at=now)
            self._verifications[found.id] = found
        return CheckOutcome(gate, self._with_sends(found), sends)

    async def transition(
        self, verification_id: str, *, from_status: Status, to_status: Status, now: float
    ) -> bool:
        """Change the status only if it is still `from_status`."""
        found = self._verifications.get(verification_id)
        if found is None or found.status is not from_status:
            return False
        return self._close(found, to_status, now)

    async def claim_deliveries(
        self, now: float, *, lease_until: float, limit: int
    ) -> list[Delivery]:
        """Lease due outbox entries."""
        due = sorted(
            (o for o in self._outbox.values() if o.next_attempt_at <= now and o.lease_until <= now),
            key=lambda o: (o.next_attempt_at, o.id),
        )[:limit]
        claimed = []
        for entry in due:
            entry.tries += 1
            entry.lease_until = lease_until
            record = self._attempts[entry.attempt_id]
            verification = self._verifications[record.verification_id]
            tenant = self._tenants[record.tenant_id]
            claimed.append(
                Delivery(
                    outbox_id=entry.id,
                    attempt_id=entry.attempt_id,
                    tries=entry.tries,
                    channel=record.attempt.channel,
                    to=record.to,
                    locale=record.locale,
                    verification=self._with_sends(verification),
                    friendly_name=tenant.policy.friendly_name,
                    options=dict(record.options),
                )
            )
        return claimed

    async def finish_delivery(
        self,
        delivery: Delivery,
        *,
        status: SendStatus,
        provider: str | None,
        error: str | None,
        now: float,
        provider_message_id: str | None = None,
    ) -> None:
        """Record the attempt's outcome and drop the outbox entry."""
        self._outbox.pop(int(delivery.outbox_id), None)
        record = self._attempts[delivery.attempt_id]
        record.attempt = replace(
            record.attempt,
            status=status,
            provider=provider,
            error=error,
            updated_at=now,
            provider_message_id=provider_message_id,
        )
        self._fail_if_all_failed(record.verification_id, now)

    def _fail_if_all_failed(self, verification_id: str, now: float) -> None:
        verification = self._with_sends(self._verifications[verification_id])
        if all_sends_failed(s.status for s in verification.sends):
            self._close(verification, Status.FAILED, now)

    async def report_delivery(
        self,
        provider: str,
        provider_message_id: str,
        status: SendStatus,
        *,
        error: str | None,
        now: float,
    ) -> bool | None:
        """See VerificationStore.report_delivery."""
        record = next(
            (
                r
                for r in self._attempts.values()
                if r.attempt.provider == provider
                and r.attempt.provider_message_id == provider_message_id
            ),
            None,
        )
        if record is None:
            return None
        if not reportable(record.attempt.status, status):
            return False
        record.attempt = replace(record.attempt, status=status, error=error, updated_at=now)
        self._fail_if_all_failed(record.verification_id, now)
        return True

    async def retry_delivery(
        self, delivery: Delivery, *, next_attempt_at: float, error: str
    ) -> None:
        """Release the lease and schedule the next try."""
        entry = self._outbox.get(int(delivery.outbox_id))
        if entry is not None:
            entry.next_attempt_at = next_attempt_at
            entry.lease_until = 0.0
            entry.last_error = error

    async def pending_deliveries(self) -> int:
        """Entries waiting in the outbox."""
        return len(self._outbox)

    async def oldest_pending_at(self) -> float | None:
        """When the oldest waiting send was queued."""
        queued = [self._attempts[e.attempt_id].attempt.created_at for e in self._outbox.values()]
        return min(queued, default=None)
