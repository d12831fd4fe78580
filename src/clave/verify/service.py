"""Use cases of the verify domain: start a verification, check a code, read, cancel."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from clave.platform.client_ip import ip_bucket
from clave.platform.contacts import mask_text
from clave.platform.text import is_single_line
from clave.verify.codes import CodeHasher, bound_terms
from clave.verify.delivery.base import ProviderRouter
from clave.verify.destinations import guess_key, mask, normalize, normalize_any
from clave.verify.errors import (
    ChannelNotAllowed,
    ChannelUnavailable,
    InvalidParameter,
    MaxChecksReached,
    MaxSendsReached,
    UnknownMessage,
    VerificationNotFound,
    VerificationNotPending,
)
from clave.verify.fraud import FraudGuard
from clave.verify.limits import RateLimiter, Reservation
from clave.verify.models import (
    FRIENDLY_NAME_RULE,
    Channel,
    CheckGate,
    Policy,
    SendStatus,
    Service,
    Status,
    Verification,
    is_verification_id,
    new_id,
    valid_friendly_name,
)
from clave.verify.store.base import VerificationStore

log = logging.getLogger("clave.verify")

_CODE = re.compile(r"[0-9]{4,10}")
_APP_HASH = re.compile(r"[A-Za-z0-9+/]{11}")
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_LOCALE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}")


@dataclass(frozen=True, slots=True)
class VerificationView:
    """A verification as the API shows it, with the counters a client needs."""

    verification: Verification
    status: Status
    sends_left: int

    @property
    def valid(self) -> bool:
        """Whether the code was proven (the verification is approved)."""
        return self.status is Status.APPROVED

    @property
    def check_attempts_left(self) -> int:
        """Checks still allowed."""
        return self.verification.check_attempts_left


class VerifyService:
    """Verifications for tenants: codes sealed by `hasher`, sends queued in the store's outbox."""

    def __init__(
        self,
        store: VerificationStore,
        hasher: CodeHasher,
        providers: ProviderRouter,
        clock: Callable[[], float],
        on_queued: Callable[[], None] = lambda: None,
        limiter: RateLimiter | None = None,
        guard: FraudGuard | None = None,
        test_destinations: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self._test_destinations = dict(test_destinations or {})
        self._limiter = limiter
        self._guard = guard
        self._store = store
        self._hasher = hasher
        self._providers = providers
        self._clock = clock
        self._on_queued = on_queued

    async def start_verification(
        self,
        service: Service,
        *,
        to: str,
        channel: Channel,
        locale: str | None = None,
        code_length: int | None = None,
        client_ip: str | None = None,
        app_hash: str | None = None,
        webotp_domain: str | None = None,
        custom_code: str | None = None,
        payment: tuple[str, str] | None = None,
        friendly_name: str | None = None,
    ) -> tuple[VerificationView, bool]:
        """Send a code to `to`, or re-send the pending one; returns (view, created).

        `custom_code` (services with the custom_code flag) is the code to send instead of a
        random one; `payment` (amount, payee) is required by psd2 services and bound to the
        code; `friendly_name` replaces the service's name in this verification's messages.
        A pending verification is re-sent only when the code would mean the same (same length,
        custom code, payment and name); otherwise it is canceled and a new one starts.
        """
        policy = service.policy
        if channel not in policy.channels:
            raise ChannelNotAllowed(f"channel {channel} is not allowed for this service")
        destination = normalize(to, channel)
        test_code = self._test_destinations.get((service.name, destination))
        if test_code is None and not self._providers.available(channel):
            raise ChannelUnavailable(f"no delivery provider is configured for channel {channel}")
        length = _code_length(policy, code_length, custom_code)
        payment = self._payment(service, payment)
        options = _send_options(locale, app_hash, webotp_domain, payment, friendly_name)
        # The name the message shows is fixed with the send (a later rename of the service
        # neither changes a queued message nor re-sends a code under another name).
        options["friendly_name"] = name = friendly_name or policy.friendly_name
        ip = _counted_ip(client_ip)
        now = self._clock()
        # Screened first: a refused send spends no rate-limit budget. A test destination is
        # never sent anything, so it costs nothing and is neither screened nor counted.
        counted = None
        if test_code is None:
            if self._guard is not None:
                await self._guard.screen(service, destination, channel, ip)
            if self._limiter is not None:
                counted = await self._limiter.send(
                    service_id=service.id,
                    client_ip=ip,
                    destination=guess_key(destination),
                    now=now,
                    overrides=policy.limits,
                )
        vid = new_id("VE")
        context = bound_terms(payment)
        candidate = Verification(
            id=vid,
            service_id=service.id,
            to=destination,
            channel=channel,
            locale=locale,
            code_length=len(test_code) if test_code else length,
            # A test destination (for client apps' own tests) gets its fixed code and is never
            # sent anything; a custom code is sealed so it can still be sent; real destinations
            # get a fresh random one.
            code=self._hasher.seal(vid, test_code, context)
            if test_code
            else self._hasher.seal_deliverable(vid, custom_code, context)
            if custom_code
            else self._hasher.issue(vid, length, context),
            status=Status.PENDING,
            check_attempts=0,
            max_checks=policy.max_checks,
            created_at=now,
            updated_at=now,
            expires_at=now + policy.code_ttl,
            binding=self._hasher.binding(
                str(length),
                test_code or "",
                custom_code or "",
                *(payment or ("", "")),
                name,
            ),
        )
        outcome = await self._store.start(
            candidate,
            channel=channel,
            locale=locale,
            now=now,
            window=policy.send_window,
            max_sends=policy.max_sends,
            deliver=test_code is None,
            options=options,
        )
        if outcome.limited_until is not None:
            if counted is not None and self._limiter is not None:
                await self._limiter.release(counted)  # nothing was sent: the caps are not spent
            log.info("send refused, window full: service=%s to=%s", service.name, mask(destination))
            raise MaxSendsReached(
                f"at most {policy.max_sends} sends to this destination per "
                f"{policy.send_window} seconds",
                retry_after=outcome.limited_until - now,
            )
        if test_code is None:
            self._on_queued()
            if self._guard is not None:
                await self._guard.record_send(service, destination, channel)
        v = outcome.verification
        log.info(
            "%s verification=%s service=%s channel=%s to=%s",
            "created" if outcome.created else "resent",
            v.id,
            service.name,
            channel,
            mask(v.to),
        )
        view = VerificationView(
            v, v.effective_status(now), max(0, policy.max_sends - outcome.sends_in_window)
        )
        return view, outcome.created

    async def check_code(
        self,
        service: Service,
        *,
        code: str,
        verification_id: str | None = None,
        to: str | None = None,
        client_ip: str | None = None,
        payment: tuple[str, str] | None = None,
    ) -> VerificationView:
        """Check `code` for a verification (by id or by destination); psd2 services need the
        same `payment` (amount, payee) the verification was started with.

        The attempt is counted before the comparison, on the verification and as a failed
        check against the client IP's and the destination's budgets (given back if the code
        is right); a right code approves through a conditional write, so concurrent checks
        approve at most once.
        """
        if (verification_id is None) == (to is None):
            raise InvalidParameter("give exactly one of 'id' and 'to'")
        if not _CODE.fullmatch(code):
            raise InvalidParameter("code must be 4 to 10 digits")
        if verification_id is not None and not is_verification_id(verification_id):
            raise VerificationNotFound("no pending verification found")
        destination = normalize_any(to) if to is not None else None
        context = bound_terms(self._payment(service, payment))
        now = self._clock()
        # By destination, both budgets in one reservation; by id, the destination is known
        # once the verification is found.
        held = await self._reserve(
            service,
            now,
            client_ip=_counted_ip(client_ip),
            destination=guess_key(destination) if destination else None,
        )
        try:
            counted, sends_left = await self._count(service, now, verification_id, destination)
        except (VerificationNotFound, MaxChecksReached):
            # Nothing was compared: the destination's budget is not spent (else anyone could
            # lock a number out by checking codes it was never sent). The IP's stays spent.
            if held is not None and self._limiter is not None:
                code = self._limiter.limits.failed_checks_per_destination.code
                await self._limiter.release(held.only(code))
            raise
        if destination is None:
            by_id = await self._reserve(service, now, destination=guess_key(counted.to))
            held = by_id if held is None or by_id is None else held + by_id
        if not self._hasher.matches(counted.id, counted.code, code + context):
            return await self._wrong(service, counted, sends_left, now)
        approved = await self._store.transition(
            counted.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=now
        )
        if not approved:
            # Another request approved (or closed) it between our count and this write.
            raise VerificationNotFound("no pending verification found")
        if held is not None and self._limiter is not None:  # a right code: its hits go back
            await self._limiter.release(held)
        log.info("approved verification=%s service=%s", counted.id, service.name)
        if self._guard is not None:
            await self._guard.record_verified(service, counted.to)
        return VerificationView(counted, Status.APPROVED, sends_left)

    async def _reserve(
        self,
        service: Service,
        now: float,
        *,
        client_ip: str | None = None,
        destination: str | None = None,
    ) -> Reservation | None:
        """Count a failed check against the IP's and the destination's budgets (a 429 when
        either is spent); None without a limiter."""
        if self._limiter is None:
            return None
        return await self._limiter.reserve_failed_check(
            service_id=service.id,
            client_ip=client_ip,
            destination=destination,
            now=now,
            overrides=service.policy.limits,
        )

    @staticmethod
    def _payment(service: Service, payment: tuple[str, str] | None) -> tuple[str, str] | None:
        """The (amount, payee) a psd2 service binds to the code (PSD2 dynamic linking),
        trimmed and validated; other services bind nothing and ignore a payment."""
        if "psd2" not in service.policy.flags:
            return None
        if payment is None or not all(part.strip() for part in payment):
            raise InvalidParameter("this service needs an amount and a payee (PSD2)")
        amount, payee = (part.strip() for part in payment)
        if len(amount) > 32 or len(payee) > 64:
            raise InvalidParameter("amount is at most 32 and payee at most 64 characters")
        if not (is_single_line(amount) and is_single_line(payee)):
            raise InvalidParameter("amount and payee must be printable text")
        return amount, payee

    async def _count(
        self, service: Service, now: float, verification_id: str | None, destination: str | None
    ) -> tuple[Verification, int]:
        """Count one attempt on the pending verification: (it, sends left to its destination);
        VerificationNotFound or MaxChecksReached when there is nothing to compare."""
        outcome = await self._store.count_check(
            service.id,
            now=now,
            window=service.policy.send_window,
            verification_id=verification_id,
            to=destination,
        )
        if outcome.gate is CheckGate.NOT_FOUND or outcome.verification is None:
            raise VerificationNotFound("no pending verification found")
        if outcome.gate is CheckGate.LOCKED:
            # No status write here: a concurrent request may hold the last counted attempt with
            # the right code. Only that holder, after a wrong comparison, locks the verification.
            raise MaxChecksReached("maximum check attempts reached for this verification")
        return outcome.verification, max(0, service.policy.max_sends - outcome.sends_in_window)

    async def _wrong(
        self, service: Service, counted: Verification, sends_left: int, now: float
    ) -> VerificationView:
        """A wrong code: still pending, or locked when it used the last attempt."""
        if counted.check_attempts_left > 0:
            return VerificationView(counted, Status.PENDING, sends_left)
        await self._store.transition(
            counted.id,
            from_status=Status.PENDING,
            to_status=Status.MAX_ATTEMPTS_REACHED,
            now=now,
        )
        log.info("locked verification=%s service=%s", counted.id, service.name)
        return VerificationView(counted, Status.MAX_ATTEMPTS_REACHED, sends_left)

    async def get(self, service: Service, verification_id: str) -> VerificationView:
        """A verification of the service, with effective status and counters."""
        found = await self._find(service, verification_id)
        now = self._clock()
        return VerificationView(
            found, found.effective_status(now), await self._sends_left(service, found, now)
        )

    async def cancel(self, service: Service, verification_id: str) -> VerificationView:
        """Cancel a pending verification; its code stops working at once."""
        now = self._clock()
        found = await self._find(service, verification_id)
        if found.effective_status(now) is not Status.PENDING or not await self._store.transition(
            found.id, from_status=Status.PENDING, to_status=Status.CANCELED, now=now
        ):
            raise VerificationNotPending("only a pending verification can be canceled")
        log.info("canceled verification=%s service=%s", found.id, service.name)
        return VerificationView(found, Status.CANCELED, await self._sends_left(service, found, now))

    async def approve(self, service: Service, verification_id: str) -> VerificationView:
        """Approve a pending verification without a code (the caller checked it itself, as
        with a custom code it verified elsewhere)."""
        now = self._clock()
        found = await self._find(service, verification_id)
        if found.effective_status(now) is not Status.PENDING or not await self._store.transition(
            found.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=now
        ):
            raise VerificationNotPending("only a pending verification can be approved")
        log.info("approved (by update) verification=%s service=%s", found.id, service.name)
        return VerificationView(found, Status.APPROVED, await self._sends_left(service, found, now))

    async def _find(self, service: Service, verification_id: str) -> Verification:
        """A verification of the service by id; an id of the wrong shape is not looked up."""
        found = None
        if is_verification_id(verification_id):
            found = await self._store.get(service.id, verification_id)
        if found is None:
            raise VerificationNotFound("no such verification")
        return found

    async def find_pending(self, service: Service, to: str) -> VerificationView:
        """The pending verification of a destination (Twilio's paths accept `To` for a sid)."""
        now = self._clock()
        found = await self._store.find_pending(service.id, normalize_any(to))
        if found is None or found.effective_status(now) is not Status.PENDING:
            raise VerificationNotFound("no pending verification for that destination")
        return VerificationView(found, Status.PENDING, await self._sends_left(service, found, now))

    async def report_delivery(
        self, provider: str, message_id: str, status: SendStatus, error: str | None = None
    ) -> bool:
        """Apply a provider's delivery report; False when it arrived out of order (ignored)."""
        applied = await self._store.report_delivery(
            provider,
            message_id,
            status,
            error=mask_text(error)[:500] if error else None,
            now=self._clock(),
        )
        if applied is None:
            raise UnknownMessage(f"no send attempt known to {provider} as {message_id}")
        log.info(
            "delivery report provider=%s id=%s status=%s applied=%s",
            provider,
            message_id,
            status,
            applied,
        )
        return applied

    async def _sends_left(self, service: Service, verification: Verification, now: float) -> int:
        policy = service.policy
        used = await self._store.count_sends(service.id, verification.to, now - policy.send_window)
        return max(0, policy.max_sends - used)


def _code_length(policy: Policy, requested: int | None, custom_code: str | None) -> int:
    """The digits of a new code: the policy's, or more when the caller asks (a custom code is
    its own length); never fewer than the policy says."""
    if custom_code is not None:
        if "custom_code" not in policy.flags:
            raise InvalidParameter("custom codes are not enabled for this service")
        if not _CODE.fullmatch(custom_code):
            raise InvalidParameter("a custom code must be 4 to 10 digits")
        requested = len(custom_code)
    length = policy.code_length if requested is None else requested
    if not policy.code_length <= length <= 10:
        what = "a custom code" if custom_code is not None else "code_length"
        raise InvalidParameter(
            f"{what} must be {policy.code_length} to 10 digits: this service's codes are "
            f"{policy.code_length} digits or longer"
        )
    return length


def _send_options(
    locale: str | None,
    app_hash: str | None,
    webotp_domain: str | None,
    payment: tuple[str, str] | None,
    friendly_name: str | None,
) -> dict[str, str]:
    """A send's validated message options (what the dispatcher renders it with)."""
    if locale is not None and not _LOCALE.fullmatch(locale):
        raise InvalidParameter("locale must look like 'en' or 'es-MX'")
    options = {}
    if app_hash is not None:
        if not _APP_HASH.fullmatch(app_hash):
            raise InvalidParameter("app_hash must be the 11-character Android app hash")
        options["app_hash"] = app_hash
    if webotp_domain is not None:
        domain = webotp_domain.lower()
        if len(domain) > 253 or not _DOMAIN.fullmatch(domain):
            raise InvalidParameter("webotp_domain must be a host name such as example.com")
        options["webotp_domain"] = domain
    if payment is not None:
        options["amount"], options["payee"] = payment
    if friendly_name is not None:
        if not valid_friendly_name(friendly_name):
            raise InvalidParameter(FRIENDLY_NAME_RULE)
        options["friendly_name"] = friendly_name
    return options


def _counted_ip(client_ip: str | None) -> str | None:
    """What the per-IP limits count for an end user's address (IPv6 by its /64)."""
    if client_ip is None:
        return None
    try:
        return ip_bucket(client_ip)
    except ValueError:
        raise InvalidParameter("client_ip is not an IP address") from None
