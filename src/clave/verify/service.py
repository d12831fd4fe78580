"""Use cases of the verify domain: start a verification, check a code, read, cancel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from clave.platform import tracing
from clave.platform.contacts import mask_text, region_of
from clave.platform.errors import ClaveError
from clave.verify.codes import CodeHasher, bound_terms
from clave.verify.delivery.base import ProviderRouter
from clave.verify.destinations import guess_key, mask, normalize_any
from clave.verify.errors import (
    ChannelNotAllowed,
    ChannelUnavailable,
    InvalidParameter,
    MaxChecksReached,
    MaxSendsReached,
    SmsToLandline,
    UnknownMessage,
    VerificationNotFound,
    VerificationNotPending,
)
from clave.verify.fraud import NO_GUARD, Guard
from clave.verify.limits import NO_LIMITS, Limiter, Reservation, service_buckets
from clave.verify.line_types import LineTypes, NumberMetadata
from clave.verify.models import (
    CODE_DIGITS,
    Channel,
    CheckGate,
    Policy,
    SealedCode,
    SendStatus,
    StartOutcome,
    Status,
    Tenant,
    Verification,
    is_code,
    is_verification_id,
    new_id,
    status_after_check,
)
from clave.verify.requests import StartRequest, Terms, bound_payment, counted_ip, terms_of
from clave.verify.store.base import VerificationStore
from clave.verify.telemetry import NO_TELEMETRY, VerifyTelemetry

log = logging.getLogger("clave.verify")


@dataclass(frozen=True, slots=True)
class VerificationView:
    """A verification as the API shows it, with the counters a client needs."""

    verification: Verification
    status: Status
    sends_left: int
    # The PSD2 (amount, payee) this request bound or checked: None unless the tenant is psd2
    # (echoing another's would vouch for terms nothing checked).
    payment: tuple[str, str] | None = None

    @property
    def valid(self) -> bool:
        """Whether the code was proven (the verification is approved)."""
        return self.status is Status.APPROVED

    @property
    def check_attempts_left(self) -> int:
        """Checks still allowed."""
        return self.verification.check_attempts_left


class VerifyService:
    """Verifications for tenants: codes sealed by `hasher`, sends queued in the store's outbox.

    Every policy rule is enforced here, whichever API the request came through. Without rate
    limits or a fraud guard, `NO_LIMITS` and `NO_GUARD` pass everything.
    """

    def __init__(
        self,
        store: VerificationStore,
        hasher: CodeHasher,
        providers: ProviderRouter,
        clock: Callable[[], float],
        on_queued: Callable[[], None] = lambda: None,
        limiter: Limiter = NO_LIMITS,
        guard: Guard = NO_GUARD,
        test_destinations: Mapping[tuple[str, str], str] | None = None,
        line_types: LineTypes | None = None,
        telemetry: VerifyTelemetry = NO_TELEMETRY,
    ) -> None:
        self._telemetry = telemetry
        self._line_types = line_types or NumberMetadata()
        self._test_destinations = dict(test_destinations or {})
        self._limiter = limiter
        self._guard = guard
        self._store = store
        self._hasher = hasher
        self._providers = providers
        self._clock = clock
        self._on_queued = on_queued

    async def start_verification(
        self, tenant: Tenant, request: StartRequest
    ) -> tuple[VerificationView, bool]:
        """`_start`, reported: a new code started, or a send refused by a limit or a rule."""
        try:
            view, created = await self._start(tenant, request)
        except ClaveError as exc:
            if exc.status in (403, 429):
                self._telemetry.refused(exc.code)
            raise
        if created:
            self._telemetry.started(tenant.name, request.channel.value)
        return view, created

    async def _start(self, tenant: Tenant, request: StartRequest) -> tuple[VerificationView, bool]:
        """Send a code to `request.to`, or re-send the pending one; returns (view, created).

        A pending verification is re-sent only when the code would mean the same (same length,
        custom code, payment and name); otherwise it is canceled and a new one starts. A test
        destination gets its fixed code and is never sent anything, so it costs nothing and
        is neither screened nor counted.
        """
        test_code = self._test_destinations.get((tenant.name, request.to))
        self._admit(tenant.policy, request, deliver=test_code is None)
        terms = terms_of(tenant.policy, request)
        now = self._clock()
        counted = Reservation((), now)
        if test_code is None:
            counted = await self._screen_and_count(tenant, request, now)
            # After the guard and the limits: a line type lookup may be billed (Twilio Lookup),
            # so a send they refuse never costs one.
            if (
                request.channel is Channel.SMS
                and "skip_sms_to_landlines" in tenant.policy.flags
                and await self._line_types.is_landline(request.to)
            ):
                await self._limiter.release(counted)  # nothing was sent: nothing spent
                raise SmsToLandline("SMS is not supported by landline phone number")
        outcome = await self._store.start(
            self._candidate(tenant, request, terms, test_code, now),
            channel=request.channel,
            locale=request.locale,
            now=now,
            window=tenant.policy.send_window,
            max_sends=tenant.policy.max_sends,
            deliver=test_code is None,
            options=_send_options(request, terms),
        )
        if outcome.limited_until is not None:
            await self._limiter.release(counted)  # nothing was sent: the caps are not spent
            raise _window_full(tenant, request.to, outcome.limited_until - now)
        if test_code is None:
            self._on_queued()
            await self._guard.record_send(tenant, request.to, request.channel)
        view = self._started(tenant, request, outcome, now, terms.payment)
        return view, outcome.created

    def _admit(self, policy: Policy, request: StartRequest, *, deliver: bool) -> None:
        """Refuse a send the policy forbids, or that no provider could deliver."""
        if request.channel not in policy.channels:
            raise ChannelNotAllowed(f"channel {request.channel} is not allowed for this service")
        if deliver and not self._providers.available(request.channel):
            raise ChannelUnavailable(
                f"no delivery provider is configured for channel {request.channel}"
            )

    async def _screen_and_count(
        self, tenant: Tenant, request: StartRequest, now: float
    ) -> Reservation:
        """The fraud guard's screen, then the rate limits, in that order: a refused send
        spends no rate-limit budget. Release the reservation if the store refuses the send."""
        # A rate limit the service does not have is the caller's mistake: said before anything.
        buckets = service_buckets(tenant.id, tenant.policy.rate_limits, request.rate_limits)
        await self._guard.screen(tenant, request.to, request.channel, request.counted_ip)
        return await self._limiter.send(
            tenant_id=tenant.id,
            client_ip=request.counted_ip,
            destination=guess_key(request.to),
            now=now,
            overrides=tenant.policy.limits,
            buckets=buckets,
        )

    def _candidate(
        self,
        tenant: Tenant,
        request: StartRequest,
        terms: Terms,
        test_code: str | None,
        now: float,
    ) -> Verification:
        """The verification a send starts unless a pending one means the same."""
        vid = new_id("VE")
        policy = tenant.policy
        return Verification(
            id=vid,
            tenant_id=tenant.id,
            to=request.to,
            channel=request.channel,
            locale=request.locale,
            code_length=len(test_code) if test_code else terms.length,
            code=self._seal(vid, request, terms, test_code),
            status=Status.PENDING,
            check_attempts=0,
            max_checks=policy.max_checks,
            created_at=now,
            updated_at=now,
            expires_at=now + policy.code_ttl,
            binding=self._hasher.binding(
                str(terms.length),
                test_code or "",
                request.custom_code or "",
                *(terms.payment or ("", "")),
                terms.name,
            ),
        )

    def _seal(
        self, vid: str, request: StartRequest, terms: Terms, test_code: str | None
    ) -> SealedCode:
        """A test destination's fixed code; a custom code, sealed so it can still be sent; or
        a fresh random one."""
        context = bound_terms(terms.payment)
        if test_code:
            return self._hasher.seal(vid, test_code, context)
        if request.custom_code:
            return self._hasher.seal_deliverable(vid, request.custom_code, context)
        return self._hasher.issue(vid, terms.length, context)

    @staticmethod
    def _started(
        tenant: Tenant,
        request: StartRequest,
        outcome: StartOutcome,
        now: float,
        payment: tuple[str, str] | None,
    ) -> VerificationView:
        """The view of an accepted send, logged."""
        v = outcome.verification
        log.info(
            "%s verification=%s service=%s channel=%s to=%s",
            "created" if outcome.created else "resent",
            v.id,
            tenant.name,
            request.channel,
            mask(v.to),
        )
        sends_left = max(0, tenant.policy.max_sends - outcome.sends_in_window)
        return VerificationView(v, v.effective_status(now), sends_left, payment)

    async def check_code(
        self,
        tenant: Tenant,
        *,
        code: str,
        verification_id: str | None = None,
        to: str | None = None,
        client_ip: str | None = None,
        payment: tuple[str, str] | None = None,
    ) -> VerificationView:
        """`_check`, reported by outcome: approved, pending, max_attempts, not_found, or
        refused (a spent budget: its reason counted too)."""
        try:
            view = await self._check(
                tenant,
                code=code,
                verification_id=verification_id,
                to=to,
                client_ip=client_ip,
                payment=payment,
            )
        except VerificationNotFound:
            self._telemetry.checked(tenant.name, "not_found")
            raise
        except MaxChecksReached:  # a locked verification: its attempts are spent
            self._telemetry.checked(tenant.name, "max_attempts")
            raise
        except ClaveError as exc:
            if exc.status == 429:
                self._telemetry.checked(tenant.name, "refused")
                self._telemetry.refused(exc.code)
            raise
        if view.valid:
            outcome = "approved"
        elif view.status is Status.MAX_ATTEMPTS_REACHED:
            outcome = "max_attempts"
        else:
            outcome = "pending"
        self._telemetry.checked(tenant.name, outcome)
        return view

    async def _check(
        self,
        tenant: Tenant,
        *,
        code: str,
        verification_id: str | None = None,
        to: str | None = None,
        client_ip: str | None = None,
        payment: tuple[str, str] | None = None,
    ) -> VerificationView:
        """Check `code` for a verification (by id or by destination); psd2 tenants need the
        same `payment` (amount, payee) the verification was started with.

        The attempt is counted before the comparison, on the verification and as a failed
        check against the client IP's and the destination's budgets (given back if the code
        is right); a right code approves through a conditional write, so concurrent checks
        approve at most once.
        """
        if (verification_id is None) == (to is None):
            raise InvalidParameter("give exactly one of 'id' and 'to'")
        if not is_code(code):
            raise InvalidParameter(f"code must be {CODE_DIGITS}")
        if verification_id is not None and not is_verification_id(verification_id):
            raise VerificationNotFound("no pending verification found")
        destination = normalize_any(to) if to is not None else None
        bound = bound_payment(tenant.policy, payment)
        now = self._clock()
        # By destination, both budgets in one reservation; by id, the destination is known
        # once the verification is found.
        held = await self._reserve(tenant, now, counted_ip(client_ip), destination)
        try:
            counted, sends_left = await self._count(tenant, now, verification_id, destination)
        except (VerificationNotFound, MaxChecksReached):
            # Nothing was compared: the destination's budget is not spent (else anyone could
            # lock a number out by checking codes it was never sent). The IP's stays spent.
            await self._limiter.release_guesses(held)
            raise
        if destination is None:
            held += await self._reserve(tenant, now, None, counted.to)
        if not self._hasher.matches(counted.id, counted.code, code + bound_terms(bound)):
            return await self._wrong(tenant, counted, sends_left, now, bound)
        return await self._approve(tenant, counted, sends_left, now, held, bound)

    async def _reserve(
        self, tenant: Tenant, now: float, client_ip: str | None, destination: str | None
    ) -> Reservation:
        """Count a failed check against the IP's and the destination's budgets (a 429 when
        either is spent)."""
        return await self._limiter.reserve_failed_check(
            tenant_id=tenant.id,
            client_ip=client_ip,
            destination=guess_key(destination) if destination else None,
            now=now,
            overrides=tenant.policy.limits,
        )

    async def _count(
        self, tenant: Tenant, now: float, verification_id: str | None, destination: str | None
    ) -> tuple[Verification, int]:
        """Count one attempt on the pending verification: (it, sends left to its destination);
        VerificationNotFound or MaxChecksReached when there is nothing to compare."""
        outcome = await self._store.count_check(
            tenant.id,
            now=now,
            window=tenant.policy.send_window,
            verification_id=verification_id,
            to=destination,
        )
        if outcome.gate is CheckGate.NOT_FOUND or outcome.verification is None:
            raise VerificationNotFound("no pending verification found")
        if outcome.gate is CheckGate.LOCKED:
            # No status write here: a concurrent request may hold the last counted attempt with
            # the right code. Only that holder, after a wrong comparison, locks the verification.
            raise MaxChecksReached("maximum check attempts reached for this verification")
        return outcome.verification, max(0, tenant.policy.max_sends - outcome.sends_in_window)

    async def _approve(
        self,
        tenant: Tenant,
        counted: Verification,
        sends_left: int,
        now: float,
        held: Reservation,
        payment: tuple[str, str] | None,
    ) -> VerificationView:
        """A right code: approved through a conditional write, its failed-check hits given
        back."""
        approved = await self._store.transition(
            counted.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=now
        )
        if not approved:
            # Another request approved (or closed) it between our count and this write.
            raise VerificationNotFound("no pending verification found")
        await self._limiter.release(held)  # a right code: its hits go back
        log.info("approved verification=%s service=%s", counted.id, tenant.name)
        await self._guard.record_verified(tenant, counted.to)
        return VerificationView(counted, Status.APPROVED, sends_left, payment)

    async def _wrong(
        self,
        tenant: Tenant,
        counted: Verification,
        sends_left: int,
        now: float,
        payment: tuple[str, str] | None,
    ) -> VerificationView:
        """A wrong code: still pending, or locked when it used the last attempt
        (models.status_after_check)."""
        locked = status_after_check(counted, matched=False)
        if locked is None:
            return VerificationView(counted, Status.PENDING, sends_left, payment)
        await self._store.transition(
            counted.id, from_status=Status.PENDING, to_status=locked, now=now
        )
        log.info("locked verification=%s service=%s", counted.id, tenant.name)
        return VerificationView(counted, locked, sends_left, payment)

    async def get(self, tenant: Tenant, verification_id: str) -> VerificationView:
        """A verification of the tenant, with effective status and counters."""
        found = await self._find(tenant, verification_id)
        now = self._clock()
        return VerificationView(
            found, found.effective_status(now), await self._sends_left(tenant, found, now)
        )

    async def cancel(self, tenant: Tenant, verification_id: str) -> VerificationView:
        """Cancel a pending verification; its code stops working at once."""
        now = self._clock()
        found = await self._find(tenant, verification_id)
        if found.effective_status(now) is not Status.PENDING or not await self._store.transition(
            found.id, from_status=Status.PENDING, to_status=Status.CANCELED, now=now
        ):
            raise VerificationNotPending("only a pending verification can be canceled")
        log.info("canceled verification=%s service=%s", found.id, tenant.name)
        return VerificationView(found, Status.CANCELED, await self._sends_left(tenant, found, now))

    async def approve(self, tenant: Tenant, verification_id: str) -> VerificationView:
        """Approve a pending verification without a code (the caller checked it itself, as
        with a custom code it verified elsewhere)."""
        now = self._clock()
        found = await self._find(tenant, verification_id)
        if found.effective_status(now) is not Status.PENDING or not await self._store.transition(
            found.id, from_status=Status.PENDING, to_status=Status.APPROVED, now=now
        ):
            raise VerificationNotPending("only a pending verification can be approved")
        log.info("approved (by update) verification=%s service=%s", found.id, tenant.name)
        return VerificationView(found, Status.APPROVED, await self._sends_left(tenant, found, now))

    async def _find(self, tenant: Tenant, verification_id: str) -> Verification:
        """A verification of the tenant by id; an id of the wrong shape is not looked up."""
        found = None
        if is_verification_id(verification_id):
            found = await self._store.get(tenant.id, verification_id)
        if found is None:
            raise VerificationNotFound("no such verification")
        return found

    async def find_pending(self, tenant: Tenant, to: str) -> VerificationView:
        """The pending verification of a destination (Twilio's paths accept `To` for a sid)."""
        now = self._clock()
        found = await self._store.find_pending(tenant.id, normalize_any(to))
        if found is None or found.effective_status(now) is not Status.PENDING:
            raise VerificationNotFound("no pending verification for that destination")
        return VerificationView(found, Status.PENDING, await self._sends_left(tenant, found, now))

    async def locked(
        self, tenant: Tenant, *, verification_id: str | None = None, to: str | None = None
    ) -> bool:
        """Whether what a check addressed (a verification, or the last one sent to `to`) was
        locked by wrong codes and has not expired: Twilio answers such a check 60202, not
        20404."""
        now = self._clock()
        found = None
        if verification_id is not None and is_verification_id(verification_id):
            found = await self._store.get(tenant.id, verification_id)
        elif to is not None:
            since = now - max(tenant.policy.send_window, tenant.policy.code_ttl)
            found = await self._store.latest_sent(tenant.id, normalize_any(to), since)
        if found is None or now >= found.expires_at:
            return False
        return found.status is Status.MAX_ATTEMPTS_REACHED or (
            found.status is Status.PENDING and found.check_attempts_left == 0
        )

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
        if applied:  # (a report does not say the channel; the provider does)
            self._telemetry.sent("report", provider, status.value, None)
        log.info(
            "delivery report provider=%s id=%s status=%s applied=%s",
            provider,
            message_id,
            status,
            applied,
        )
        return applied

    async def _sends_left(self, tenant: Tenant, verification: Verification, now: float) -> int:
        policy = tenant.policy
        used = await self._store.count_sends(tenant.id, verification.to, now - policy.send_window)
        return max(0, policy.max_sends - used)


def _send_options(request: StartRequest, terms: Terms) -> dict[str, str]:
    """A send's message options, what the dispatcher renders it with."""
    # The send's own sid (the attempts log's), random: a counter would tell the send volume.
    options = {"friendly_name": terms.name, "attempt_sid": new_id("VL")}
    country = region_of(request.to)
    if country is not None:  # the attempts log filters by it
        options["country"] = country
    parent = tracing.traceparent()
    if parent is not None:  # the delivery's span links to this request's
        options["traceparent"] = parent
    if request.app_hash is not None:
        options["app_hash"] = request.app_hash
    if request.webotp_domain is not None:
        options["webotp_domain"] = request.webotp_domain
    if terms.payment is not None:
        options["amount"], options["payee"] = terms.payment
    if terms.share_warning is False:
        options["share_warning"] = "off"
    if terms.messaging_service_sid is not None:
        options["messaging_service_sid"] = terms.messaging_service_sid
    return options


def _window_full(tenant: Tenant, destination: str, retry_after: float) -> MaxSendsReached:
    """The refusal of a send the destination's window has no room for."""
    policy = tenant.policy
    log.info("send refused, window full: service=%s to=%s", tenant.name, mask(destination))
    return MaxSendsReached(
        f"at most {policy.max_sends} sends to this destination per {policy.send_window} seconds",
        retry_after=retry_after,
    )
