"""The attempts log: every message a verification sent, whether its verification was approved
(converted), filtered and summed for conversion and delivery reporting (Twilio's Verification
Attempts, and GET /api/attempts).

The store keeps the sends (its AttemptLog port answers an AttemptQuery); verify/reporting.py
reads them for a caller, who sees its own tenants' sends only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from clave.platform.contacts import region_of
from clave.verify.models import Channel, SendStatus

# The most sends one page of the log holds.
MAX_PAGE = 1000


def log_time(value: str) -> float | None:
    """A time filter of the log: ISO 8601 with a time zone (a naive time would be a guess);
    None when `value` is not one."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def seeded_attempt_sid(seed: bytes, number: int) -> str:
    """The sid of a verification's `number`-th send (from 0) stored before sends had their
    own: `VL` and 32 hex digits from the verification's secret seed (a counter would tell the
    send volume), what the Twilio API showed for it then and the migration gives it."""
    digest = hashlib.sha256(b"clave attempt sid\0" + seed + b"\0" + str(number).encode())
    return "VL" + digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AttemptQuery:
    """Which sends: always of some tenants, then each filter that is set."""

    tenant_ids: frozenset[str]
    created_after: float | None = None
    created_before: float | None = None
    to: str | None = None
    # The start of the destination (a phone number's country code and area: "+1415").
    destination_prefix: str | None = None
    # ISO 3166 alpha-2 of the destination phone number.
    country: str | None = None
    channel: Channel | None = None
    verification_id: str | None = None
    # True: only sends whose verification was approved; False: only the others.
    converted: bool | None = None
    sid: str | None = None

    def matches(self, record: AttemptRecord) -> bool:
        """Whether `record` passes every filter that is set (the backends that filter in
        Python use this; SQLite says the same in SQL: store/sqlite_attempts.py)."""
        return (
            record.tenant_id in self.tenant_ids
            and (self.created_after is None or record.created_at > self.created_after)
            and (self.created_before is None or record.created_at < self.created_before)
            and self.to in (None, record.to)
            and record.to.startswith(self.destination_prefix or "")
            and self.channel in (None, record.channel)
            and self.verification_id in (None, record.verification_id)
            and self.converted in (None, record.converted)
            and self.sid in (None, record.sid)
            and (self.country is None or region_of(record.to) == self.country)
        )


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One send, as the log shows it."""

    sid: str
    tenant_id: str
    verification_id: str
    to: str
    channel: Channel
    status: SendStatus
    created_at: float
    updated_at: float
    converted: bool


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    """How many sends a query finds, and how many of them led to an approval."""

    total: int
    converted: int

    @property
    def unconverted(self) -> int:
        """Sends whose verification was never approved."""
        return self.total - self.converted

    @property
    def conversion_rate(self) -> float:
        """Converted sends as a percentage of all (0 when there are none)."""
        return 100.0 * self.converted / self.total if self.total else 0.0
