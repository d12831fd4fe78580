"""The outbox dispatcher: delivers queued sends with retries and backoff, crash-safe.

A send is in the outbox before the API answers. Each worker process runs one dispatcher; they
share the outbox through leases, so an entry held by a worker that died is taken up by any
worker once its lease runs out, and a restart delivers what a crash left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from clave.platform import tracing
from clave.platform.contacts import mask_text
from clave.verify.codes import CodeHasher, bound_terms
from clave.verify.delivery.base import (
    DeliveryError,
    OutgoingMessage,
    Provider,
    ProviderRouter,
)
from clave.verify.destinations import mask
from clave.verify.languages import choose_locale
from clave.verify.messages import render
from clave.verify.models import Delivery, SendStatus, Status, payment_of
from clave.verify.store.base import Outbox
from clave.verify.telemetry import NO_TELEMETRY, VerifyTelemetry

log = logging.getLogger("clave.verify.dispatcher")


class _Unsendable(Exception):
    """A claimed send this instance cannot deliver (its code cannot be derived here)."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why one provider did not take a message, and whether trying again may help."""

    error: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """How the dispatcher retries."""

    lease: float = 60.0
    max_tries: int = 10
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    send_timeout: float = 15.0
    poll_interval: float = 1.0
    batch: int = 32

    def backoff(self, tries: int) -> float:
        """Seconds before try `tries + 1`: exponential, capped, with +-20% jitter."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(0, tries - 1))
        return float(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret


# Seconds between two reports of the outbox's depth and age (per worker).
_REPORT_EVERY = 5.0


class Dispatcher:
    """Claims due outbox entries, renders each message, and hands it to the channel's providers."""

    def __init__(
        self,
        store: Outbox,
        hasher: CodeHasher,
        providers: ProviderRouter,
        clock: Callable[[], float],
        policy: OutboxPolicy,
        telemetry: VerifyTelemetry = NO_TELEMETRY,
    ) -> None:
        self._telemetry = telemetry
        self._reported_at = float("-inf")
        self._store = store
        self._hasher = hasher
        self._providers = providers
        self._clock = clock
        self._policy = policy
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def notify(self) -> None:
        """Something was queued: look at the outbox now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        """Run in the background of the current event loop."""
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="clave-dispatcher")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop polling; a delivery in flight gets `grace` seconds, else its lease expires."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("dispatcher pass failed; retrying")
                handled = 0
            if handled or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._policy.poll_interval)
            self._wake.clear()

    async def run_once(self) -> int:
        """Claim and deliver one batch of due sends; returns how many were handled. The
        outbox's depth and age are reported on each pass."""
        now = self._clock()
        if now - self._reported_at >= _REPORT_EVERY:  # two reads: not on every busy pass
            self._reported_at = now
            oldest = await self._store.oldest_pending_at()
            pending = await self._store.pending_deliveries() if oldest is not None else 0
            self._telemetry.outbox(pending, now - oldest if oldest is not None else 0.0)
        batch = await self._store.claim_deliveries(
            now, lease_until=now + self._policy.lease, limit=self._policy.batch
        )
        if batch:
            await asyncio.gather(*(self._deliver(d) for d in batch))
        return len(batch)

    async def _deliver(self, delivery: Delivery) -> None:
        """Deliver one claimed send, in a span linked to the request that queued it."""
        with tracing.span("deliver", link=delivery.options.get("traceparent")):
            await self._deliver_traced(delivery)

    async def _deliver_traced(self, delivery: Delivery) -> None:
        """Deliver one claimed send: skipped when its verification closed, failed when it
        cannot be sent, else offered to the channel's providers in turn until one takes it."""
        now = self._clock()
        if delivery.verification.effective_status(now) is not Status.PENDING:
            # Closed before the message went out: sending a dead code would only confuse.
            await self._store.finish_delivery(
                delivery, status=SendStatus.SKIPPED, provider=None, error=None, now=now
            )
            return
        providers = self._providers.providers(delivery.channel)
        if not providers:
            await self._finish_failed(delivery, "no provider configured for the channel", now)
            return
        try:
            outgoing = self._message(delivery, now)
        except _Unsendable as exc:
            await self._finish_failed(delivery, str(exc), now)
            return
        failures = []
        for provider in providers:
            outcome = await self._try(provider, outgoing)
            if not isinstance(outcome, _Failure):
                await self._finish_sent(delivery, provider.name, outcome)
                return
            failures.append(outcome)
        await self._retry_or_fail(delivery, failures)

    def _reveal(self, delivery: Delivery) -> str:
        """The code to send; _Unsendable when this instance cannot derive the code the store
        checks."""
        verification = delivery.verification
        try:
            code = self._hasher.reveal(verification.id, verification.code, verification.code_length)
        except LookupError as exc:
            raise _Unsendable(str(exc)) from None
        context = bound_terms(payment_of(delivery.options))
        if not self._hasher.matches(verification.id, verification.code, code + context):
            # The key id names a secret this instance does not share (two instances that each
            # generated or were given another secret under one id): the code it would send is
            # not the code the store checks. Sending it would fail the person silently.
            raise _Unsendable(
                f"hmac_key_mismatch: HMAC key {verification.code.key_id!r} here is not the one "
                "the code was sealed with; set the same CLAVE_HMAC_KEYS everywhere"
            )
        return code

    def _message(self, delivery: Delivery, now: float) -> OutgoingMessage:
        """The message to send, rendered with the code in the destination's language."""
        code = self._reveal(delivery)
        verification = delivery.verification
        locale = choose_locale(delivery.locale, delivery.to)
        minutes = max(1, math.ceil((verification.expires_at - now) / 60))
        return OutgoingMessage(
            channel=delivery.channel,
            to=delivery.to,
            message=render(
                delivery.channel,
                locale,
                name=delivery.options.get("friendly_name") or delivery.friendly_name,
                code=code,
                minutes=minutes,
                app_hash=delivery.options.get("app_hash"),
                webotp_domain=delivery.options.get("webotp_domain"),
                payment=payment_of(delivery.options),
                warning=delivery.options.get("share_warning") != "off",
            ),
            verification_id=verification.id,
            attempt_id=delivery.attempt_id,
            locale=locale,
            messaging_service_sid=delivery.options.get("messaging_service_sid"),
        )

    async def _try(self, provider: Provider, outgoing: OutgoingMessage) -> str | _Failure | None:
        """One provider's try: the message id it gave (if any), or why it failed."""
        try:
            async with asyncio.timeout(self._policy.send_timeout):
                with tracing.span(
                    f"send {provider.name}", attributes={"clave.channel": outgoing.channel.value}
                ):
                    return await provider.send(outgoing)
        except DeliveryError as exc:
            return _Failure(f"{provider.name}: {exc}", retryable=not exc.permanent)
        except TimeoutError:
            return _Failure(f"{provider.name}: timed out", retryable=True)
        except Exception as exc:  # a provider bug must not kill the dispatcher
            log.exception("provider %s raised", provider.name)
            return _Failure(f"{provider.name}: {type(exc).__name__}", retryable=True)

    async def _finish_sent(self, delivery: Delivery, provider: str, message_id: str | None) -> None:
        """A provider took the message: record it as sent."""
        queued = next(
            (s.created_at for s in delivery.verification.sends if s.id == delivery.attempt_id),
            None,
        )
        now = self._clock()
        self._telemetry.sent(
            delivery.channel.value, provider, "sent", now - queued if queued else None
        )
        await self._store.finish_delivery(
            delivery,
            status=SendStatus.SENT,
            provider=provider,
            error=None,
            now=self._clock(),
            provider_message_id=message_id,
        )
        log.info(
            "sent verification=%s attempt=%s channel=%s to=%s provider=%s id=%s",
            delivery.verification.id,
            delivery.attempt_id,
            delivery.channel,
            mask(delivery.to),
            provider,
            message_id,
        )

    async def _retry_or_fail(self, delivery: Delivery, failures: list[_Failure]) -> None:
        """Every provider failed: try again later when a retry may pass and tries are left,
        else fail the send for good."""
        # Providers quote the number or address they refused: masked before it is stored or
        # logged.
        error = mask_text("; ".join(f.error for f in failures))[:500]
        if any(f.retryable for f in failures) and delivery.tries < self._policy.max_tries:
            delay = self._policy.backoff(delivery.tries)
            await self._store.retry_delivery(
                delivery, next_attempt_at=self._clock() + delay, error=error
            )
            log.warning(
                "send failed, retry %d in %.1fs: verification=%s attempt=%s: %s",
                delivery.tries,
                delay,
                delivery.verification.id,
                delivery.attempt_id,
                error,
            )
            return
        await self._finish_failed(delivery, error, self._clock())

    async def _finish_failed(self, delivery: Delivery, error: str, now: float) -> None:
        self._telemetry.sent(delivery.channel.value, "none", "failed", None)
        await self._store.finish_delivery(
            delivery, status=SendStatus.FAILED, provider=None, error=error, now=now
        )
        log.error(
            "send failed for good: verification=%s attempt=%s: %s",
            delivery.verification.id,
            delivery.attempt_id,
            error,
        )
