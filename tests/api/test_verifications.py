from __future__ import annotations

import asyncio
import time
from pathlib import Path

from clave.verify.timestamps import iso
from tests.api.conftest import Api, open_api, settings_for
from tests.support import FakeClock, SmtpServer, code_in, html_part, text_part

PHONE = "+14155552671"


async def test_sms_flow_through_the_dev_inbox(api: Api) -> None:
    r = await api.send("+1 (415) 555-2671")
    assert r.status_code == 201
    body = r.json()
    assert body["id"].startswith("VE")
    assert body["to"] == "+14******671"
    assert (body["channel"], body["status"], body["valid"]) == ("sms", "pending", False)
    assert (body["check_attempts_left"], body["sends_left"]) == (5, 4)
    assert body["expires_at"].endswith("Z")
    assert [a["status"] for a in body["send_attempts"]] == ["queued"]
    code = await api.code(PHONE)
    assert code not in r.text

    wrong = str((int(code) + 1) % 10**6).zfill(6)
    r = await api.check(wrong, to=PHONE)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["valid"], r.json()["check_attempts_left"]) == (
        "pending",
        False,
        4,
    )

    r = await api.check(code, id=body["id"])
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["valid"]) == ("approved", True)
    assert code not in r.text

    r = await api.check(code, id=body["id"])
    assert r.status_code == 404
    assert r.json() == {
        "error": {"code": "verification_not_found", "message": "no pending verification found"}
    }

    r = await api.get(f"/api/verifications/{body['id']}")
    assert r.status_code == 200
    assert r.json()["status"] == "approved"
    assert r.json()["send_attempts"][0]["status"] == "sent"
    assert r.json()["send_attempts"][0]["provider"] == "inbox"


async def test_email_flow_through_a_real_smtp_server(api: Api, smtp: SmtpServer) -> None:
    r = await api.send("ana@example.com", "email", locale="es")
    assert r.status_code == 201
    [mail] = await smtp.await_for("ana@example.com")
    assert mail["From"] == "Acme <no-reply@acme.example>"
    assert mail["Subject"] == "Tu código de verificación de Acme"
    code = code_in(text_part(mail))
    assert code in html_part(mail)
    assert "No compartas" in text_part(mail)
    r = await api.check(code, to="ana@example.com")
    assert r.json()["status"] == "approved"


async def test_resend_same_code_then_429_with_retry_after(api: Api) -> None:
    first = await api.send(PHONE)
    code = await api.code(PHONE)
    for left in (3, 2, 1, 0):
        r = await api.send(PHONE, "whatsapp")
        assert r.status_code == 200  # re-sent, not created
        assert r.json()["id"] == first.json()["id"]
        assert r.json()["sends_left"] == left
    messages = await api.inbox(PHONE, 5)
    assert {code_in(m["text"]) for m in messages} == {code}
    assert {m["channel"] for m in messages} == {"sms", "whatsapp"}
    r = await api.send(PHONE)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "max_send_attempts_reached"
    assert 590 <= int(r.headers["Retry-After"]) <= 600


async def test_lock_after_five_wrong(api: Api) -> None:
    sent = await api.send(PHONE)
    code = await api.code(PHONE)
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    statuses = [(await api.check(wrong, to=PHONE)).json()["status"] for _ in range(5)]
    assert statuses == ["pending"] * 4 + ["max_attempts_reached"]
    r = await api.check(code, id=sent.json()["id"])
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "max_check_attempts_reached"
    r = await api.get(f"/api/verifications/{sent.json()['id']}")
    assert r.json()["status"] == "max_attempts_reached"


async def test_fifty_concurrent_checks_of_the_right_code_approve_once(api: Api) -> None:
    sent = await api.send(PHONE)
    code = await api.code(PHONE)
    results = await asyncio.gather(*(api.check(code, id=sent.json()["id"]) for _ in range(50)))
    approved = [r for r in results if r.status_code == 200 and r.json()["status"] == "approved"]
    assert len(approved) == 1
    assert {r.status_code for r in results} <= {200, 404, 429}


async def test_cancel(api: Api) -> None:
    sent = await api.send(PHONE)
    code = await api.code(PHONE)
    vid = sent.json()["id"]
    r = await api.post(f"/api/verifications/{vid}/cancel", None)
    assert (r.status_code, r.json()["status"]) == (200, "canceled")
    assert (await api.check(code, id=vid)).status_code == 404
    r = await api.post(f"/api/verifications/{vid}/cancel", None)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "verification_not_pending")
    r = await api.post("/api/verifications/VEnope/cancel", None)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "verification_not_found")


async def test_expiry_with_a_short_ttl(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    async for api in open_api(settings_for(tmp_path, CLAVE_CODE_TTL="30"), clock=clock):
        sent = await api.send(PHONE)
        assert sent.json()["expires_at"] == iso(clock.now + 30)
        code = await api.code(PHONE)
        clock.advance(29)
        vid = sent.json()["id"]
        assert (await api.get(f"/api/verifications/{vid}")).json()["status"] == "pending"
        clock.advance(1)
        assert (await api.get(f"/api/verifications/{vid}")).json()["status"] == "expired"
        r = await api.check(code, to=PHONE)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "verification_not_found")
        # A new request after expiry starts a new verification with a new code.
        again = await api.send(PHONE)
        assert again.status_code == 201
        assert again.json()["id"] != vid


async def test_channel_without_provider_is_refused(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_DEV_INBOX="false")):
        r = await api.send(PHONE)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "channel_unavailable"
        assert await api.domain.store.pending_deliveries() == 0


async def test_tenant_isolation(api: Api) -> None:
    other = await api.domain.tenants.create_tenant("other", api.domain.settings.default_policy)
    other_key = await api.domain.tenants.create_api_key(other.name)
    sent = await api.send(PHONE)
    code = await api.code(PHONE)
    headers = {"Authorization": f"Bearer {other_key}"}
    assert (
        await api.get(f"/api/verifications/{sent.json()['id']}", headers=headers)
    ).status_code == 404
    r = await api.post("/api/verifications/check", {"code": code, "to": PHONE}, headers=headers)
    assert r.status_code == 404


async def test_valid_means_approved_on_every_read(api: Api) -> None:
    sent = await api.send(PHONE)
    vid = sent.json()["id"]
    assert (await api.get(f"/api/verifications/{vid}")).json()["valid"] is False
    await api.check(await api.code(PHONE), id=vid)
    assert (await api.get(f"/api/verifications/{vid}")).json()["valid"] is True
