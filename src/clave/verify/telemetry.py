"""What verify tells the operator's metrics: the port its components report to, a null one,
and the one that counts into Prometheus (platform/metrics.py).

Labels are names from small sets (a service's name, a channel, a provider, an outcome, a
reason): never a destination, a code or a key.
"""

from __future__ import annotations

from typing import Any, Protocol

from clave.platform.metrics import Metrics


class VerifyTelemetry(Protocol):
    """What the verify components report."""

    def started(self, service: str, channel: str) -> None:
        """A verification started (a new code)."""
        ...

    def checked(self, service: str, outcome: str) -> None:
        """A check: approved, pending, max_attempts, not_found or refused."""
        ...

    def refused(self, reason: str) -> None:
        """A send or a check refused by a rate limit or a fraud rule (its error code)."""
        ...

    def sent(self, channel: str, provider: str, status: str, seconds: float | None) -> None:
        """A send's outcome (sent, delivered, undelivered, failed); with `seconds` from queued
        to accepted by the provider."""
        ...

    def outbox(self, pending: int, oldest_age: float) -> None:
        """The outbox as a dispatcher saw it."""
        ...

    def event_failed(self) -> None:
        """An event webhook delivery failed."""
        ...


class NoTelemetry:
    """Reports nowhere (tests, tools)."""

    def started(self, service: str, channel: str) -> None:
        """Nothing."""

    def checked(self, service: str, outcome: str) -> None:
        """Nothing."""

    def refused(self, reason: str) -> None:
        """Nothing."""

    def sent(self, channel: str, provider: str, status: str, seconds: float | None) -> None:
        """Nothing."""

    def outbox(self, pending: int, oldest_age: float) -> None:
        """Nothing."""

    def event_failed(self) -> None:
        """Nothing."""


NO_TELEMETRY = NoTelemetry()


class PrometheusTelemetry:
    """Counts into the process's Prometheus instruments."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        # The labelled counters of the hot paths, by labels (labels() costs more than inc()).
        self._started: dict[tuple[str, str], Any] = {}
        self._checked: dict[tuple[str, str], Any] = {}

    def started(self, service: str, channel: str) -> None:
        """clave_verifications_started_total."""
        _child(self._started, self._m.verifications_started, (service, channel)).inc()

    def checked(self, service: str, outcome: str) -> None:
        """clave_checks_total."""
        _child(self._checked, self._m.checks, (service, outcome)).inc()

    def refused(self, reason: str) -> None:
        """clave_refusals_total."""
        self._m.refusals.labels(reason).inc()

    def sent(self, channel: str, provider: str, status: str, seconds: float | None) -> None:
        """clave_sends_total, and clave_delivery_seconds when the provider took it."""
        self._m.sends.labels(channel, provider, status).inc()
        if seconds is not None:
            self._m.delivery.labels(channel, provider).observe(max(0.0, seconds))

    def outbox(self, pending: int, oldest_age: float) -> None:
        """clave_outbox_pending and clave_outbox_oldest_age_seconds."""
        self._m.outbox_pending.set(pending)
        self._m.outbox_oldest_age.set(max(0.0, oldest_age))

    def event_failed(self) -> None:
        """clave_events_failed_total."""
        self._m.events_failed.inc()


def _child(cache: dict[tuple[str, str], Any], metric: Any, labels: tuple[str, str]) -> Any:
    """`metric.labels(*labels)`, kept in `cache` (bounded: services come and go)."""
    found = cache.get(labels)
    if found is None:
        if len(cache) > 10_000:
            cache.clear()
        found = cache[labels] = metric.labels(*labels)
    return found
