"""Fraud guard for phone channels: geo permissions, blocked prefixes, countries per client IP.

SMS pumping (toll fraud) turns a verification endpoint into a machine that sends paid messages
to numbers an attacker is paid for. The guard refuses sends to countries a tenant does not
serve, to blocked number prefixes, and from a client IP that reaches for more distinct
countries in a day than a person would. In `record_only` mode it logs what it would refuse and
lets the send through, to tune the rules before enforcing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from clave.platform.contacts import mask, region_of
from clave.verify.errors import CountryNotAllowed, DestinationBlocked, RateLimited
from clave.verify.models import EVERY_ACCOUNT, Channel, Tenant
from clave.verify.store.base import SafeList
from clave.verify.store.counters import CounterStore

log = logging.getLogger("clave.verify.fraud")

DAY = 86400.0
REASONS = (
    "country_not_allowed",
    "destination_blocked",
    "too_many_countries_from_ip",
    "country_daily_cap_reached",
)


class GuardMode(StrEnum):
    """Whether the guard refuses or only records."""

    ENFORCE = "enforce"
    RECORD_ONLY = "record_only"


@dataclass(frozen=True, slots=True)
class BlockedPrefix:
    """A number prefix (E.164, with +) refused until `until` (None: for good)."""

    prefix: str
    until: float | None = None


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """The guard's rules."""

    mode: GuardMode = GuardMode.ENFORCE
    blocked: tuple[BlockedPrefix, ...] = ()
    countries_per_ip: int = 3  # distinct destination countries per client IP per day; 0: off
    # Unverified sends per country per day: at least this many, more as real traffic grows.
    country_cap_floor: int = 20  # 0: off
    country_cap_ratio: float = 0.2


class Guard(Protocol):
    """What the verify use cases ask of the fraud guard: a `FraudGuard`, or `NoGuard`."""

    async def screen(
        self, tenant: Tenant, destination: str, channel: Channel, client_ip: str | None
    ) -> None:
        """Raise when the send must be refused."""
        ...

    async def record_send(self, tenant: Tenant, destination: str, channel: Channel) -> None:
        """A send was accepted."""
        ...

    async def record_verified(self, tenant: Tenant, destination: str) -> None:
        """A destination was proven."""
        ...


class NoGuard:
    """The `Guard` of a deployment without a fraud guard: every send passes, nothing counts."""

    async def screen(
        self, tenant: Tenant, destination: str, channel: Channel, client_ip: str | None
    ) -> None:
        """Every send passes."""

    async def record_send(self, tenant: Tenant, destination: str, channel: Channel) -> None:
        """Nothing recorded."""

    async def record_verified(self, tenant: Tenant, destination: str) -> None:
        """Nothing recorded."""


NO_GUARD = NoGuard()


