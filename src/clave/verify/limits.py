"""Rate limits: which limits apply to a send or a check, counted on the counters port
(store/counters.py: sliding-window counters on memory, SQLite and Redis).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from clave.verify.errors import InvalidParameter
from clave.verify.service_rate_limits import ServiceRateLimit
from clave.verify.store.counters import CounterStore, Hit, Limit

# The error code of a send over one of its service's own rate limits (Twilio's 60203).
SERVICE_RATE_LIMIT = "service_rate_limit_reached"


# CLAVE_LIMIT_FAILED_TOTP's default.
DEFAULT_FAILED_TOTP = Limit(
    "too_many_failed_totp", 10, 900.0, "failed codes of this factor", strict=True
)


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits in force (a count of 0 turns one off). Every one but the spend cap may be
    set per tenant (models.TENANT_LIMITS names them the same)."""

    sends_per_ip: Limit
    sends_per_service: Limit
    # Per tenant per day: one tenant cannot spend the others' share of the spend cap.
    sends_per_day: Limit
    failed_checks_per_ip: Limit
    # The guess budget of one destination (per tenant), across its verifications.
    failed_checks_per_destination: Limit
    # Across every tenant: the operator's daily ceiling on what clave may spend.
    spend_cap: Limit
    # Failed authenticator-app codes per factor (the guessing bound of TOTP: exact).
    failed_totp: Limit = DEFAULT_FAILED_TOTP


@dataclass(frozen=True, slots=True)
class Reservation:
    """Hits counted before the outcome is known, given back if it does not count (a right
    code; a send the store refused; a check that found nothing to compare at a destination)."""

    hits: tuple[Hit, ...]
    at: float

    def only(self, code: str) -> Reservation:
        """The part of this reservation made against the limit named `code`."""
        return Reservation(tuple(h for h in self.hits if h.limit.code == code), self.at)

    def __add__(self, other: Reservation) -> Reservation:
        return Reservation(self.hits + other.hits, self.at)


class Limiter(Protocol):
    """What the verify use cases ask of the rate limits: a `RateLimiter`, or `NoLimits`."""

    async def send(
        self,
        *,
        tenant_id: str,
        client_ip: str | None,
        destination: str,
        now: float,
        overrides: Sequence[tuple[str, str]] = (),
        buckets: Sequence[tuple[str, Limit]] = (),
    ) -> Reservation:
        """Count a send against every send limit and `buckets` (the service's own, from
        `service_buckets`), all or none (RateLimited when one is full)."""
        ...

    async def reserve_failed_check(
        self,
        *,
        tenant_id: str,
        client_ip: str | None = None,
        destination: str | None = None,
        now: float,
        overrides: Sequence[tuple[str, str]] = (),
    ) -> Reservation:
        """Count a check as failed before its code is compared (RateLimited when spent)."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Give back a reservation: what it was made for did not count."""
        ...

    async def release_guesses(self, reservation: Reservation) -> None:
        """Give back only the destination's part of a failed-check reservation."""
        ...


class NoLimits:
    """The `Limiter` of a deployment without rate limits: everything passes, nothing counts."""

    async def send(
        self,
        *,
        tenant_id: str,
        client_ip: str | None,
        destination: str,
        now: float,
        overrides: Sequence[tuple[str, str]] = (),
        buckets: Sequence[tuple[str, Limit]] = (),
    ) -> Reservation:
        """Nothing counted."""
        return Reservation((), now)

    async def reserve_failed_check(
        self,
        *,
        tenant_id: str,
        client_ip: str | None = None,
        destination: str | None = None,
        now: float,
        overrides: Sequence[tuple[str, str]] = (),
    ) -> Reservation:
        """Nothing counted."""
        return Reservation((), now)

    async def release(self, reservation: Reservation) -> None:
        """Nothing to give back."""

    async def release_guesses(self, reservation: Reservation) -> None:
        """Nothing to give back."""


NO_LIMITS = NoLimits()


