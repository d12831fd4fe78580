"""HTTP layer of verify: parse, call the service, render. Never touches storage."""

from __future__ import annotations

import contextlib
import hmac
import html
import math
import time
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.handlers import BaseRouteHandler
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.types import Guard

from clave.platform.client_ip import is_loopback
from clave.platform.errors import handlers, message_error_handler
from clave.platform.lean import LeanRequest, LeanResponse, LeanRoute, native_errors
from clave.verify.client_ips import ClientIps
from clave.verify.delivery.inbox import InboxStore
from clave.verify.delivery.settings import ProviderSettings
from clave.verify.delivery.twilio import valid_signature
from clave.verify.delivery.webhook import decode_secret
from clave.verify.delivery.webhook import verify as verify_webhook
from clave.verify.destinations import mask, normalize_any
from clave.verify.errors import (
    BadSignature,
    Forbidden,
    InvalidDestination,
    InvalidParameter,
    Unauthorized,
)
from clave.verify.models import (
    MAX_CODE_LENGTH,
    MIN_CODE_LENGTH,
    Channel,
    SendStatus,
    Status,
    Tenant,
)
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
from clave.verify.tenants import DEFAULT_TENANT, Tenants
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
}


class StartVerification(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/verifications."""

    to: Destination
    channel: Channel
    locale: Annotated[str, msgspec.Meta(max_length=MAX_LOCALE_LENGTH)] | None = None
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


_SECONDS: dict[int, str] = {}  # whole seconds already formatted (a response has five stamps)


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds: what `datetime.fromtimestamp(ts, UTC)` would print,
    rounded to the microsecond as it does (half to even), in a third of its time."""
    fraction, whole = math.modf(ts)
    micros, seconds = round(fraction * 1e6), int(whole)
    if micros >= 1_000_000:
        micros, seconds = micros - 1_000_000, seconds + 1
    elif micros < 0:
        micros, seconds = micros + 1_000_000, seconds - 1
    head = _SECONDS.get(seconds)
    if head is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        head = _SECONDS[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{head}.{micros // 1000:03d}Z"


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


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>clave dev inbox</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.4em .8em;text-align:left;
vertical-align:top;border-bottom:1px solid #ddd}}</style></head><body>
<h1>clave dev inbox</h1>
<p>Messages clave would have sent, newest first. For development only: never enable
CLAVE_DEV_INBOX where real people are verified.</p>
<table><tr><th>time (UTC)</th><th>channel</th><th>to</th><th>message</th></tr>
{rows}
</table></body></html>
"""


def inbox_readers(token: str | None) -> Guard:
    """Who may read the dev inbox, which shows every code: with `token`, any peer presenting
    it as a Bearer token; without, only this machine (the peer and every forwarded address
    loopback, so a proxy on this machine does not open it to the world)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if token is not None:
            offered = connection.headers.get("authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(offered, f"Bearer {token}".encode()):
                raise Unauthorized("the dev inbox needs Authorization: Bearer <inbox token>")
            return
        forwarded = ",".join(connection.headers.getall("x-forwarded-for", []))
        addresses = [a.strip() for a in forwarded.split(",") if a.strip()]
        peer = connection.client.host if connection.client else ""
        if not all(is_loopback(a) for a in [peer, *addresses]):
            raise Forbidden(
                "the dev inbox answers this machine only (set CLAVE_DEV_INBOX_TOKEN to read it "
                "from elsewhere)"
            )

    return guard


def inbox_router(store: InboxStore, token: str | None = None) -> Router:
    """`/dev/inbox` (a page) and `/dev/inbox/messages` (JSON)."""

    async def fetch(to: str | None, limit: int) -> list[dict[str, Any]]:
        if to is not None:
            with contextlib.suppress(InvalidDestination):
                to = normalize_any(to)
        return [m.to_dict() for m in await store.latest(to=to, limit=limit)]

    @get("/", media_type=MediaType.HTML, include_in_schema=False)
    async def page() -> str:
        """The inbox as a page that refreshes itself."""
        rows = []
        for m in await fetch(None, 100):
            body = m["speech"] or m["text"]
            if m["subject"]:
                body = f"{m['subject']}\n{body}"
            rows.append(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>".format(
                    html.escape(iso(m["at"])),
                    html.escape(m["channel"]),
                    html.escape(m["to"]),
                    html.escape(body),
                )
            )
        return _PAGE.format(rows="\n".join(rows) or "<tr><td colspan=4>empty</td></tr>")

    @get("/messages", summary="Dev inbox messages, newest first", tags=["dev"])
    async def messages(
        to: Annotated[str | None, QueryParameter(max_length=MAX_DESTINATION_LENGTH)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Messages the dev inbox received, optionally for one destination."""
        return {"messages": await fetch(to, limit)}

    return Router(path="/dev/inbox", route_handlers=[page, messages], guards=[inbox_readers(token)])


# Twilio's MessageStatus / CallStatus values, as send statuses (None: not a final word yet).
_TWILIO_STATUS = {
    "sent": SendStatus.SENT,
    "delivered": SendStatus.DELIVERED,
    "read": SendStatus.DELIVERED,
    "undelivered": SendStatus.UNDELIVERED,
    "failed": SendStatus.FAILED,
    "completed": SendStatus.DELIVERED,
    "busy": SendStatus.UNDELIVERED,
    "no-answer": SendStatus.UNDELIVERED,
    "canceled": SendStatus.FAILED,
}


class StatusReport(msgspec.Struct, forbid_unknown_fields=True):
    """Body of the generic status callback, from the operator's own sender."""

    message_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    status: Annotated[str, msgspec.Meta(pattern="^(delivered|undelivered|failed)$")]
    error: Annotated[str, msgspec.Meta(max_length=500)] | None = None


def providers_router(verify: VerifyService, settings: ProviderSettings) -> Router | None:
    """Delivery-status callbacks: Twilio's and the signed webhook sender's."""
    handlers = []
    twilio = settings.twilio
    if twilio is not None and twilio.status_callback:
        callback_url, token = twilio.status_callback, twilio.auth_token

        @post(
            "/twilio/status", status_code=200, summary="Twilio status callback", tags=["providers"]
        )
        async def twilio_status(request: Request[Any, Any, Any]) -> dict[str, Any]:
            """Twilio reports on a message or call; X-Twilio-Signature is checked."""
            params = {k: str(v) for k, v in (await request.form()).items()}
            offered = request.headers.get("x-twilio-signature", "")
            # The signed URL is the one clave gave Twilio, not one rebuilt behind a proxy.
            if not valid_signature(token, callback_url, params, offered):
                raise BadSignature("X-Twilio-Signature does not match")
            sid = params.get("MessageSid") or params.get("CallSid")
            reported = params.get("MessageStatus") or params.get("CallStatus") or ""
            status = _TWILIO_STATUS.get(reported)
            if not sid:
                raise InvalidParameter("MessageSid or CallSid is required")
            if status is None or status is SendStatus.SENT:
                return {"applied": False}
            provider = "twilio-voice" if "CallSid" in params else "twilio"
            code = params.get("ErrorCode")
            error = f"Twilio {code}: {params.get('ErrorMessage', '')}".strip() if code else None
            return {"applied": await verify.report_delivery(provider, sid, status, error)}

        handlers.append(twilio_status)
    if settings.webhook is not None:
        key = decode_secret(settings.webhook.secret)

        @post(
            "/webhook/status",
            status_code=200,
            summary="Webhook sender's status callback",
            tags=["providers"],
        )
        async def webhook_status(request: Request[Any, Any, Any]) -> dict[str, Any]:
            """The operator's sender reports on a message, signed like clave's own webhooks."""
            body = await request.body()
            if not verify_webhook(key, dict(request.headers), body, now=time.time()):
                raise BadSignature("webhook signature missing, wrong or stale")
            try:
                report = msgspec.json.decode(body, type=StatusReport)
            except msgspec.ValidationError as exc:
                raise InvalidParameter(str(exc)) from None
            except msgspec.DecodeError:
                raise InvalidParameter("the body is not JSON") from None
            status = SendStatus(report.status)
            return {
                "applied": await verify.report_delivery(
                    "webhook", report.message_id, status, report.error
                )
            }

        handlers.append(webhook_status)
    if not handlers:
        return None
    return Router(path="/api/providers", route_handlers=handlers)


def routers(
    verify: VerifyService,
    tenants: Tenants,
    settings: VerifySettings,
    *,
    client_ips: ClientIps,
    inbox: InboxStore | None,
    safe_numbers: SafeNumbers,
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
    twilio = twilio_router(verify, tenants, settings.default_policy, client_ips, safe_numbers)
    result = [native, compat, twilio]
    callbacks = providers_router(verify, settings.providers)
    if callbacks is not None:
        result.append(callbacks)
    if inbox is not None:
        result.append(inbox_router(inbox, settings.providers.dev_inbox_token))
    return result
