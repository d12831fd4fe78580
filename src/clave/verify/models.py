"""Plain data of the verify domain: no web, database or provider imports."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from clave.platform.text import is_single_line
from clave.verify.service_rate_limits import ServiceRateLimit, rate_limit_problems
from clave.verify.totp import DEFAULT_TOTP, TotpSettings


class Channel(StrEnum):
    """How a code reaches a person."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    CALL = "call"
    EMAIL = "email"

    @property
    def is_phone(self) -> bool:
        """Whether the destination is a phone number."""
        return self is not Channel.EMAIL


class Status(StrEnum):
    """Life cycle of a verification; only `pending` ever changes."""

    PENDING = "pending"
    APPROVED = "approved"
    CANCELED = "canceled"
    EXPIRED = "expired"
    MAX_ATTEMPTS_REACHED = "max_attempts_reached"
    FAILED = "failed"


class SendStatus(StrEnum):
    """Life cycle of one send attempt: queued, then sent (a provider took it), then what the
    provider reports back: delivered, or undelivered/failed."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    # The verification was closed (approved, canceled, expired) before the message went out.
    SKIPPED = "skipped"


ALL_CHANNELS = frozenset(Channel)
# Limits a tenant may set for itself (the daily spend cap stays deployment-wide).
TENANT_LIMITS = (
    "sends_per_ip",
    "sends_per_service",
    "sends_per_day",
    "failed_checks_per_ip",
    "failed_checks_per_destination",
)
# The guess bound: the failed checks a destination may spend per day are at most this share
# of the code space, so a day of guessing finds a code with probability at most 1/10,000.
MAX_DAILY_GUESS_SHARE = 10**-4
DAY = 86400.0
# CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION's default: 15 per rolling 24 h.
DEFAULT_GUESS_BUDGET = (15, DAY)
# custom_code: the caller may supply the code; psd2: every verification names an amount and a
# payee that a check must repeat; no_share_warning: messages leave out "do not share this code"
# (which they carry by default; Twilio's DoNotShareWarningEnabled=false); skip_sms_to_landlines:
# an SMS to a fixed line is refused instead of sent. do_not_share_warning is what an earlier
# release stored for DoNotShareWarningEnabled=true (the warning was always sent): still read.
POLICY_FLAGS = frozenset(
    {"custom_code", "psd2", "no_share_warning", "do_not_share_warning", "skip_sms_to_landlines"}
)
# Codes are 4 to 10 digits, whoever sets the length (a policy, a request, a custom code):
# fewer would be guessed, more are not typed. Every adapter takes its bounds from here.
MIN_CODE_LENGTH = 4
# A messaging configuration for every country that has none of its own (Twilio's `all`).
ALL_COUNTRIES = "all"
MAX_CODE_LENGTH = 10
CODE_DIGITS = f"{MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} digits"
_CODE = re.compile(rf"[0-9]{{{MIN_CODE_LENGTH},{MAX_CODE_LENGTH}}}")


def is_code(text: str) -> bool:
    """Whether `text` has the shape of a code: 4 to 10 ASCII digits."""
    return _CODE.fullmatch(text) is not None


# psd2: the most characters of the amount and the payee a message shows and a code binds.
MAX_AMOUNT_LENGTH = 32
MAX_PAYEE_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Policy:
    """A tenant's rules for its verifications."""

    friendly_name: str = "clave"
    code_length: int = 6
    code_ttl: int = 600
    max_checks: int = 5
    max_sends: int = 5
    send_window: int = 600
    channels: frozenset[Channel] = ALL_CHANNELS
    # Geo permissions: ISO country codes phone sends may go to; empty allows every country.
    countries: frozenset[str] = frozenset()
    # Rate limits this tenant sets for itself, over the deployment's: name -> "count/seconds".
    limits: tuple[tuple[str, str], ...] = ()
    # Optional behaviours, by name (POLICY_FLAGS): the Twilio-compatible API's tenant options.
    flags: frozenset[str] = frozenset()
    # Per destination country, the Twilio Messaging Service an SMS goes out through (Twilio's
    # Messaging Configurations): (country, MG sid, created_at, updated_at).
    messaging: tuple[tuple[str, str, float, float], ...] = ()
    # The service's own rate limits (Twilio's Service Rate Limits), applied to the sends that
    # name a value for them.
    rate_limits: tuple[ServiceRateLimit, ...] = ()
    # New authenticator-app factors' parameters (Twilio's Totp.* service settings).
    totp: TotpSettings = DEFAULT_TOTP

    def messaging_service(self, country: str | None) -> str | None:
        """The Messaging Service for SMS to `country`: its own configuration, else the one
        for every country (`all`), if any."""
        by_country = {c: sid for c, sid, _, _ in self.messaging}
        return by_country.get(country or "") or by_country.get(ALL_COUNTRIES)

    def problems(self) -> list[str]:
        """Human-readable reasons this policy is invalid; empty when valid."""
        found = []
        if not MIN_CODE_LENGTH <= self.code_length <= MAX_CODE_LENGTH:
            found.append(f"code_length must be between {MIN_CODE_LENGTH} and {MAX_CODE_LENGTH}")
        if not 30 <= self.code_ttl <= 86400:
            found.append("code_ttl must be between 30 and 86400 seconds")
        if not 1 <= self.max_checks <= 20:
            found.append("max_checks must be between 1 and 20")
        if not 1 <= self.max_sends <= 100:
            found.append("max_sends must be between 1 and 100")
        if not 1 <= self.send_window <= 86400:
            found.append("send_window must be between 1 and 86400 seconds")
        if not self.channels:
            found.append("channels must name at least one channel")
        for country, sid, _, _ in self.messaging:
            if not _COUNTRY.fullmatch(country) and country != ALL_COUNTRIES:
                found.append(f"messaging country {country!r} is not an ISO 3166 alpha-2 code")
            if not _MESSAGING_SERVICE.fullmatch(sid):
                found.append(f"{sid!r} is not a Messaging Service sid (MG and 32 hex digits)")
        if len({c for c, _, _, _ in self.messaging}) != len(self.messaging):
            found.append("one messaging configuration per country")
        for name, value in self.limits:
            count, sep, seconds = value.partition("/")
            if name not in TENANT_LIMITS:
                found.append(f"limit {name!r} is not one of {', '.join(TENANT_LIMITS)}")
            elif not (
                sep
                and count.isdigit()
                and seconds.replace(".", "", 1).isdigit()
                and float(seconds) > 0
            ):
                found.append(f"limit {name} must look like 20/3600 (count/seconds)")
        found += rate_limit_problems(self.rate_limits)
        found += self.totp.problems()
        if self.flags - POLICY_FLAGS:
            found.append(f"unknown flags {sorted(self.flags - POLICY_FLAGS)}")
        if any(len(c) != 2 or not c.isalpha() or not c.isupper() for c in self.countries):
            found.append("countries must be ISO 3166 alpha-2 codes such as US, ES")
        if not valid_friendly_name(self.friendly_name):
            found.append(FRIENDLY_NAME_RULE)
        return found

    def guess_budget(self, default: tuple[int, float]) -> tuple[int, float]:
        """(count, seconds) of failed checks a destination may spend: the tenant's own
        `failed_checks_per_destination`, else the deployment's `default`."""
        for name, value in self.limits:
            if name == "failed_checks_per_destination":
                count, _, seconds = value.partition("/")
                return int(count), float(seconds)
        return default

    def guess_problem(self, default: tuple[int, float]) -> str | None:
        """Why this policy breaks the guess bound (a destination's daily failed checks above
        1/10,000 of the code space), naming the numbers; None when it holds."""
        count, seconds = self.guess_budget(default)
        space = 10**self.code_length
        allowed = space * MAX_DAILY_GUESS_SHARE
        if count <= 0:
            return (
                "failed_checks_per_destination is off, so guesses at a destination are "
                f"unbounded; at most {allowed:g} a day are allowed on {self.code_length}-digit "
                "codes"
            )
        # A window longer than a day can be spent within one day.
        per_day = count * DAY / min(seconds, DAY)
        if per_day > allowed:
            return (
                f"{per_day:g} failed checks per destination a day (failed_checks_per_destination "
                f"{count}/{seconds:g}) exceed 1/10,000 of the {space:,} {self.code_length}-digit "
                f"codes, {allowed:g} a day: lengthen the codes or lower the limit"
            )
        return None


