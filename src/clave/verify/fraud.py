"""Fraud guard for phone channels: geo permissions, blocked prefixes, countries per client IP.

SMS pumping (toll fraud) turns a verification endpoint into a machine that sends paid messages
to numbers an attacker is paid for. The guard refuses sends to countries a service does not
serve, to blocked number prefixes, and from a client IP that reaches for more distinct
countries in a day than a person would. In `record_only` mode it logs what it would refuse and
lets the send through, to tune the rules before enforcing them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from clave.platform.contacts import mask, region_of
from clave.verify.errors import CountryNotAllowed, DestinationBlocked
from clave.verify.limits import CounterStore, RateLimited
from clave.verify.models import Channel, Service

log = logging.getLogger("clave.verify.fraud")

DAY = 86400.0


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


class FraudGuard:
    """Screens a phone send before anything is stored or counted."""

    def __init__(
        self, counters: CounterStore, settings: GuardSettings, clock: Callable[[], float]
    ) -> None:
        self._counters = counters
        self._settings = settings
        self._clock = clock

    async def screen(
        self, service: Service, destination: str, channel: Channel, client_ip: str | None
    ) -> None:
        """Raise when the send must be refused (unless recording only)."""
        if not channel.is_phone:
            return
        now = self._clock()
        country = region_of(destination) or "ZZ"
        try:
            allowed = service.policy.countries
            if allowed and country not in allowed:
                raise CountryNotAllowed(f"sends to {country} are not enabled for this service")
            for rule in self._settings.blocked:
                if destination.startswith(rule.prefix) and (rule.until is None or now < rule.until):
                    raise DestinationBlocked("sends to this number range are blocked")
            if client_ip and self._settings.countries_per_ip > 0:
                day_start = (now // DAY) * DAY
                added = await self._counters.add_distinct(
                    f"countries:{service.id}:{client_ip}:{int(now // DAY)}",
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
        except (CountryNotAllowed, DestinationBlocked, RateLimited) as refusal:
            log.warning(
                "fraud guard %s: %s service=%s to=%s country=%s ip=%s",
                "would refuse" if self._settings.mode is GuardMode.RECORD_ONLY else "refused",
                refusal.code,
                service.name,
                mask(destination),
                country,
                client_ip or "-",
            )
            if self._settings.mode is GuardMode.ENFORCE:
                raise