class FraudGuard:
    """Screens a phone send before anything is stored or counted.

    The per-country cap follows Authgear's rule: a country may receive, per day, at most
    max(floor, ratio x the most verifications it had in a day over the last 14 days, ratio x
    its verifications in the last 24 h) sends that nobody verified. A pumping attack sends to
    numbers nobody verifies; real growth raises the cap with it.
    """

    def __init__(
        self,
        counters: CounterStore,
        settings: GuardSettings,
        clock: Callable[[], float],
        safe_list: SafeList | None = None,
    ) -> None:
        self._counters = counters
        self._safe_list = safe_list
        self._settings = settings
        self._clock = clock
        # Daily counts are a heuristic: accumulated per worker and flushed each second, so a
        # create does not pay a write for them; the cap adds this worker's unflushed counts.
        self._unflushed: Counter[tuple[str, int]] = Counter()
        self._flusher: asyncio.Task[None] | None = None

    async def _country_cap(self, tenant: Tenant, country: str, now: float) -> None:
        floor = self._settings.country_cap_floor
        if floor <= 0:
            return
        day = int(now // DAY)
        into_today = (now - day * DAY) / DAY
        # One read for both series, over the 14 days the rule looks at.
        keys = [f"sends:{tenant.id}:{country}", f"verified:{tenant.id}:{country}"]
        sends, verified = await self._counters.daily(keys, day - 13, day)
        for series, key in ((sends, keys[0]), (verified, keys[1])):
            for offset in range(14):
                series[offset] += self._unflushed.get((key, day - 13 + offset), 0)
        # The last 24 h: today, plus the part of yesterday still inside the window.
        sends_24h = sends[-1] + sends[-2] * (1 - into_today)
        verified_24h = verified[-1] + verified[-2] * (1 - into_today)
        ratio = self._settings.country_cap_ratio
        cap = max(floor, ratio * max(verified), ratio * verified_24h)
        if max(0.0, sends_24h - verified_24h) + 1 > cap:
            raise RateLimited(
                "country_daily_cap_reached",
                f"too many unverified sends to {country} today",
                3600,
            )

    async def blocked(self, tenant: Tenant, days: int) -> dict[str, list[int]]:
        """Refusals (or would-be refusals) per reason over the last `days` days, oldest first."""
        today = int(self._clock() // DAY)
        keys = [f"blocked:{tenant.id}:{reason}" for reason in REASONS]
        counts = await self._counters.daily(keys, today - days + 1, today)
        return dict(zip(REASONS, counts, strict=True))

    async def record_send(self, tenant: Tenant, destination: str, channel: Channel) -> None:
        """A phone send was accepted: count it for its country (flushed within a second)."""
        if channel.is_phone and self._settings.country_cap_floor > 0:
            country = region_of(destination) or "ZZ"
            self._unflushed[(f"sends:{tenant.id}:{country}", int(self._clock() // DAY))] += 1

    async def record_verified(self, tenant: Tenant, destination: str) -> None:
        """A phone number was proven: its country's real traffic raises the cap."""
        if "@" not in destination and self._settings.country_cap_floor > 0:
            country = region_of(destination) or "ZZ"
            self._unflushed[(f"verified:{tenant.id}:{country}", int(self._clock() // DAY))] += 1

    async def flush(self) -> None:
        """Write this worker's accumulated daily counts to the shared counters."""
        pending, self._unflushed = self._unflushed, Counter()
        for (key, day), amount in pending.items():
            try:
                await self._counters.add_daily(key, day, amount)
            except Exception:
                self._unflushed[(key, day)] += amount  # kept for the next flush
                raise

    def start(self, interval: float = 1.0) -> None:
        """Flush the daily counts in the background, every `interval` seconds."""

        async def run() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.flush()
                except Exception:
                    log.exception("fraud guard counts not flushed; retrying")

        self._flusher = asyncio.create_task(run(), name="clave-guard-flush")

    async def stop(self) -> None:
        """Stop flushing, after a last flush."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def screen(
        self, tenant: Tenant, destination: str, channel: Channel, client_ip: str | None
    ) -> None:
        """Raise when the send must be refused (unless recording only)."""
        if not channel.is_phone:
            return
        now = self._clock()
        country = region_of(destination) or "ZZ"
        try:
            allowed = tenant.policy.countries
            if allowed and country not in allowed:
                raise CountryNotAllowed(f"sends to {country} are not enabled for this service")
            for rule in self._settings.blocked:
                if destination.startswith(rule.prefix) and (rule.until is None or now < rule.until):
                    raise DestinationBlocked("sends to this number range are blocked")
            if client_ip and self._settings.countries_per_ip > 0:
                day_start = (now // DAY) * DAY
                added = await self._counters.add_distinct(
                    f"countries:{tenant.id}:{client_ip}:{int(now // DAY)}",
                    country,
                    limit=self._settings.countries_per_ip,
                    expires_at=day_start + DAY,
                    now=now,
                )
                if not added:
                    raise RateLimited(
                        "too_many_countries_from_ip",
                        f"at most {self._settings.countries_per_ip} destination countries per "
                        "client IP per day",
                        day_start + DAY - now,
                    )
            await self._country_cap(tenant, country, now)
        except (CountryNotAllowed, DestinationBlocked, RateLimited) as refusal:
            # A number on the safe list (the operator's, or an account's that sees the tenant)
            # is never blocked: asked only now, so a send that passes costs no lookup.
            owners = {EVERY_ACCOUNT, *tenant.accounts}
            if self._safe_list is not None and await self._safe_list.is_safe(owners, destination):
                log.info(
                    "fraud guard: %s passes on the safe list service=%s to=%s",
                    refusal.code,
                    tenant.name,
                    mask(destination),
                )
                return
            # Counted per tenant, reason and day, shared by every worker (`clave fraud stats`).
            await self._counters.add_daily(f"blocked:{tenant.id}:{refusal.code}", int(now // DAY))
            log.warning(
                "fraud guard %s: %s service=%s to=%s country=%s ip=%s",
                "would refuse" if self._settings.mode is GuardMode.RECORD_ONLY else "refused",
                refusal.code,
                tenant.name,
                mask(destination),
                country,
                client_ip or "-",
            )
            if self._settings.mode is GuardMode.ENFORCE:
                raise