FRIENDLY_NAME_RULE = "a friendly name is 1 to 64 printable characters on one line"


def valid_friendly_name(name: str) -> bool:
    """A name shown in messages: 1-64 characters, no control or format characters (a name with
    a line break would forge a line of the SMS it appears in)."""
    return bool(name.strip()) and len(name) <= 64 and is_single_line(name)


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant: every verification and API key belongs to one."""

    id: str
    name: str
    policy: Policy
    created_at: float
    # The Twilio-compatible accounts (AC... ids) that may see and manage it through /v2: the one
    # that created it, and those an operator granted it to. Empty: no account may.
    accounts: frozenset[str] = frozenset()
    # When its policy last changed (None: never since it was created).
    updated_at: float | None = None


# The owner of a safe-list entry an operator made (`clave fraud safelist`): every tenant's.
EVERY_ACCOUNT = "*"


@dataclass(frozen=True, slots=True)
class SafeNumber:
    """A phone number the fraud guard and geo permissions never block (Twilio's Safe List)."""

    sid: str  # GN and 32 hex digits
    # The /v2 account whose services it covers, or EVERY_ACCOUNT (an operator's: every tenant).
    owner: str
    number: str
    created_at: float


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: only its SHA-256, never the key itself."""

    id: str
    tenant_id: str
    key_hash: bytes
    created_at: float
    name: str = ""
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None

    def valid_at(self, now: float) -> bool:
        """Neither revoked nor expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class SendAttempt:
    """One message handed to delivery for a verification."""

    id: int
    channel: Channel
    status: SendStatus
    created_at: float
    updated_at: float
    provider: str | None = None
    error: str | None = None
    provider_message_id: str | None = None
    # PSD2: the (amount, payee) the message showed and the code is bound to.
    payment: tuple[str, str] | None = None
    # `VL` and 32 random hex digits (None for a send stored before sends had one).
    sid: str | None = None


def payment_of(options: Mapping[str, str] | None) -> tuple[str, str] | None:
    """The (amount, payee) a send's options carry, if any."""
    amount, payee = (options or {}).get("amount"), (options or {}).get("payee")
    return (amount, payee) if amount and payee else None


@dataclass(frozen=True, slots=True)
class SealedCode:
    """What is stored of a code: never the code, only values that need the server key."""

    key_id: str
    # Random bytes from `secrets`; the code is derived from them under the server key, so a
    # resend or a delayed outbox delivery can render the same code without storing it.
    seed: bytes
    # HMAC-SHA256 of the code under `key_id`, compared in constant time at check.
    digest: bytes


@dataclass(frozen=True, slots=True)
class Verification:
    """A request to prove control of a destination (`to`) with a one-time code."""

    id: str
    tenant_id: str
    to: str
    channel: Channel
    locale: str | None
    code_length: int
    code: SealedCode
    status: Status
    check_attempts: int
    max_checks: int
    created_at: float
    updated_at: float
    expires_at: float
    sends: tuple[SendAttempt, ...] = field(default=())
    # A keyed digest of everything the code means (length, custom code, amount and payee,
    # friendly name): a send whose binding differs gets a new verification, never this code.
    binding: bytes = b""

    def effective_status(self, now: float) -> Status:
        """The status as a reader should see it: a pending one past its expiry is expired."""
        if self.status is Status.PENDING and now >= self.expires_at:
            return Status.EXPIRED
        return self.status

    @property
    def check_attempts_left(self) -> int:
        """Checks still allowed before the verification locks."""
        return max(0, self.max_checks - self.check_attempts)


@dataclass(frozen=True, slots=True)
class StartOutcome:
    """What `VerificationStore.start` did."""

    verification: Verification
    created: bool
    # Sends to this destination inside the window, the new one included when it was accepted.
    sends_in_window: int
    # When the send was refused for the window limit: the time the oldest send leaves the window.
    limited_until: float | None = None


class CheckGate(StrEnum):
    """Result of counting a check attempt, before any code is compared."""

    COUNTED = "counted"
    NOT_FOUND = "not_found"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class Event:
    """A verification reached a final status; the operator is told by a signed webhook."""

    id: int | str
    type: str
    # The verification's id; for a factor's events (factor.*, challenge.*), the factor's.
    verification_id: str
    tenant_id: str
    occurred_at: float
    tries: int


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """What `VerificationStore.count_check` did."""

    gate: CheckGate
    verification: Verification | None = None
    # Sends to the verification's destination inside the window (for `sends_left`).
    sends_in_window: int = 0


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox entry claimed for delivery, with what is needed to render it."""

    outbox_id: int | str  # a row id (SQLite) or a stream entry id (Redis)
    attempt_id: int
    tries: int
    channel: Channel
    to: str
    locale: str | None
    verification: Verification
    friendly_name: str
    # Per-send message options: Android SMS Retriever `app_hash`, WebOTP `webotp_domain`.
    options: dict[str, str] = field(default_factory=dict)


def new_id(prefix: str) -> str:
    """A random identifier: a two-letter prefix and 32 hex digits (`VE...`, `VA...`)."""
    return prefix + secrets.token_hex(16)


_VERIFICATION_ID = re.compile(r"VE[0-9a-f]{32}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_MESSAGING_SERVICE = re.compile(r"MG[0-9a-fA-F]{32}")


def is_verification_id(text: str) -> bool:
    """Whether `text` has the shape of a verification id (`new_id("VE")`): anything else can
    be answered "not found" without asking a store (and never reaches one as a key)."""
    return _VERIFICATION_ID.fullmatch(text) is not None


# The state machine of a verification, as pure functions. The memory and SQLite stores apply
# them inside their atomic operations; the Redis store restates them in Lua (store/lua/*.lua,
# each script naming the function it mirrors); tests/contract/test_transitions.py walks every
# transition on every backend against these functions, so the three cannot drift.

# Statuses a provider's report may move an attempt to, from each status (never backwards).
REPORTABLE: Mapping[SendStatus, frozenset[SendStatus]] = {
    SendStatus.SENT: frozenset({SendStatus.DELIVERED, SendStatus.UNDELIVERED, SendStatus.FAILED}),
    SendStatus.DELIVERED: frozenset(),
    SendStatus.UNDELIVERED: frozenset({SendStatus.DELIVERED}),
    SendStatus.FAILED: frozenset({SendStatus.DELIVERED}),
}
UNSUCCESSFUL = frozenset({SendStatus.FAILED, SendStatus.UNDELIVERED})
FINAL = frozenset(Status) - {Status.PENDING}


def event_type(status: Status) -> str | None:
    """The event a verification raises on reaching `status`: every final status raises one
    (`verification.<status>`), for the operator's webhook; pending raises none."""
    return f"verification.{status.value}" if status in FINAL else None


def can_close(current: Status, new: Status) -> bool:
    """Only a pending verification changes, and only to a final status."""
    return current is Status.PENDING and new in FINAL


def is_stale(verification: Verification, now: float) -> bool:
    """Pending past its expiry: the next operation that meets it marks it expired first."""
    return verification.status is Status.PENDING and now >= verification.expires_at


@dataclass(frozen=True, slots=True)
class StartDecision:
    """What a start does with the pending verification for its destination, if any."""

    # The status the existing verification is closed with first: expired when stale, canceled
    # when the candidate's binding differs (only when the send goes ahead).
    close_existing: Status | None
    # The send is refused for the destination's window; nothing else is written.
    limited: bool
    # The existing verification is sent again (same code, same expiry).
    reuse: bool


def decide_start(
    existing: Verification | None,
    candidate: Verification,
    *,
    sends_in_window: int,
    max_sends: int,
    now: float,
) -> StartDecision:
    """The start rule: a stale verification expires; a full window refuses the send; a changed
    binding cancels the old code (no message ever shows terms its code is not bound to);
    otherwise the pending verification is reused, or the candidate inserted."""
    if existing is not None and is_stale(existing, now):
        return StartDecision(Status.EXPIRED, sends_in_window >= max_sends, reuse=False)
    if sends_in_window >= max_sends:
        return StartDecision(None, limited=True, reuse=False)
    if existing is not None and existing.binding != candidate.binding:
        return StartDecision(Status.CANCELED, limited=False, reuse=False)
    return StartDecision(None, limited=False, reuse=existing is not None)


def decide_check(verification: Verification | None, now: float) -> tuple[CheckGate, Status | None]:
    """The gate a check meets before any code is compared, and the status the verification is
    closed with on the way (expired when stale). Only COUNTED spends an attempt."""
    if verification is None:
        return CheckGate.NOT_FOUND, None
    if verification.status is Status.MAX_ATTEMPTS_REACHED:
        return CheckGate.LOCKED, None
    if verification.status is not Status.PENDING:
        return CheckGate.NOT_FOUND, None
    if is_stale(verification, now):
        return CheckGate.NOT_FOUND, Status.EXPIRED
    if verification.check_attempts >= verification.max_checks:
        return CheckGate.LOCKED, None
    return CheckGate.COUNTED, None


def status_after_check(counted: Verification, *, matched: bool) -> Status | None:
    """Where a counted check takes a verification: approved on the right code; locked when a
    wrong code used the last attempt; otherwise it stays pending (None)."""
    if matched:
        return Status.APPROVED
    return Status.MAX_ATTEMPTS_REACHED if counted.check_attempts_left == 0 else None


def reportable(current: SendStatus, reported: SendStatus) -> bool:
    """Whether a provider's report may move an attempt from `current` (never backwards:
    reports arrive out of order)."""
    return reported in REPORTABLE.get(current, frozenset())


def all_sends_failed(statuses: Iterable[SendStatus]) -> bool:
    """A pending verification fails when every send attempt failed or went undelivered."""
    return all(status in UNSUCCESSFUL for status in statuses)
