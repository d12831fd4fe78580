"""HTTP layer of verify: parse, call the service, render. Never touches storage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter

from clave.platform.errors import handlers, message_error_handler
from clave.platform.lean import LeanRequest, LeanResponse, LeanRoute, native_errors
from clave.verify.attempts_api import attempts_router
from clave.verify.client_ips import ClientIps
from clave.verify.delivery.inbox import InboxStore
from clave.verify.destinations import mask
from clave.verify.factors import Factors
from clave.verify.factors_api import factor_routers
from clave.verify.languages import LOCALES
from clave.verify.models import (
    MAX_CODE_LENGTH,
    MIN_CODE_LENGTH,
    Channel,
    Status,
    Tenant,
)
from clave.verify.reporting import AttemptsLog
from clave.verify.requests import (
    APP_HASH_LENGTH,
    MAX_DESTINATION_LENGTH,
    MAX_DOMAIN_LENGTH,
    MAX_IP_LENGTH,
    MAX_LOCALE_LENGTH,
    StartRequest,
)
from clave.verify.safe_list import SafeNumbers
from clave.verify.service import VerificationView, VerifyService
from clave.verify.settings import VerifySettings
from clave.verify.side_routes import inbox_router, providers_router
from clave.verify.tenants import DEFAULT_TENANT, Tenants
from clave.verify.timestamps import iso
from clave.verify.twilio_api import twilio_router

Destination = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_DESTINATION_LENGTH)]
CodeText = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
CodeLength = Annotated[int, msgspec.Meta(ge=MIN_CODE_LENGTH, le=MAX_CODE_LENGTH)]


# The statuses each route answers beyond the rules of platform/openapi_errors.py.
OPENAPI_ERRORS = {
    ("POST", "/api/verifications"): (403, 422, 429),
    ("POST", "/api/verifications/check"): (404, 429),
    ("POST", "/api/verifications/{verification_id}/cancel"): (409,),
    ("POST", "/api/messages/send-code"): (429,),
    ("POST", "/api/messages/verify-code"): (429,),
    ("GET", "/dev/inbox/messages"): (401, 403),
    ("POST", "/api/providers/twilio/status"): (403, 404),
    ("POST", "/api/providers/webhook/status"): (403, 404),
    # No such factor (or none verified to challenge); a factor's failed-code budget spent.
    ("POST", "/api/challenges"): (404, 429),
    ("POST", "/api/factors/{factor_id}/confirm"): (429,),
}


class StartVerification(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/verifications."""

    to: Destination
    channel: Channel
    locale: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=MAX_LOCALE_LENGTH,
                description=(
                    "The message's language, one of: "
                    + ", ".join(LOCALES)
                    + " (any case; a region variant of a language in that list, such as "
                    "es-MX, is written in it; anything else is invalid_parameter). Without "
                    "it, the destination phone's country decides."
                ),
            ),
        ]
        | None
    ) = None
    code_length: CodeLength | None = None
    # The end user's IP, for the per-IP limits (clave usually sees the caller's server).
    client_ip: Annotated[str, msgspec.Meta(max_length=MAX_IP_LENGTH)] | None = None
    # SMS autofill: the Android SMS Retriever app hash, and the WebOTP origin (`@domain #code`).
    app_hash: Annotated[str, msgspec.Meta(max_length=APP_HASH_LENGTH)] | None = None
    webotp_domain: Annotated[str, msgspec.Meta(max_length=MAX_DOMAIN_LENGTH)] | None = None


