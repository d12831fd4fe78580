"""Rate limits through the API: stable codes, Retry-After, only failures spend the check budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clave.verify.models import Policy
from tests.api.conftest import open_api, settings_for

PHONE = "+14155552671"


async def test_sends_per_client_ip(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_LIMIT_SENDS_PER_IP="2/3600")):
        for i in range(2):
            r = await api.send(f"+1415555267{i}", client_ip="203.0.113.7")
            assert r.status_code == 201
        r = await api.send("+14155552679", client_ip="203.0.113.7")
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "too_many_sends_from_ip"
        assert 0 < int(r.headers["Retry-After"]) <= 3600
        assert await api.domain.store.pending_deliveries() <= 2  # the refused send queued nothing
        # Another IP, or no IP declared (the caller's server), is not held back.
        assert (await api.send("+14155552679", client_ip="2001:db8::1")).status_code == 201
        assert (await api.send("+14155552678")).status_code == 201
        r = await api.send("+14155552677", client_ip="not-an-ip")
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_parameter")


async def test_failed_checks_per_ip_and_right_codes_are_free(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_LIMIT_FAILED_CHECKS_PER_IP="3/900")):
        ip = "198.51.100.9"
        # Right codes never spend the budget.
        for i in range(5):
            to = f"+1415555260{i}"
            vid = (await api.send(to)).json()["id"]
            code = await api.code(to)
            r = await api.check(code, id=vid, client_ip=ip)
            assert r.json()["status"] == "approved"
        vid = (await api.send(PHONE)).json()["id"]
        code = await api.code(PHONE)
        wrong = str((int(code) + 1) % 10**6).zfill(6)
        for _ in range(2):
            assert (await api.check(wrong, id=vid, client_ip=ip)).json()["status"] == "pending"
        # An unknown verification is a failure too (guessing ids).
        assert (await api.check(wrong, id="VE" + "0" * 32, client_ip=ip)).status_code == 404
        r = await api.check(code, id=vid, client_ip=ip)
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_failed_checks_from_ip")
        assert int(r.headers["Retry-After"]) > 0
        # The verification itself was not touched by the refused check: from elsewhere it works.
        r = await api.check(code, id=vid, client_ip="198.51.100.10")
        assert (r.json()["status"], r.json()["check_attempts_left"]) == ("approved", 2)


async def test_service_rate_and_daily_cap(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_LIMIT_SENDS_PER_SERVICE="2/60")):
        for i in range(2):
            assert (await api.send(f"+1415555261{i}")).status_code == 201
        r = await api.send("+14155552619")
        assert (r.status_code, r.json()["error"]["code"]) == (429, "service_send_rate_exceeded")
    async for api in open_api(settings_for(tmp_path / "cap", CLAVE_LIMIT_SENDS_PER_DAY="1/86400")):
        assert (await api.send("+14155552620")).status_code == 201
        r = await api.send("+14155552621")
        assert (r.status_code, r.json()["error"]["code"]) == (429, "daily_send_cap_reached")


async def test_peer_ip_through_a_trusted_proxy(tmp_path: Path) -> None:
    env = {
        "CLAVE_LIMIT_SENDS_PER_IP": "1/3600",
        "CLAVE_LIMIT_PEER_IP": "true",
        "CLAVE_PROXY_HOPS": "1",
    }
    async for api in open_api(settings_for(tmp_path, **env)):
        proxied = {**api.auth, "X-Forwarded-For": "spoofed, 192.0.2.44"}
        r = await api.post(
            "/api/verifications", {"to": "+14155552630", "channel": "sms"}, headers=proxied
        )
        assert r.status_code == 201
        # The spoofed left-most entry is ignored: it is the proxy's entry that counts.
        again = {**api.auth, "X-Forwarded-For": "other, 192.0.2.44"}
        r = await api.post(
            "/api/verifications", {"to": "+14155552631", "channel": "sms"}, headers=again
        )
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_sends_from_ip")
        r = await api.post("/api/messages/send-code", {"to": "+14155552632"}, headers=again)
        assert r.status_code == 429
        assert set(r.json()) == {"message"}


async def test_a_service_sets_its_own_limits(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_LIMIT_SENDS_PER_IP="20/3600")):
        strict = await api.domain.tenants.create_tenant(
            "strict", Policy(limits=(("failed_checks_per_ip", "1/900"), ("sends_per_ip", "1/3600")))
        )
        headers = {
            "Authorization": f"Bearer {await api.domain.tenants.create_api_key(strict.name)}"
        }
        ip = "203.0.113.80"

        async def send(to: str, h: dict[str, str], client: Any = api, ip: str = ip) -> int:
            r = await client.post(
                "/api/verifications", {"to": to, "channel": "sms", "client_ip": ip}, headers=h
            )
            return int(r.status_code)

        assert await send("+14155552640", headers) == 201
        assert await send("+14155552641", headers) == 429  # its own 1 per hour
        assert await send("+14155552641", api.auth) == 201  # the deployment's 20 for others
        assert await send("+14155552642", api.auth) == 201
        with pytest.raises(Exception, match="limit"):
            await api.domain.tenants.update_policy(
                "strict", Policy(limits=(("sends_per_minute", "1/60"),))
            )


async def test_v2_counts_the_peer_when_end_users_reach_clave(tmp_path: Path) -> None:
    env = {
        "CLAVE_LIMIT_PEER_IP": "true",
        "CLAVE_LIMIT_SENDS_PER_IP": "2/3600",
        "CLAVE_LIMIT_FAILED_CHECKS_PER_IP": "2/900",
    }
    async for api in open_api(settings_for(tmp_path, **env)):
        sid, token, _, _ = await api.domain.tenants.create_twilio_credentials(Policy())
        auth = (sid, token)
        service = await api.client.post("/v2/Services", data={"FriendlyName": "P"}, auth=auth)
        path = f"/v2/Services/{service.json()['sid']}"
        statuses = [
            (
                await api.client.post(
                    f"{path}/Verifications", data={"To": f"+1415555265{n}", "Channel": "sms"},
                    auth=auth,
                )
            ).status_code
            for n in range(3)
        ]  # fmt: skip
        assert statuses == [201, 201, 429]
        checks = [
            (
                await api.client.post(
                    f"{path}/VerificationCheck", data={"To": "+14155552650", "Code": "000000"},
                    auth=auth,
                )
            ).status_code
            for _ in range(3)
        ]  # fmt: skip
        assert checks == [200, 200, 429]
