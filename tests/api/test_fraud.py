"""The fraud guard through the API: geo permissions, blocked prefixes, countries per IP."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from clave.verify.models import Policy
from tests.api.conftest import open_api, settings_for


async def test_geo_permissions_per_service(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_COUNTRIES="US,CA")):
        r = await api.send("+34612345678")
        assert (r.status_code, r.json()["error"]["code"]) == (403, "country_not_allowed")
        assert await api.domain.store.pending_deliveries() == 0
        assert (await api.send("+14155552671")).status_code == 201
        assert (await api.send("ana@example.com", "email")).status_code == 201  # phones only
        # Another service may serve other countries.
        other = await api.domain.tenants.create_tenant("spain", Policy(countries=frozenset({"ES"})))
        key = await api.domain.tenants.create_api_key(other.name)
        r = await api.post(
            "/api/verifications",
            {"to": "+34612345678", "channel": "sms"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 201


async def test_blocked_prefixes_with_expiry(tmp_path: Path) -> None:
    env = {"CLAVE_BLOCKED_PREFIXES": "+1415555,+346:2020-01-31"}
    async for api in open_api(settings_for(tmp_path, **env)):
        r = await api.send("+14155552671")
        assert (r.status_code, r.json()["error"]["code"]) == (403, "destination_blocked")
        assert (await api.send("+14165552671")).status_code == 201
        assert (await api.send("+34612345678")).status_code == 201  # that block expired


async def test_distinct_countries_per_client_ip(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_COUNTRIES_PER_IP="2")):
        ip = "203.0.113.50"
        assert (await api.send("+14155552671", client_ip=ip)).status_code == 201
        assert (await api.send("+34612345678", client_ip=ip)).status_code == 201
        r = await api.send("+33612345678", client_ip=ip)
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_countries_from_ip")
        assert 0 < int(r.headers["Retry-After"]) <= 86400
        assert (await api.send("+14155552672", client_ip=ip)).status_code == 201  # a known country
        assert (await api.send("+33612345678", client_ip="203.0.113.51")).status_code == 201


async def test_record_only_logs_and_lets_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        "CLAVE_FRAUD_MODE": "record_only",
        "CLAVE_COUNTRIES": "US",
        "CLAVE_BLOCKED_PREFIXES": "+1415555",
    }
    async for api in open_api(settings_for(tmp_path, **env)):
        with caplog.at_level(logging.WARNING, logger="clave.verify.fraud"):
            assert (await api.send("+34612345678")).status_code == 201
            assert (await api.send("+14155552671")).status_code == 201
        lines = [r.getMessage() for r in caplog.records if r.name == "clave.verify.fraud"]
        assert any(
            "would refuse: country_not_allowed" in line and "country=ES" in line for line in lines
        )
        assert any("would refuse: destination_blocked" in line for line in lines)
        assert all("612345678" not in line for line in lines)  # destinations are masked


async def test_country_cap_of_unverified_sends(tmp_path: Path) -> None:
    env = {"CLAVE_COUNTRY_CAP_FLOOR": "3", "CLAVE_COUNTRY_CAP_RATIO": "1"}
    async for api in open_api(settings_for(tmp_path, **env)):
        sent = [await api.send(f"+1415555270{i}") for i in range(3)]
        assert all(r.status_code == 201 for r in sent)
        r = await api.send("+14155552709")
        assert (r.status_code, r.json()["error"]["code"]) == (429, "country_daily_cap_reached")
        assert int(r.headers["Retry-After"]) > 0
        assert (await api.send("+34612345678")).status_code == 201  # another country
        # Verified traffic is not pumping: proving two numbers makes room again.
        for i in range(2):
            code = await api.code(f"+1415555270{i}")
            assert (await api.check(code, id=sent[i].json()["id"])).json()["status"] == "approved"
        assert (await api.send("+14155552709")).status_code == 201


async def test_refusals_are_counted_per_reason(tmp_path: Path) -> None:
    env = {"CLAVE_COUNTRIES": "US", "CLAVE_BLOCKED_PREFIXES": "+1415555"}
    async for api in open_api(settings_for(tmp_path, **env)):
        for _ in range(2):
            assert (await api.send("+34612345678")).status_code == 403
        assert (await api.send("+14155552671")).status_code == 403
        service = await api.domain.tenants.get_tenant("default")
        counts = await api.domain.guard.blocked(service, 3)
        assert counts["country_not_allowed"] == [0, 0, 2]
        assert counts["destination_blocked"] == [0, 0, 1]
        assert counts["too_many_countries_from_ip"] == [0, 0, 0]


async def test_daily_counts_reach_the_shared_counters(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path)):
        vid = (await api.send("+14155552671")).json()["id"]
        await api.check(await api.code("+14155552671"), id=vid)
        await api.domain.guard.flush()
        service = await api.domain.tenants.get_tenant("default")
        day = int(time.time() // 86400)
        sends, verified = await api.domain.counters.daily(
            [f"sends:{service.id}:US", f"verified:{service.id}:US"], day, day
        )
        assert (sends, verified) == ([1], [1])
        await api.domain.guard.flush()  # nothing left to add twice
        again = await api.domain.counters.daily([f"sends:{service.id}:US"], day, day)
        assert again == [[1]]