class RateLimiter:
    """Applies the limits for sends and checks."""

    def __init__(self, counters: CounterStore, limits: Limits) -> None:
        self._counters = counters
        self._limits = limits

    @property
    def limits(self) -> Limits:
        """The deployment's limits."""
        return self._limits

    def limit(self, name: str, overrides: Sequence[tuple[str, str]] = ()) -> Limit:
        """The deployment's limit `name`, or the tenant's own where it set one."""
        base: Limit = getattr(self._limits, name)
        for key, value in overrides:
            if key == name:
                count, _, seconds = value.partition("/")
                return replace(base, count=int(count), window=float(seconds))
        return base

    def _hits(self, wanted: Sequence[tuple[str, Limit, int]]) -> tuple[Hit, ...]:
        """Hits on the limits that are on, each key namespaced by its limit's code."""
        return tuple(
            Hit(f"{limit.code}:{key}", limit, cost)
            for key, limit, cost in wanted
            if limit.count > 0
        )

    async def _hit(self, hits: Sequence[Hit], now: float) -> None:
        if not hits:
            return
        refused = await self._counters.hit(hits, now)
        if refused is not None:
            limit, wait = refused
            raise limit.refuse(wait)

    async def send(
        self,
        *,
        tenant_id: str,
        client_ip: str | None,
        destination: str,
        now: float,
        overrides: Sequence[tuple[str, str]] = (),
        buckets: Sequence[tuple[str, Limit]] = (),
    ) -> Reservation:
        """Count a send against the client's IP, the tenant (per minute and per day), the
        deployment's spend cap and the service's own `buckets`, all or none, so a send
        refused by one limit spends nothing of the others. A destination whose guess budget
        is spent gets no new code either (its budget is only looked at here, not spent).
        Release the reservation if the send is refused later: a refused send must not use
        up the caps."""
        wanted = [
            (tenant_id, self.limit("sends_per_service", overrides), 1),
            (tenant_id, self.limit("sends_per_day", overrides), 1),
            ("all", self._limits.spend_cap, 1),
            (
                f"{tenant_id}:{destination}",
                self.limit("failed_checks_per_destination", overrides),
                0,
            ),
        ]
        if client_ip:
            per_ip = self.limit("sends_per_ip", overrides)
            wanted.insert(0, (f"{tenant_id}:{client_ip}", per_ip, 1))
        wanted += [(key, limit, 1) for key, limit in buckets]
        hits = self._hits(wanted)
        await self._hit(hits, now)
        return Reservation(tuple(h for h in hits if h.cost), now)

    async def reserve_failed_check(
        self,
        *,
        tenant_id: str,
        client_ip: str | None = None,
        destination: str | None = None,
        now: float,
        overrides: Sequence[tuple[str, str]] = (),
    ) -> Reservation:
        """Count a check as failed before its code is compared, against the client IP's and
        the destination's budgets, all or none. A spent budget refuses the check (the right
        code too); a right code gives the reservation back (`release`), so only failures
        spend. Counting first keeps the bound exact under concurrent guesses."""
        wanted = []
        if client_ip:
            ip_limit = self.limit("failed_checks_per_ip", overrides)
            wanted.append((f"{tenant_id}:{client_ip}", ip_limit, 1))
        if destination:
            budget = self.limit("failed_checks_per_destination", overrides)
            wanted.append((f"{tenant_id}:{destination}", budget, 1))
        hits = self._hits(wanted)
        await self._hit(hits, now)
        return Reservation(hits, now)

    async def release(self, reservation: Reservation) -> None:
        """Give back a reservation: the check it was made for did not fail."""
        if reservation.hits:
            await self._counters.release(reservation.hits, reservation.at)

    async def release_guesses(self, reservation: Reservation) -> None:
        """Give back what a failed-check reservation counted against the destination's guess
        budget, and only that (a check that found nothing to compare: the IP's hit stays)."""
        await self.release(reservation.only(self._limits.failed_checks_per_destination.code))


def service_buckets(
    tenant_id: str, rate_limits: Sequence[ServiceRateLimit], named: Sequence[tuple[str, str]]
) -> list[tuple[str, Limit]]:
    """The counters a send counts against for the service rate limits it names, with each
    one's value: (key, limit) per bucket. A name the service has no rate limit for is an
    InvalidParameter (a typo would otherwise turn a protection off without a word).

    Values are an end user's id, IP or session: the keys hold their SHA-256, not the value.
    Buckets are exact over any span of their interval (strict), as a `Max` of 1 per 30 s
    promises one send, not two.
    """
    by_name = {rule.unique_name: rule for rule in rate_limits}
    found = []
    for name, value in named:
        rule = by_name.get(name)
        if rule is None:
            raise InvalidParameter(f"Invalid parameter: RateLimits (no rate limit named {name!r})")
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        for bucket in rule.buckets:
            limit = Limit(
                SERVICE_RATE_LIMIT,
                bucket.max,
                float(bucket.interval),
                f"rate limit {name}",
                strict=True,
            )
            found.append((f"{tenant_id}:{bucket.sid}:{digest}", limit))
    return found
