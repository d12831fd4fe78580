"""Use cases of the verify domain: start a verification, check a code, read, cancel."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from clave.verify.codes import CodeHasher
from clave.verify.delivery.base import ProviderRouter
from clave.verify.destinations import mask, normalize, normalize_any
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
from clave.verify.limits import RateLimiter
from clave.verify.models import (
    Channel,
    CheckGate,
    SendStatus,
    Service,
    Status,
    Verification,
    new_id,
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
        """
        policy = service.policy
        if custom_code is not None:
            if "custom_code" not in policy.flags:
                raise InvalidParameter("custom codes are not enabled for this service")
            if not _CODE.fullmatch(custom_code):
                raise InvalidParameter("a custom code must be 4 to 10 digits")
        payment = self._payment(service, payment)
        context = _bound(payment)
        if channel not in policy.channels:
            raise ChannelNotAllowed(f"channel {channel} is not allowed for this service")
        destination = normalize(to, channel)
        test_code = self._test_destinations.get((service.name, destination))
        if test_code is None and not self._providers.available(channel):
            raise ChannelUnavailable(f"no delivery provider is configured for channel {channel}")
        if locale is not None and not _LOCALE.fullmatch(locale):
            raise InvalidParameter("locale must look like 'en' or 'es-MX'")
        length = policy.code_length if code_length is None else code_length
        if not 4 <= length <= 10:
            raise InvalidParameter("code_length must be between 4 and 10")
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
            if not friendly_name.strip() or len(friendly_name) > 64:
                raise InvalidParameter("friendly_name must be 1 to 64 characters")
            options["friendly_name"] = friendly_name
        now = self._clock()
        # Screened first: a refused send spends no rate-limit budget. A test destination is
        # never sent anything, so it costs nothing and is neither screened nor counted.
        if self._guard is not None and test_code is None:
            await self._guard.screen(service, destination, channel, client_ip)
        if self._limiter is not None and test_code is None:
            await self._limiter.send(
                service_id=service.id, client_ip=client_ip, now=now, overrides=policy.limits
            )
        vid = new_id("VE")
        candidate = Verification(
            id=vid,
            service_id=service.id,
            to=destination,
            channel=channel,
            locale=locale,
            code_length=len(test_code or custom_code or "") or length,
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

        The attempt is counted before the comparison; a right code approves through a
        conditional write, so concurrent checks approve at most once.
        """
        if (verification_id is None) == (to is None):
            raise InvalidParameter("give exactly one of 'id' and 'to'")
        if not _CODE.fullmatch(code):
            raise InvalidParameter("code must be 4 to 10 digits")
        destination = normalize_any(to) if to is not None else None
        context = _bound(self._payment(service, payment))
        now = self._clock()
        if self._limiter is not None:
            await self._limiter.may_check(
                service_id=service.id,
                client_ip=client_ip,
                now=now,
                overrides=service.policy.limits,
            )
        try:
            view = await self._check(service, code + context, verification_id, destination, now)
        except (VerificationNotFound, MaxChecksReached):
            await self._failed_check(service, client_ip, now)
            raise
        if not view.valid:
            await self._failed_check(service, client_ip, now)
        return view

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
        if not (amount.isprintable() and payee.isprintable()):
            raise InvalidParameter("amount and payee must be printable text")
        return amount, payee

    async def _failed_check(self, service: Service, client_ip: str | None, now: float) -> None:
        if self._limiter is not None:
            await self._limiter.check_failed(
                service_id=service.id,
                client_ip=client_ip,
                now=now,
                overrides=service.policy.limits,
            )

    async def _check(
        self,
        service: Service,
        code: str,
        verification_id: str | None,
        destination: str | None,
        now: float,
    ) -> VerificationView:
        outcome = await self._store.count_check(
            service.id,
            now=now,
            window=service.policy.send_window,
            verification_id=verification_id,
            to=destination,
        )
        counted = outcome.verification
        if outcome.gate is CheckGate.NOT_FOUND or counted is None:
            raise VerificationNotFound("no pending verification found")
        if outcome.gate is CheckGate.LOCKED:
            # No status write here: a concurrent request may hold the last counted attempt with
            # the right code. Only that holder, after a wrong comparison, locks the verification.
            raise MaxChecksReached("maximum check attempts reached for this verification")
        sends_left = max(0, service.policy.max_sends - outcome.sends_in_window)
        if self._hasher.matches(counted.id, counted.code, code):
            approved = await self._store.transition(
                counted.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=now
            )
            if not approved:
                # Another request approved (or closed) it between our count and this write.
                raise VerificationNotFound("no pending verification found")
            log.info("approved verification=%s service=%s", counted.id, service.name)
            if self._guard is not None:
                await self._guard.record_verified(service, counted.to)
            return VerificationView(counted, Status.APPROVED, sends_left)
        status = Status.PENDING
        if counted.check_attempts_left == 0:
            await self._store.transition(
                counted.id,
                from_status=Status.PENDING,
                to_status=Status.MAX_ATTEMPTS_REACHED,
                now=now,
            )
            status = Status.MAX_ATTEMPTS_REACHED
            log.info("locked verification=%s service=%s", counted.id, service.name)
        return VerificationView(counted, status, sends_left)

    async def get(self, service: Service, verification_id: str) -> VerificationView:
        """A verification of the service, with effective status and counters."""
        found = await self._store.get(service.id, verification_id)
        if found is None:
            raise VerificationNotFound("no such verification")
        now = self._clock()
        return VerificationView(
            found, found.effective_status(now), await self._sends_left(service, found, now)
        )

    async def cancel(self, service: Service, verification_id: str) -> VerificationView:
        """Cancel a pending verification; its code stops working at once."""
        now = self._clock()
        found = await self._store.get(service.id, verification_id)
        if found is None:
            raise VerificationNotFound("no such verification")
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
        found = await self._store.get(service.id, verification_id)
        if found is None:
            raise VerificationNotFound("no such verification")
        if found.effective_status(now) is not Status.PENDING or not await self._store.transition(
            found.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=now
        ):
            raise VerificationNotPending("only a pending verification can be approved")
        log.info("approved (by update) verification=%s service=%s", found.id, service.name)
        return VerificationView(found, Status.APPROVED, await self._sends_left(service, found, now))

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
            provider, message_id, status, error=error, now=self._clock()
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


def _bound(payment: tuple[str, str] | None) -> str:
    """What is hashed with the code: nothing, or the payment. Codes are digits and the parts
    printable, so the NUL separators keep every (code, amount, payee) distinct."""
    return f"\x00{payment[0]}\x00{payment[1]}" if payment else ""
