"""The ports of verify's storage, one per consumer; every method is atomic.

Each component is given only the port it uses (kratos' per-consumer dependencies):
`Tenants` a `TenantStore`, `VerifyService` a `VerificationStore`, the `Dispatcher` an
`Outbox`, the `EventNotifier` an `EventLog`. One backend class (memory, SQLite, Redis)
implements them all, as `VerifyBackend`, so the outbox entry and the event of a change are
written in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from clave.verify.attempts import AttemptQuery, AttemptRecord
from clave.verify.factor_models import Challenge, Entity, Factor, Sealed
from clave.verify.models import (
    ApiKey,
    Channel,
    CheckOutcome,
    Delivery,
    Event,
    SafeNumber,
    SendStatus,
    StartOutcome,
    Status,
    Tenant,
    Verification,
)


class TenantStore(Protocol):
    """Tenants and their API keys: what `Tenants` (tenants.py) uses."""

    async def put_tenant(self, tenant: Tenant) -> None:
        """Insert or update a tenant (by id; names are unique)."""
        ...

    async def change_tenant(
        self, tenant_id: str, change: Callable[[Tenant], Tenant]
    ) -> Tenant | None:
        """Apply `change` to the tenant as stored and store its policy, accounts and
        updated_at (never its name), atomically: a concurrent change is never undone, and a
        deleted tenant stays deleted (None). What `change` raises is raised unchanged, with
        nothing stored. `change` may run more than once (an optimistic backend retries)."""
        ...

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        ...

    async def get_tenant_by_name(self, name: str) -> Tenant | None:
        """A tenant by its unique name."""
        ...

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        ...

    async def delete_tenant(self, tenant_id: str) -> bool:
        """Delete a tenant and its API keys; False when there was none. Its verifications
        are no longer reachable (they expire as usual)."""
        ...

    async def add_api_key(self, key: ApiKey) -> None:
        """Store an API key (its hash and its life cycle) for its tenant."""
        ...

    async def key_for_hash(self, key_hash: bytes) -> tuple[ApiKey, Tenant] | None:
        """The key with this SHA-256 and its tenant, revoked or expired ones included (the
        caller decides); None when there is none or its tenant is gone."""
        ...

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """The keys of a tenant (of every tenant with None), oldest first."""
        ...

    async def revoke_api_key(self, key_id: str, *, now: float) -> bool:
        """Mark a key revoked at `now`; False when there is no such key, or it already was."""
        ...

    async def touch_api_key(self, key_id: str, *, now: float) -> None:
        """Record that the key was used at `now`."""
        ...


class Connection(Protocol):
    """A backend's life cycle: what the composition root and readiness use."""

    async def open(self) -> None:
        """Connect; creates the schema when missing."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""
        ...


class VerificationStore(Protocol):
    """Verifications and their send attempts: start (which also queues the send), check,
    read, close; what VerifyService uses."""

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
        """Queue one send to `candidate.to`, atomically (with `deliver=False`, a test
        destination: the attempt is recorded as skipped and nothing enters the outbox).

        A pending, unexpired verification for (tenant, to) with the candidate's `binding` is
        reused (same code, same expiry); one with another binding is canceled (its event
        raised) and `candidate` inserted in its place; a stale pending one is marked expired
        first; otherwise `candidate` is inserted. The send is refused (`limited_until` set,
        nothing written) when `max_sends` sends to the destination already fall inside the
        last `window` seconds. An accepted send writes a queued send attempt and an outbox
        entry in the same transaction.
        """
        ...

    async def get(self, tenant_id: str, verification_id: str) -> Verification | None:
        """A verification of the tenant, with its send attempts."""
        ...

    async def find_pending(self, tenant_id: str, to: str) -> Verification | None:
        """The pending verification for a destination, if any (expired or not)."""
        ...

    async def latest_sent(self, tenant_id: str, to: str, since: float) -> Verification | None:
        """The verification of the latest send to a destination after `since`, whatever its
        status (how the last attempt to reach it ended)."""
        ...

    async def count_sends(self, tenant_id: str, to: str, since: float) -> int:
        """Send attempts to a destination created after `since`."""
        ...

    async def count_check(
        self,
        tenant_id: str,
        *,
        now: float,
        window: float,
        verification_id: str | None = None,
        to: str | None = None,
    ) -> CheckOutcome:
        """Count one check attempt before any comparison, atomically.

        COUNTED with the verification after the increment; NOT_FOUND when there is no pending,
        unexpired verification (a stale one is marked expired); LOCKED when its attempts are
        used up. Nothing is counted unless the result is COUNTED. `sends_in_window` counts the
        sends to the destination in the last `window` seconds.
        """
        ...

    async def transition(
        self, verification_id: str, *, from_status: Status, to_status: Status, now: float
    ) -> bool:
        """Conditional write: change the status only if it is still `from_status`."""
        ...

    async def report_delivery(
        self,
        provider: str,
        provider_message_id: str,
        status: SendStatus,
        *,
        error: str | None,
        now: float,
    ) -> bool | None:
        """A provider's delivery report for the attempt it knows as `provider_message_id`.

        None when no attempt has that id; False when the report would move the status backwards
        (ignored, reports arrive out of order); True when applied. A pending verification whose
        every attempt failed or went undelivered becomes `failed`.
        """
        ...


class Outbox(Protocol):
    """The sends waiting for delivery, leased to one dispatcher at a time: what the Dispatcher
    uses. Entries are written by `VerificationStore.start`, in the same transaction."""

    async def claim_deliveries(
        self, now: float, *, lease_until: float, limit: int
    ) -> list[Delivery]:
        """Lease up to `limit` due outbox entries until `lease_until`, counting a try each."""
        ...

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
        """Record the attempt's outcome and drop it from the outbox.

        A pending verification whose every send attempt failed becomes `failed`.
        """
        ...

    async def retry_delivery(
        self, delivery: Delivery, *, next_attempt_at: float, error: str
    ) -> None:
        """Release the lease and schedule the next try."""
        ...

    async def pending_deliveries(self) -> int:
        """How many sends wait in the outbox (for readiness and tests)."""
        ...

    async def oldest_pending_at(self) -> float | None:
        """When the send waiting longest in the outbox was queued; None when none waits."""
        ...


class EventLog(Protocol):
    """Events raised by closings (written with the change), leased to one notifier at a time,
    and the sweep that closes expired verifications, the one closing no request raises: what
    the EventNotifier uses."""

    async def expire_due(self, now: float, *, limit: int) -> int:
        """Mark up to `limit` pending verifications past their expiry as expired (raising their
        events); how many were."""
        ...

    async def claim_events(self, now: float, *, lease_until: float, limit: int) -> list[Event]:
        """Lease up to `limit` due events until `lease_until`, counting a try each. A store
        records events only when built with `events=True`."""
        ...

    async def finish_event(self, event: Event) -> None:
        """The operator has the event (or it is given up): drop it."""
        ...

    async def retry_event(self, event: Event, *, next_attempt_at: float) -> None:
        """Try the event again at `next_attempt_at`."""
        ...


class SafeList(Protocol):
    """Numbers the fraud guard never blocks: what FraudGuard and the safe-list routes use."""

    async def add_safe_number(self, entry: SafeNumber) -> SafeNumber:
        """List `entry` unless its owner listed the number already; the entry listed."""
        ...

    async def get_safe_number(self, owner: str, number: str) -> SafeNumber | None:
        """The owner's entry for a number."""
        ...

    async def remove_safe_number(self, owner: str, number: str) -> bool:
        """Unlist a number for its owner; False when it was not listed."""
        ...

    async def list_safe_numbers(self, owner: str) -> list[SafeNumber]:
        """An owner's entries, by number."""
        ...

    async def is_safe(self, owners: Collection[str], number: str) -> bool:
        """Whether any of `owners` listed the number."""
        ...