class CheckVerification(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/verifications/check: the code and exactly one of `to` and `id`."""

    code: CodeText
    to: Destination | None = None
    id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    client_ip: Annotated[str, msgspec.Meta(max_length=MAX_IP_LENGTH)] | None = None


class SendAttemptRead(msgspec.Struct):
    """One send attempt."""

    channel: str
    status: str
    created_at: str
    updated_at: str
    provider: str | None
    provider_message_id: str | None
    error: str | None


class VerificationRead(msgspec.Struct):
    """A verification as the API returns it; the code never appears."""

    id: str
    # The HTTP API keeps its name for the tenant: a "service" to its callers.
    service_id: str
    to: str
    channel: str
    status: str
    valid: bool
    locale: str | None
    created_at: str
    updated_at: str
    expires_at: str
    check_attempts_left: int
    sends_left: int
    send_attempts: list[SendAttemptRead]


class SendCode(msgspec.Struct):
    """Body of the original service's POST /api/messages/send-code."""

    to: Destination


class VerifyCode(msgspec.Struct):
    """Body of the original service's POST /api/messages/verify-code."""

    to: Destination
    code: CodeText


def render(view: VerificationView) -> VerificationRead:
    """The public form of a verification."""
    v = view.verification
    return VerificationRead(
        id=v.id,
        service_id=v.tenant_id,
        to=mask(v.to),
        channel=v.channel.value,
        status=view.status.value,
        valid=view.valid,
        locale=v.locale,
        created_at=iso(v.created_at),
        updated_at=iso(v.updated_at),
        expires_at=iso(v.expires_at),
        check_attempts_left=view.check_attempts_left,
        sends_left=view.sends_left,
        send_attempts=[
            SendAttemptRead(
                channel=s.channel.value,
                status=s.status.value,
                created_at=iso(s.created_at),
                updated_at=iso(s.updated_at),
                provider=s.provider,
                provider_message_id=s.provider_message_id,
                error=s.error,
            )
            for s in v.sends
        ],
    )


@dataclass(frozen=True, slots=True)
class VerifyContext:
    """What the native handlers use, as one dependency (`ctx`). With the caller depending on
    it, Litestar resolves a handler's two dependencies one after the other; several
    independent ones cost an anyio task group per request (a fifth of a check's time)."""

    verify: VerifyService
    tenants: Tenants
    client_ips: ClientIps
    compat_channel: Channel
    compat_anonymous: bool


def verify_context(
    verify: VerifyService, tenants: Tenants, settings: VerifySettings, client_ips: ClientIps
) -> VerifyContext:
    """What the native handlers (Litestar's and the lean ones) work with."""
    return VerifyContext(
        verify, tenants, client_ips, settings.compat_channel, settings.compat_anonymous
    )


@post("/", status_code=201, summary="Send a code (or re-send the pending one)")
async def create_verification(
    request: Request[Any, Any, Any],
    data: JSONBody[StartVerification],
    ctx: NamedDependency[VerifyContext],
    caller: NamedDependency[Tenant],
) -> Response[VerificationRead]:
    """Start a verification for `to` on `channel`; a pending one for `to` is re-sent."""
    view, created = await _start(ctx, caller, data, request)
    return Response(render(view), status_code=201 if created else 200)


@post("/check", status_code=200, summary="Check a code")
async def check_verification(
    request: Request[Any, Any, Any],
    data: JSONBody[CheckVerification],
    ctx: NamedDependency[VerifyContext],
    caller: NamedDependency[Tenant],
) -> VerificationRead:
    """Check a code by verification id or destination; `status` says the result."""
    return render(await _check(ctx, caller, data, request))


async def _start(
    ctx: VerifyContext,
    caller: Tenant,
    data: StartVerification,
    request: Request[Any, Any, Any] | LeanRequest,
) -> tuple[VerificationView, bool]:
    start = StartRequest(
        to=data.to,
        channel=data.channel,
        locale=data.locale,
        code_length=data.code_length,
        client_ip=ctx.client_ips.of(request, data.client_ip),
        app_hash=data.app_hash,
        webotp_domain=data.webotp_domain,
    )
    return await ctx.verify.start_verification(caller, start)


async def _check(
    ctx: VerifyContext,
    caller: Tenant,
    data: CheckVerification,
    request: Request[Any, Any, Any] | LeanRequest,
) -> VerificationView:
    return await ctx.verify.check_code(
        caller,
        code=data.code,
        verification_id=data.id,
        to=data.to,
        client_ip=ctx.client_ips.of(request, data.client_ip),
    )


def lean_routes(ctx: VerifyContext) -> list[LeanRoute]:
    """The native send and check as lean routes (platform/lean.py): the steps of
    create_verification and check_verification (the caller, then the same use case) without
    the framework's per-request work."""

    async def start(request: LeanRequest) -> LeanResponse:
        data = request.json(StartVerification)
        caller = await ctx.tenants.authenticate(request.header(b"authorization"))
        view, created = await _start(ctx, caller, data, request)
        return LeanResponse(render(view), 201 if created else 200)

    async def check(request: LeanRequest) -> LeanResponse:
        data = request.json(CheckVerification)
        caller = await ctx.tenants.authenticate(request.header(b"authorization"))
        return LeanResponse(render(await _check(ctx, caller, data, request)))

    return [
        LeanRoute("POST", "/api/verifications", start, native_errors),
        LeanRoute("POST", "/api/verifications/check", check, native_errors),
    ]


@get("/{verification_id:str}", summary="Read a verification")
async def read_verification(
    verification_id: Annotated[str, PathParameter(max_length=64)],
    ctx: NamedDependency[VerifyContext],
    caller: NamedDependency[Tenant],
) -> VerificationRead:
    """A verification with its send attempts."""
    return render(await ctx.verify.get(caller, verification_id))


@post("/{verification_id:str}/cancel", status_code=200, summary="Cancel a verification")
async def cancel_verification(
    verification_id: Annotated[str, PathParameter(max_length=64)],
    ctx: NamedDependency[VerifyContext],
    caller: NamedDependency[Tenant],
) -> VerificationRead:
    """Cancel a pending verification."""
    return render(await ctx.verify.cancel(caller, verification_id))


@post("/send-code", status_code=200, summary="Send a code (original service's route)")
async def send_code(
    request: Request[Any, Any, Any],
    data: JSONBody[SendCode],
    ctx: NamedDependency[VerifyContext],
    caller: NamedDependency[Tenant],
) -> dict[str, Any]:
    """Start or re-send a verification on the configured compat channel."""
    start = StartRequest(data.to, ctx.compat_channel, client_ip=ctx.client_ips.of(request, None))
    await ctx.verify.start_verification(caller, start)
    return {"message": True}


@post("/verify-code", status_code=200, summary="Check a code (original service's route)")
async def verify_code(
    request: Request[Any, Any, Any],
    data: JSONBody[VerifyCode],
    ctx: NamedDependency[VerifyContext],
    caller: NamedDependency[Tenant],
) -> dict[str, Any]:
    """Check a code by destination: `approved` or `pending`."""
    client_ip = ctx.client_ips.of(request, None)
    view = await ctx.verify.check_code(caller, code=data.code, to=data.to, client_ip=client_ip)
    if view.status is Status.MAX_ATTEMPTS_REACHED:
        return {"message": "max_attempts_reached"}
    return {"message": "approved" if view.valid else "pending"}


def routers(
    verify: VerifyService,
    tenants: Tenants,
    settings: VerifySettings,
    *,
    client_ips: ClientIps,
    inbox: InboxStore | None,
    safe_numbers: SafeNumbers,
    attempts: AttemptsLog,
    factors: Factors,
) -> list[Router]:
    """The verify domain's routers, wired to its services."""

    context = verify_context(verify, tenants, settings, client_ips)

    async def provide_ctx() -> VerifyContext:
        return context

    async def provide_caller(
        request: Request[Any, Any, Any], ctx: NamedDependency[VerifyContext]
    ) -> Tenant:
        return await ctx.tenants.authenticate(request.headers.get("authorization"))

    async def provide_compat_caller(
        request: Request[Any, Any, Any], ctx: NamedDependency[VerifyContext]
    ) -> Tenant:
        header = request.headers.get("authorization")
        if header is None and ctx.compat_anonymous:
            # Explicitly allowed: the original routes had no authentication. Meant for a
            # deployment where a gateway in front authenticates callers.
            return await ctx.tenants.get_tenant(DEFAULT_TENANT)
        return await ctx.tenants.authenticate(header)

    common = {"ctx": Provide(provide_ctx)}
    native = Router(
        path="/api/verifications",
        route_handlers=[
            create_verification,
            check_verification,
            read_verification,
            cancel_verification,
        ],
        dependencies={**common, "caller": Provide(provide_caller)},
        security=[{"bearer": []}],
        tags=["verifications"],
    )
    compat = Router(
        path="/api/messages",
        route_handlers=[send_code, verify_code],
        dependencies={**common, "caller": Provide(provide_compat_caller)},
        exception_handlers=handlers(message_error_handler),
        security=[{"bearer": []}],
        tags=["compatible"],
    )
    twilio = twilio_router(
        verify, tenants, settings.default_policy, client_ips, safe_numbers, attempts, factors
    )
    keyed = {**common, "caller": Provide(provide_caller)}
    result = [native, attempts_router(attempts, keyed), *factor_routers(factors, keyed)]
    result += [compat, twilio]
    callbacks = providers_router(verify, settings.providers)
    if callbacks is not None:
        result.append(callbacks)
    if inbox is not None:
        result.append(inbox_router(inbox, settings.providers.dev_inbox_token))
    return result
