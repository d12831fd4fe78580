"""Events to the operator: a signed webhook per verification that reached a final status, and
per authenticator-app factor verified or challenged (factor.verified, challenge.approved,
challenge.failed).

Events are written by the store in the same transaction as the status change. Each worker runs
a notifier that sweeps expired verifications (so `verification.expired` fires even when nobody
reads them), then posts due events, retrying with backoff; leases hand an event held by a dead
worker to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from clave.verify.delivery.base import DeliveryError
from clave.verify.delivery.dispatcher import OutboxPolicy
from clave.verify.delivery.webhook import SignedWebhook
from clave.verify.models import Event
from clave.verify.store.base import EventLog
from clave.verify.telemetry import NO_TELEMETRY, VerifyTelemetry

log = logging.getLogger("clave.verify.events")


def payload(event: Event) -> dict[str, object]:
    """The JSON body of an event webhook."""
    occurred = datetime.fromtimestamp(event.occurred_at, UTC).isoformat(timespec="milliseconds")
    return {
        "type": event.type,
        "id": f"evt_{event.id}",
        "occurred_at": occurred.replace("+00:00", "Z"),
        "data": (
            # An authenticator-app factor's events name the factor (kept where a
            # verification's id is).
            {"factor_id": event.verification_id, "service_id": event.tenant_id}
            if event.type.startswith(("factor.", "challenge."))
            else {"verification_id": event.verification_id, "service_id": event.tenant_id}
        ),
    }


class EventNotifier:
    """Sweeps expiries and posts events to the operator's webhook."""

    def __init__(
        self,
        store: EventLog,
        hook: SignedWebhook,
        clock: Callable[[], float],
        policy: OutboxPolicy,
        telemetry: VerifyTelemetry = NO_TELEMETRY,
    ) -> None:
        self._telemetry = telemetry
        self._store = store
        self._hook = hook
        self._clock = clock
        self._policy = policy
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Run in the background of the current event loop."""
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="clave-events")

    async def stop(self) -> None:
        """Stop; an event in flight is retried by whoever holds it next."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await self._hook.close()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("event pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._policy.poll_interval)

    async def run_once(self) -> int:
        """Sweep expiries, then post one batch of due events; how many were posted."""
        now = self._clock()
        await self._store.expire_due(now, limit=100)
        events = await self._store.claim_events(
            now, lease_until=now + self._policy.lease, limit=self._policy.batch
        )
        await asyncio.gather(*(self._post(e) for e in events))
        return len(events)

    async def _post(self, event: Event) -> None:
        try:
            # The id is stable across retries, so the receiver can drop duplicates.
            await self._hook.post(f"evt_{event.id}", payload(event))
        except DeliveryError as exc:
            self._telemetry.event_failed()
            if event.tries < self._policy.max_tries:
                delay = self._policy.backoff(event.tries)
                await self._store.retry_event(event, next_attempt_at=self._clock() + delay)
                log.warning(
                    "event %s failed, retry %d in %.1fs: %s", event.id, event.tries, delay, exc
                )
                return
            log.error(
                "event %s (%s) given up after %d tries: %s", event.id, event.type, event.tries, exc
            )
        await self._store.finish_event(event)
