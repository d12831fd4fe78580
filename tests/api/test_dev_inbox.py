"""The dev inbox shows every code: it is for development on this machine only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from clave.platform.app import build_app
from clave.platform.settings import SettingsError
from clave.verify.bootstrap import verify_domain
from tests.api.conftest import open_api, settings_for


async def inbox(app: object, peer: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://clave.test") as client:
        return await client.get("/dev/inbox/messages", headers=headers)


async def test_only_this_machine_reads_it(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path)):
        app = api.client._transport.app  # type: ignore[attr-defined]
        assert (await inbox(app, "127.0.0.1")).status_code == 200
        assert (await inbox(app, "::1")).status_code == 200
        for peer in ("192.0.2.10", "2001:db8::1"):
            r = await inbox(app, peer)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
        # A proxy on this machine forwarding a stranger does not open it either.
        r = await inbox(app, "127.0.0.1", {"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 403
        r = await api.client.get("/dev/inbox/", headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 403


async def test_a_token_opens_it_to_any_peer_that_has_it(tmp_path: Path) -> None:
    token = "inbox-token-0123456789"
    async for api in open_api(settings_for(tmp_path, CLAVE_DEV_INBOX_TOKEN=token)):
        app = api.client._transport.app  # type: ignore[attr-defined]
        good = {"Authorization": f"Bearer {token}"}
        assert (await inbox(app, "192.0.2.10", good)).status_code == 200
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            r = await inbox(app, "192.0.2.10", headers)
            assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
        # The token is required from this machine too.
        assert (await inbox(app, "127.0.0.1")).status_code == 401


def test_it_never_stands_beside_a_real_provider(tmp_path: Path) -> None:
    real = {
        "CLAVE_WEBHOOK_URL": "http://127.0.0.1:9/send",
        "CLAVE_WEBHOOK_SECRET": "whsec_" + "a" * 44,
    }
    settings = settings_for(tmp_path, **real)
    with pytest.raises(SettingsError, match=r"CLAVE_DEV_INBOX=true beside a real provider for sms"):
        verify_domain(settings.verify, settings.platform)
    # Routed apart (the real provider for nothing the inbox serves): allowed.
    apart = settings_for(
        tmp_path, **real, CLAVE_WEBHOOK_CHANNELS="email", CLAVE_EMAIL_PROVIDERS="webhook"
    )
    build_app(apart.platform, [verify_domain(apart.verify, apart.platform)])
    with pytest.raises(SettingsError, match="CLAVE_DEV_INBOX_TOKEN"):
        settings_for(tmp_path, CLAVE_DEV_INBOX_TOKEN="short")
