"""Signed webhooks, the Standard Webhooks way: the operator's own sender receives the message.

Headers `webhook-id`, `webhook-timestamp` and `webhook-signature` ("v1," + base64 of
HMAC-SHA256 over "{id}.{timestamp}.{body}" with the secret), so any Standard Webhooks library
verifies it. The id is stable per send attempt, so a receiver can drop the duplicates a retry
may cause.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx

from clave.verify.delivery.base import DeliveryError, OutgoingMessage
from clave.verify.models import Channel

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def decode_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret (or a plain base64 one)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(
    key: bytes, headers: dict[str, str], body: bytes, *, now: float, tolerance: float = 300
) -> bool:
    """Whether a Standard Webhooks request is authentic and fresh (constant-time compare)."""
    message_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    # isdigit() alone admits digits int() refuses ("²"): ASCII digits only, and not too many.
    if not message_id or not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    expected = sign(key, message_id, int(timestamp), body)
    offered = headers.get("webhook-signature", "").split()
    return any(
        candidate.isascii() and hmac.compare_digest(expected, candidate) for candidate in offered
    )


class SignedWebhook:
    """POSTs signed JSON to one URL; shared by the webhook provider and event delivery."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._key = decode_secret(secret)
        self._http = httpx.AsyncClient(timeout=timeout)
        self._clock = clock

    async def post(self, message_id: str, payload: dict[str, object]) -> httpx.Response:
        """Send one signed payload; DeliveryError unless it was accepted (2xx)."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, message_id, timestamp, body),
        }
        try:
            response = await self._http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {exc!r}", permanent=False) from exc
        if 200 <= response.status_code < 300:
            return response
        permanent = 400 <= response.status_code < 500 and response.status_code not in (
            408,
            409,
            429,
        )
        raise DeliveryError(f"webhook answered {response.status_code}", permanent=permanent)

    async def close(self) -> None:
        """Close connections."""
        await self._http.aclose()


class WebhookProvider:
    """Hands the rendered message to the operator's own sender."""

    name = "webhook"

    def __init__(self, hook: SignedWebhook, channels: frozenset[Channel]) -> None:
        self._hook = hook
        self.channels = channels

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        """POST the message; the webhook id is the provider message id."""
        message_id = f"msg_{outgoing.attempt_id}"
        m = outgoing.message
        await self._hook.post(
            message_id,
            {
                "type": "message.send",
                "channel": outgoing.channel.value,
                "to": outgoing.to,
                "locale": outgoing.locale,
                "text": m.text,
                "subject": m.subject,
                "html": m.html,
                "speech": m.speech,
                "verification_id": outgoing.verification_id,
                "attempt_id": outgoing.attempt_id,
            },
        )
        return message_id

    async def close(self) -> None:
        """Close connections."""
        await self._hook.close()
