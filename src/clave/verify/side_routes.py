"""Routes beside the native API: the dev inbox (a page and JSON) and the providers' delivery
status callbacks (Twilio's, and the signed webhook sender's)."""

from __future__ import annotations

import contextlib
import hmac
import html
import time
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Router, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import QueryParameter
from litestar.types import Guard

from clave.platform.client_ip import is_loopback
from clave.verify.delivery.inbox import InboxStore
from clave.verify.delivery.settings import ProviderSettings
from clave.verify.delivery.twilio import valid_signature
from clave.verify.delivery.webhook import decode_secret
from clave.verify.delivery.webhook import verify as verify_webhook
from clave.verify.destinations import normalize_any
from clave.verify.errors import (
    BadSignature,
    Forbidden,
    InvalidDestination,
    InvalidParameter,
    Unauthorized,
)
from clave.verify.models import SendStatus
from clave.verify.requests import MAX_DESTINATION_LENGTH
from clave.verify.service import VerifyService
from clave.verify.timestamps import iso

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
