"""Every provider against a real local endpoint that checks the exact request it receives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from clave.bootstrap import Settings
from clave.platform.settings import SettingsError
from clave.verify.bootstrap import verify_domain
from tests.api.conftest import Api, open_api, settings_for
from tests.support import RecordingServer, code_in

SID = "AC" + "a1" * 16
TOKEN = "tok" + "e" * 29
WEBHOOK_KEY = b"k" * 32
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()


@pytest.fixture
def twilio() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.stop()


@pytest.fixture
def hook() -> Iterator[RecordingServer]:
    server = RecordingServer()
    server.default = (200, {"ok": True})
    yield server
    server.stop()


def twilio_env(server: RecordingServer, **extra: str) -> dict[str, str]:
    return {
        "CLAVE_DEV_INBOX": "false",
        "CLAVE_TWILIO_ACCOUNT_SID": SID,
        "CLAVE_TWILIO_AUTH_TOKEN": TOKEN,
        "CLAVE_TWILIO_FROM": "+15005550006",
        "CLAVE_TWILIO_WHATSAPP_FROM": "+14155238886",
        "CLAVE_TWILIO_BASE_URL": server.url,
        "CLAVE_OUTBOX_BACKOFF": "0.05",
        **extra,
    }


def form(request: dict[str, Any]) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request["body"].decode()))


def basic(request: dict[str, Any]) -> str:
    scheme, _, value = request["headers"]["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(value).decode()


async def attempt_becomes(api: Api, vid: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll the verification until its first send attempt has `status` (the dispatcher records
    an outcome just after the provider answered)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        attempt: dict[str, Any] = (await api.get(f"/api/verifications/{vid}")).json()[
            "send_attempts"
        ][0]
        if attempt["status"] == status or time.monotonic() > deadline:
            return attempt
        await asyncio.sleep(0.02)


async def wait_for(server: RecordingServer, count: int = 1) -> list[dict[str, Any]]:
    import asyncio

    return await asyncio.to_thread(server.wait, count)


async def test_twilio_sms_request_and_code(tmp_path: Path, twilio: RecordingServer) -> None:
    async for api in open_api(settings_for(tmp_path, **twilio_env(twilio))):
        sent = await api.send("+14155552671")
        assert sent.status_code == 201
        [request] = await wait_for(twilio)
        assert request["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
        assert basic(request) == f"{SID}:{TOKEN}"
        assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
        fields = form(request)
        assert (fields["To"], fields["From"]) == ("+14155552671", "+15005550006")
        code = code_in(fields["Body"])
        assert "Acme" in fields["Body"]
        r = await api.check(code, id=sent.json()["id"])
        assert r.json()["status"] == "approved"
        # The request reached Twilio; the attempt is marked once its answer is back.
        attempt = await attempt_becomes(api, sent.json()["id"], "sent")
        assert (attempt["status"], attempt["provider"]) == ("sent", "twilio")


async def test_twilio_whatsapp_prefixes(tmp_path: Path, twilio: RecordingServer) -> None:
    async for api in open_api(settings_for(tmp_path, **twilio_env(twilio))):
        await api.send("+14155552671", "whatsapp")
        fields = form((await wait_for(twilio))[0])
        assert (fields["To"], fields["From"]) == ("whatsapp:+14155552671", "whatsapp:+14155238886")


async def test_twilio_messaging_service_instead_of_from(
    tmp_path: Path, twilio: RecordingServer
) -> None:
    env = twilio_env(
        twilio,
        CLAVE_TWILIO_MESSAGING_SERVICE_SID="MG" + "0" * 32,
        CLAVE_TWILIO_STATUS_CALLBACK="https://clave.example/cb",
    )
    async for api in open_api(settings_for(tmp_path, **env)):
        await api.send("+14155552671")
        fields = form((await wait_for(twilio))[0])
        assert fields["MessagingServiceSid"] == "MG" + "0" * 32
        assert "From" not in fields
        assert fields["StatusCallback"] == "https://clave.example/cb"


async def test_twilio_voice_says_the_digits_twice_in_the_locale(
    tmp_path: Path, twilio: RecordingServer
) -> None:
    async for api in open_api(settings_for(tmp_path, **twilio_env(twilio))):
        await api.send("+34612345678", "call")
        [request] = await wait_for(twilio)
        assert request["path"] == f"/2010-04-01/Accounts/{SID}/Calls.json"
        fields = form(request)
        assert (fields["To"], fields["From"]) == ("+34612345678", "+15005550006")
        twiml = fields["Twiml"]
        assert twiml.startswith('<Response><Say language="es-ES">')
        spoken = twiml.split(">", 2)[2]
        digits = [d for d in spoken if d.isdigit()]
        code = "".join(digits[: len(digits) // 2])
        assert len(code) == 6
        assert spoken.count(", ".join(code)) == 2


async def test_twilio_refusal_falls_back_to_the_next_provider(
    tmp_path: Path, twilio: RecordingServer, hook: RecordingServer
) -> None:
    twilio.answers = [(400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})]
    env = twilio_env(
        twilio,
        CLAVE_WEBHOOK_URL=hook.url + "/send",
        CLAVE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        CLAVE_SMS_PROVIDERS="twilio,webhook",
    )
    async for api in open_api(settings_for(tmp_path, **env)):
        sent = await api.send("+14155552671")
        await wait_for(twilio)
        [delivered] = await wait_for(hook)
        assert json.loads(delivered["body"])["to"] == "+14155552671"
        attempt = await attempt_becomes(api, sent.json()["id"], "sent")
        assert (attempt["status"], attempt["provider"]) == ("sent", "webhook")


async def test_twilio_outage_is_retried(tmp_path: Path, twilio: RecordingServer) -> None:
    twilio.answers = [
        (503, {"message": "down"}),
        (429, {"code": 20429, "message": "Too Many Requests"}),
    ]
    async for api in open_api(settings_for(tmp_path, **twilio_env(twilio))):
        sent = await api.send("+14155552671")
        requests = await wait_for(twilio, 3)
        assert len({form(r)["Body"] for r in requests}) == 1  # the same message each time
        import asyncio

        for _ in range(100):
            attempt = (await api.get(f"/api/verifications/{sent.json()['id']}")).json()[
                "send_attempts"
            ][0]
            if attempt["status"] == "sent":
                break
            await asyncio.sleep(0.05)
        assert attempt["status"] == "sent"


async def test_webhook_is_signed_the_standard_webhooks_way(
    tmp_path: Path, hook: RecordingServer
) -> None:
    env = {
        "CLAVE_DEV_INBOX": "false",
        "CLAVE_WEBHOOK_URL": hook.url + "/send",
        "CLAVE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    async for api in open_api(settings_for(tmp_path, **env)):
        sent = await api.send("ana@example.com", "email")
        [request] = await wait_for(hook)
        assert request["path"] == "/send"
        h = request["headers"]
        message_id, timestamp, signature = (
            h["webhook-id"],
            h["webhook-timestamp"],
            h["webhook-signature"],
        )
        assert abs(int(timestamp) - time.time()) < 30
        expected = base64.b64encode(
            hmac.new(
                WEBHOOK_KEY, f"{message_id}.{timestamp}.".encode() + request["body"], hashlib.sha256
            ).digest()
        ).decode()
        assert signature == f"v1,{expected}"
        body = json.loads(request["body"])
        assert (body["type"], body["channel"], body["to"], body["verification_id"]) == (
            "message.send",
            "email",
            "ana@example.com",
            sent.json()["id"],
        )
        assert body["subject"] == "Your Acme verification code"
        assert code_in(body["text"]) in body["html"]


def moto_state(moto_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(moto_url + "/moto-api/data.json") as answer:
        data: dict[str, Any] = json.load(answer)
    return data


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    return {
        "CLAVE_DEV_INBOX": "false",
        "CLAVE_AWS_REGION": "eu-west-1",
        "CLAVE_AWS_ENDPOINT_URL": moto_url,
    }


async def test_sns_sms_through_moto(tmp_path: Path, moto_url: str, aws_env: dict[str, str]) -> None:
    async for api in open_api(settings_for(tmp_path, **aws_env, CLAVE_SNS="true")):
        sent = await api.send("+14155559876")
        import asyncio

        for _ in range(100):
            sms = [
                m
                for m in moto_state(moto_url).get("sns", {}).get("SMS", [])
                if m["phone_number"] == "+14155559876"
            ]
            if sms:
                break
            await asyncio.sleep(0.05)
        [message] = sms
        code = code_in(message["message"])
        assert (await api.check(code, id=sent.json()["id"])).json()["status"] == "approved"
        attempt = (await api.get(f"/api/verifications/{sent.json()['id']}")).json()[
            "send_attempts"
        ][0]
        assert attempt["provider"] == "sns"


async def test_ses_email_through_moto(
    tmp_path: Path, moto_url: str, aws_env: dict[str, str]
) -> None:
    boto3.client("ses", region_name="eu-west-1", endpoint_url=moto_url).verify_email_identity(
        EmailAddress="no-reply@acme.example"
    )
    async for api in open_api(
        settings_for(tmp_path, **aws_env, CLAVE_SES_FROM="no-reply@acme.example")
    ):
        sent = await api.send("bo@example.com", "email", locale="es")
        import asyncio

        for _ in range(100):
            mails = [
                m
                for m in moto_state(moto_url).get("ses", {}).get("Message", [])
                if m["destinations"]["ToAddresses"] == ["bo@example.com"]
            ]
            if mails:
                break
            await asyncio.sleep(0.05)
        [mail] = mails
        assert (mail["source"], mail["subject"]) == (
            "no-reply@acme.example",
            "Tu código de verificación de Acme",
        )
        code = code_in(mail["body"])
        assert (await api.check(code, id=sent.json()["id"])).json()["status"] == "approved"


def test_provider_order_must_name_configured_providers(tmp_path: Path) -> None:
    settings = Settings.load({"CLAVE_DATA_DIR": str(tmp_path), "CLAVE_SMS_PROVIDERS": "twilio"})
    with pytest.raises(SettingsError, match="CLAVE_SMS_PROVIDERS names"):
        verify_domain(settings.verify, settings.platform)
    with pytest.raises(SettingsError, match="unknown provider"):
        Settings.load({"CLAVE_SMS_PROVIDERS": "carrier-pigeon"})
    with pytest.raises(SettingsError, match="go together"):
        Settings.load({"CLAVE_TWILIO_ACCOUNT_SID": SID})
    with pytest.raises(SettingsError, match="CLAVE_AWS_REGION"):
        Settings.load({"CLAVE_SNS": "true"})


async def test_a_configured_order_is_followed(
    tmp_path: Path, twilio: RecordingServer, hook: RecordingServer
) -> None:
    env = twilio_env(
        twilio,
        CLAVE_WEBHOOK_URL=hook.url,
        CLAVE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        CLAVE_SMS_PROVIDERS="webhook,twilio",
    )
    api: Api
    async for api in open_api(settings_for(tmp_path, **env)):
        await api.send("+14155552671")
        await wait_for(hook)
        assert twilio.requests == []


CALLBACK = "https://clave.example/api/providers/twilio/status"


def twilio_signature(url: str, params: dict[str, str]) -> str:
    signed = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(
        hmac.new(TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()


async def test_twilio_status_callback_is_verified_and_applied(
    tmp_path: Path, twilio: RecordingServer
) -> None:
    twilio.default = (201, {"sid": "SM" + "7" * 32})
    async for api in open_api(
        settings_for(tmp_path, **twilio_env(twilio, CLAVE_TWILIO_STATUS_CALLBACK=CALLBACK))
    ):
        sent = await api.send("+14155552671")
        assert form((await wait_for(twilio))[0])["StatusCallback"] == CALLBACK
        vid = sent.json()["id"]
        import asyncio

        for _ in range(100):
            attempt = (await api.get(f"/api/verifications/{vid}")).json()["send_attempts"][0]
            if attempt["status"] == "sent":
                break
            await asyncio.sleep(0.02)

        params = {
            "MessageSid": "SM" + "7" * 32,
            "MessageStatus": "delivered",
            "AccountSid": SID,
            "To": "+14155552671",
        }
        r = await api.client.post(
            "/api/providers/twilio/status", data=params, headers={"X-Twilio-Signature": "bad"}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (403, "bad_signature")
        tampered = {**params, "MessageStatus": "failed"}
        r = await api.client.post(
            "/api/providers/twilio/status",
            data=tampered,
            headers={"X-Twilio-Signature": twilio_signature(CALLBACK, params)},
        )
        assert r.status_code == 403
        r = await api.client.post(
            "/api/providers/twilio/status",
            data=params,
            headers={"X-Twilio-Signature": twilio_signature(CALLBACK, params)},
        )
        assert (r.status_code, r.json()) == (200, {"applied": True})
        attempt = (await api.get(f"/api/verifications/{vid}")).json()["send_attempts"][0]
        assert (attempt["status"], attempt["provider_message_id"]) == ("delivered", "SM" + "7" * 32)

        unknown = {**params, "MessageSid": "SM" + "9" * 32}
        r = await api.client.post(
            "/api/providers/twilio/status",
            data=unknown,
            headers={"X-Twilio-Signature": twilio_signature(CALLBACK, unknown)},
        )
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_message")


async def test_twilio_undelivered_report_fails_the_verification(
    tmp_path: Path, twilio: RecordingServer
) -> None:
    twilio.default = (201, {"sid": "SM" + "5" * 32})
    async for api in open_api(
        settings_for(tmp_path, **twilio_env(twilio, CLAVE_TWILIO_STATUS_CALLBACK=CALLBACK))
    ):
        vid = (await api.send("+14155552671")).json()["id"]
        await wait_for(twilio)
        assert (await attempt_becomes(api, vid, "sent"))["status"] == "sent"
        params = {
            "MessageSid": "SM" + "5" * 32,
            "MessageStatus": "undelivered",
            "ErrorCode": "30003",
            "ErrorMessage": "Unreachable handset",
        }
        r = await api.client.post(
            "/api/providers/twilio/status",
            data=params,
            headers={"X-Twilio-Signature": twilio_signature(CALLBACK, params)},
        )
        assert r.json() == {"applied": True}
        body = (await api.get(f"/api/verifications/{vid}")).json()
        assert body["status"] == "failed"
        assert body["send_attempts"][0]["error"] == "Twilio 30003: Unreachable handset"


async def test_webhook_status_callback_is_signed(tmp_path: Path, hook: RecordingServer) -> None:
    env = {
        "CLAVE_DEV_INBOX": "false",
        "CLAVE_WEBHOOK_URL": hook.url,
        "CLAVE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    async for api in open_api(settings_for(tmp_path, **env)):
        vid = (await api.send("+14155552671")).json()["id"]
        [request] = await wait_for(hook)
        message_id = request["headers"]["webhook-id"]
        assert (await attempt_becomes(api, vid, "sent"))["status"] == "sent"

        def signed(payload: dict[str, Any], ts: int | None = None) -> tuple[bytes, dict[str, str]]:
            body = json.dumps(payload).encode()
            stamp = ts if ts is not None else int(time.time())
            sig = base64.b64encode(
                hmac.new(WEBHOOK_KEY, f"r1.{stamp}.".encode() + body, hashlib.sha256).digest()
            ).decode()
            return body, {
                "webhook-id": "r1",
                "webhook-timestamp": str(stamp),
                "webhook-signature": f"v1,{sig}",
                "content-type": "application/json",
            }

        body, headers = signed(
            {"message_id": message_id, "status": "delivered"}, ts=int(time.time()) - 3600
        )
        assert (
            await api.client.post("/api/providers/webhook/status", content=body, headers=headers)
        ).status_code == 403
        body, headers = signed({"message_id": message_id, "status": "delivered"})
        assert (
            await api.client.post(
                "/api/providers/webhook/status", content=body + b" ", headers=headers
            )
        ).status_code == 403
        r = await api.client.post("/api/providers/webhook/status", content=body, headers=headers)
        assert (r.status_code, r.json()) == (200, {"applied": True})
        assert (await api.get(f"/api/verifications/{vid}")).json()["send_attempts"][0][
            "status"
        ] == "delivered"
        body, headers = signed({"message_id": message_id, "status": "lost"})
        assert (
            await api.client.post("/api/providers/webhook/status", content=body, headers=headers)
        ).status_code == 400


async def test_a_messaging_configuration_sends_a_countrys_sms_through_its_service(
    tmp_path: Path, twilio: RecordingServer
) -> None:
    """Twilio's Messaging Configurations: SMS to the configured country go out through that
    Messaging Service; other countries as before (From)."""
    service_sid = "MG" + "ab" * 16
    async for api in open_api(settings_for(tmp_path, **twilio_env(twilio))):
        account, token, _, _ = await api.domain.tenants.create_twilio_credentials(
            api.domain.settings.default_policy
        )
        auth = basic_header(account, token)
        created = await api.client.post("/v2/Services", data={"FriendlyName": "Shop"}, headers=auth)
        sid = created.json()["sid"]
        base = f"/v2/Services/{sid}/MessagingConfigurations"
        made = await api.client.post(
            base, data={"Country": "gb", "MessagingServiceSid": service_sid}, headers=auth
        )
        assert made.status_code == 201, made.text
        entry = made.json()
        assert (entry["country"], entry["messaging_service_sid"]) == ("GB", service_sid)
        assert entry["url"].endswith(f"{base}/GB")
        twice = await api.client.post(
            base, data={"Country": "GB", "MessagingServiceSid": service_sid}, headers=auth
        )
        assert (twice.status_code, twice.json().get("code")) == (400, 60200), twice.text
        bad = await api.client.post(
            base, data={"Country": "GB1", "MessagingServiceSid": "MG1"}, headers=auth
        )
        assert (bad.status_code, bad.json()["code"]) == (400, 60200)
        await api.client.post(
            base, data={"Country": "FR", "MessagingServiceSid": "MG" + "cd" * 16}, headers=auth
        )
        listed = (await api.client.get(base, params={"PageSize": "1"}, headers=auth)).json()
        assert [c["country"] for c in listed["messaging_configurations"]] == ["FR"]
        assert listed["meta"]["key"] == "messaging_configurations"
        assert listed["meta"]["next_page_url"].endswith("PageSize=1&Page=1")
        for to in ("+447400123456", "+14155552671"):
            sent = await api.client.post(
                f"/v2/Services/{sid}/Verifications", data={"To": to, "Channel": "sms"}, headers=auth
            )
            assert sent.status_code == 201, sent.text
        requests = await wait_for(twilio, 2)
        by_to = {form(r)["To"]: form(r) for r in requests}
        assert by_to["+447400123456"]["MessagingServiceSid"] == service_sid
        assert "From" not in by_to["+447400123456"]
        assert by_to["+14155552671"]["From"] == "+15005550006"
        # Changed, then removed: GB's SMS go out as before.
        other = "MG" + "ef" * 16
        changed = await api.client.post(
            f"{base}/GB", data={"MessagingServiceSid": other}, headers=auth
        )
        assert changed.json()["messaging_service_sid"] == other
        assert (await api.client.get(f"{base}/gb", headers=auth)).json()[
            "messaging_service_sid"
        ] == (other)
        assert (await api.client.delete(f"{base}/GB", headers=auth)).status_code == 204
        gone = await api.client.get(f"{base}/GB", headers=auth)
        assert (gone.status_code, gone.json()["code"]) == (404, 20404)
        # A country without phone numbers is refused; `all` serves every other country.
        nowhere = await api.client.post(
            base, data={"Country": "ZZ", "MessagingServiceSid": other}, headers=auth
        )
        assert (nowhere.status_code, nowhere.json()["code"]) == (400, 60200)
        everywhere = await api.client.post(
            base, data={"Country": "ALL", "MessagingServiceSid": other}, headers=auth
        )
        assert everywhere.json()["country"] == "all", everywhere.text
        assert (await api.client.get(f"{base}/all", headers=auth)).status_code == 200
        for to in ("+14155550100", "+33612345678"):
            await api.client.post(
                f"/v2/Services/{sid}/Verifications", data={"To": to, "Channel": "sms"}, headers=auth
            )
        requests = await wait_for(twilio, 4)
        by_to = {form(r)["To"]: form(r) for r in requests}
        assert by_to["+14155550100"]["MessagingServiceSid"] == other
        assert by_to["+33612345678"]["MessagingServiceSid"] == "MG" + "cd" * 16  # FR's own


def basic_header(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}
