"""clave's signed requests and signature-checking routes, proved against the reference libraries a
receiver or a sender would use: `standardwebhooks` for the delivery and event webhooks and the
webhook status callback, `twilio.request_validator.RequestValidator` for Twilio's callback."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError
from twilio.request_validator import RequestValidator

from tests.api.conftest import Api, open_api, settings_for
from tests.support import RecordingServer

SECRET = "whsec_" + base64.b64encode(b"r" * 32).decode()
TOKEN = "tok" + "r" * 29
SID = "AC" + "b2" * 16
MESSAGE_SID = "SM" + "4" * 32
CALLBACK = "https://clave.example/api/providers/twilio/status"


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    server = RecordingServer()
    server.default = (200, {})
    yield server
    server.stop()


async def received(server: RecordingServer, count: int = 1) -> list[dict[str, Any]]:
    return await asyncio.to_thread(server.wait, count)


def refused_when_tampered(request: dict[str, Any]) -> None:
    """The library refuses the same request with its body or its timestamp changed."""
    headers, body = request["headers"], request["body"]
    stamp = int(headers["webhook-timestamp"])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers | {"webhook-timestamp": str(stamp - 1)})
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(body, headers)


async def test_delivery_webhooks_verify_with_the_library(
    tmp_path: Path, receiver: RecordingServer
) -> None:
    env = {
        "CLAVE_DEV_INBOX": "false",
        "CLAVE_WEBHOOK_URL": receiver.url + "/send",
        "CLAVE_WEBHOOK_SECRET": SECRET,
    }
    async for api in open_api(settings_for(tmp_path, **env)):
        vid = (await api.send("+14155552671", locale="es")).json()["id"]
        [request] = await received(receiver)
        payload = Webhook(SECRET).verify(request["body"], request["headers"])
        assert (payload["type"], payload["verification_id"]) == ("message.send", vid)
        assert "código" in payload["text"]  # non-ASCII text signed as the bytes sent
        refused_when_tampered(request)


async def test_event_webhooks_verify_with_the_library(
    tmp_path: Path, receiver: RecordingServer
) -> None:
    env = {"CLAVE_EVENTS_URL": receiver.url + "/events", "CLAVE_EVENTS_SECRET": SECRET}
    async for api in open_api(settings_for(tmp_path, **env)):
        vid = (await api.send("+14155552671")).json()["id"]
        await api.check(await api.code("+14155552671"), id=vid)
        [request] = await received(receiver)
        payload = Webhook(SECRET).verify(request["body"], request["headers"])
        assert (payload["type"], payload["data"]["verification_id"]) == (
            "verification.approved",
            vid,
        )
        refused_when_tampered(request)


async def settled(api: Api, vid: str) -> None:
    """Wait until the first send attempt is recorded as sent (the provider answered)."""
    for _ in range(250):
        attempt = (await api.get(f"/api/verifications/{vid}")).json()["send_attempts"][0]
        if attempt["status"] == "sent":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the attempt stayed {attempt['status']}")


def signed(body: str, sender: Webhook, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed by the library as a sender would."""
    return {
        "content-type": "application/json",
        "webhook-id": "report_1",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": sender.sign("report_1", at, body),
    }


async def test_status_reports_signed_by_the_library_are_accepted(
    tmp_path: Path, receiver: RecordingServer
) -> None:
    env = {
        "CLAVE_DEV_INBOX": "false",
        "CLAVE_WEBHOOK_URL": receiver.url,
        "CLAVE_WEBHOOK_SECRET": SECRET,
    }
    async for api in open_api(settings_for(tmp_path, **env)):
        vid = (await api.send("+14155552671")).json()["id"]
        [request] = await received(receiver)
        await settled(api, vid)
        report = json.dumps({"message_id": request["headers"]["webhook-id"], "status": "delivered"})
        now = datetime.now(UTC)
        other = Webhook("whsec_" + base64.b64encode(b"x" * 32).decode())
        for refused in (
            signed(report, other, now),
            signed(report, Webhook(SECRET), now - timedelta(hours=1)),
            signed(report, Webhook(SECRET), now) | {"webhook-id": "report_2"},
        ):
            r = await api.client.post(
                "/api/providers/webhook/status", content=report, headers=refused
            )
            assert (r.status_code, r.json()["error"]["code"]) == (403, "bad_signature")
        r = await api.client.post(
            "/api/providers/webhook/status",
            content=report,
            headers=signed(report, Webhook(SECRET), now),
        )
        assert (r.status_code, r.json()) == (200, {"applied": True})


async def test_twilio_callbacks_signed_by_request_validator_are_accepted(tmp_path: Path) -> None:
    twilio = RecordingServer()
    twilio.default = (201, {"sid": MESSAGE_SID})
    env = {
        "CLAVE_DEV_INBOX": "false",
        "CLAVE_TWILIO_ACCOUNT_SID": SID,
        "CLAVE_TWILIO_AUTH_TOKEN": TOKEN,
        "CLAVE_TWILIO_FROM": "+15005550006",
        "CLAVE_TWILIO_BASE_URL": twilio.url,
        "CLAVE_TWILIO_STATUS_CALLBACK": CALLBACK,
    }
    try:
        async for api in open_api(settings_for(tmp_path, **env)):
            vid = (await api.send("+14155552671")).json()["id"]
            await received(twilio)
            await settled(api, vid)
            params = {
                "AccountSid": SID,
                "MessageSid": MESSAGE_SID,
                "MessageStatus": "delivered",
                "To": "+14155552671",
                "ApiVersion": "2010-04-01",
            }
            reference = RequestValidator(TOKEN)
            for refused in (
                RequestValidator("another-token").compute_signature(CALLBACK, params),
                reference.compute_signature(CALLBACK.replace("https", "http"), params),
                reference.compute_signature(CALLBACK, {**params, "MessageStatus": "failed"}),
            ):
                r = await api.client.post(
                    "/api/providers/twilio/status",
                    data=params,
                    headers={"X-Twilio-Signature": refused},
                )
                assert (r.status_code, r.json()["error"]["code"]) == (403, "bad_signature")
            r = await api.client.post(
                "/api/providers/twilio/status",
                data=params,
                headers={"X-Twilio-Signature": reference.compute_signature(CALLBACK, params)},
            )
            assert (r.status_code, r.json()) == (200, {"applied": True})
            attempt = (await api.get(f"/api/verifications/{vid}")).json()["send_attempts"][0]
            assert attempt["status"] == "delivered"
    finally:
        twilio.stop()
