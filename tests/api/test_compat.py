"""The routes of the original Express service keep their shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import Api, open_api, settings_for

PHONE = "+34612345678"


async def test_send_code_and_verify_code(api: Api) -> None:
    r = await api.post("/api/messages/send-code", {"to": PHONE})
    assert (r.status_code, r.json()) == (200, {"message": True})
    [message] = await api.inbox(PHONE)
    assert message["channel"] == "sms"
    assert "Tu código" in message["text"]  # a Spanish number gets Spanish
    code = await api.code(PHONE)
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    r = await api.post("/api/messages/verify-code", {"to": PHONE, "code": wrong})
    assert (r.status_code, r.json()) == (200, {"message": "pending"})
    r = await api.post("/api/messages/verify-code", {"to": PHONE, "code": code})
    assert (r.status_code, r.json()) == (200, {"message": "approved"})


async def test_errors_are_400_with_a_message(api: Api) -> None:
    for path, body in [
        ("/api/messages/send-code", {}),
        ("/api/messages/send-code", {"to": "612345678"}),
        ("/api/messages/verify-code", {"to": PHONE}),
        ("/api/messages/verify-code", {"to": PHONE, "code": "123456"}),
    ]:
        r = await api.post(path, body)
        assert r.status_code == 400, (path, body, r.text)
        assert set(r.json()) == {"message"}
        assert r.json()["message"]


async def test_key_required_unless_anonymous_is_enabled(tmp_path: Path, api: Api) -> None:
    r = await api.client.post("/api/messages/send-code", json={"to": PHONE})
    assert r.status_code == 401
    assert set(r.json()) == {"message"}
    env = {"CLAVE_COMPAT_ANONYMOUS": "true", "CLAVE_LIMIT_PEER_IP": "true"}
    async for anon in open_api(settings_for(tmp_path / "anon", **env)):
        r = await anon.client.post("/api/messages/send-code", json={"to": PHONE})
        assert (r.status_code, r.json()) == (200, {"message": True})


def test_anonymous_routes_refuse_to_start_without_per_ip_counting(tmp_path: Path) -> None:
    from clave.platform.settings import SettingsError

    with pytest.raises(SettingsError, match="CLAVE_LIMIT_PEER_IP"):
        settings_for(tmp_path, CLAVE_COMPAT_ANONYMOUS="true")


async def test_anonymous_sends_count_against_the_callers_ip(tmp_path: Path) -> None:
    env = {
        "CLAVE_COMPAT_ANONYMOUS": "true",
        "CLAVE_LIMIT_PEER_IP": "true",
        "CLAVE_LIMIT_SENDS_PER_IP": "2/3600",
    }
    async for anon in open_api(settings_for(tmp_path, **env)):
        for to in ("+34612345671", "+34612345672"):
            r = await anon.client.post("/api/messages/send-code", json={"to": to})
            assert r.status_code == 200
        r = await anon.client.post("/api/messages/send-code", json={"to": "+34612345673"})
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) > 0


async def test_compat_channel_from_settings(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_COMPAT_CHANNEL="whatsapp")):
        await api.post("/api/messages/send-code", {"to": PHONE})
        [message] = await api.inbox(PHONE)
        assert message["channel"] == "whatsapp"