class AttemptLog(Protocol):
    """The sends of verifications, read back for the attempts log (verify/attempts.py)."""

    async def find_attempts(
        self, query: AttemptQuery, *, offset: int, limit: int
    ) -> list[AttemptRecord]:
        """The sends matching every filter of `query` that is set, newest first (ties by
        the later send first), skipping `offset`, at most `limit`."""
        ...

    async def count_attempts(self, query: AttemptQuery) -> tuple[int, int]:
        """(sends matching `query`, those of them whose verification was approved)."""
        ...


class FactorStore(Protocol):
    """Authenticator-app factors (verify/factors.py). A factor belongs to one tenant: every
    read and change names it, and another tenant's factor is not found."""

    async def add_factor(self, factor: Factor) -> None:
        """Store a new factor."""
        ...

    async def get_factor(self, tenant_id: str, factor_id: str) -> Factor | None:
        """A factor of the tenant."""
        ...

    async def list_factors(self, tenant_id: str, entity: str) -> list[Factor]:
        """The entity's factors, oldest first."""
        ...

    async def delete_factor(self, tenant_id: str, factor_id: str) -> bool:
        """Delete a factor; False when the tenant has no such factor."""
        ...

    async def accept_step(
        self, tenant_id: str, factor_id: str, step: int, *, now: float, event: str
    ) -> Factor | None:
        """Accept a code of time step `step`, atomically: only if `step` is newer than the
        factor's last accepted one (a replay otherwise, across workers too), move it there,
        verify an unverified factor, and record `event` (when the store records events).
        The factor as changed, or None when the step was not newer (or there is no factor)."""
        ...

    async def record_factor_event(
        self, tenant_id: str, factor_id: str, event: str, *, now: float
    ) -> None:
        """Record `event` about the factor, when the store records events."""
        ...

    async def all_factors(self) -> list[Factor]:
        """Every factor of every tenant (for `clave factors rekey`)."""
        ...

    async def add_entity(self, entity: Entity) -> Entity:
        """Store an entity, unless the tenant has one with its identity: the one stored."""
        ...

    async def get_entity(self, tenant_id: str, identity: str) -> Entity | None:
        """The tenant's entity of that identity."""
        ...

    async def list_entities(self, tenant_id: str) -> list[Entity]:
        """The tenant's entities, oldest first."""
        ...

    async def delete_entity(self, tenant_id: str, identity: str) -> bool:
        """Delete an entity with its factors and challenges; False when there was none."""
        ...

    async def add_challenge(self, challenge: Challenge) -> None:
        """Keep a challenge's outcome."""
        ...

    async def get_challenge(self, tenant_id: str, sid: str) -> Challenge | None:
        """A challenge of the tenant."""
        ...

    async def list_challenges(self, tenant_id: str, identity: str) -> list[Challenge]:
        """An entity's challenges, newest first."""
        ...

    async def replace_secret(self, factor: Factor, secret: Sealed) -> bool:
        """Store `secret` in place of `factor.secret`, only if that is still the stored one."""
        ...


class VerifyBackend(
    Connection,
    TenantStore,
    VerificationStore,
    Outbox,
    EventLog,
    SafeList,
    AttemptLog,
    FactorStore,
    Protocol,
):
    """Every port at once: what one backend class implements and the composition root holds."""
