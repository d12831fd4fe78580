"""Test destinations: a fixed code for client apps' own tests, and nothing ever sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from clave.bootstrap import Settings
from clave.platform.settings import SettingsError
from tests.api.conftest import open_api, settings_for


async def test_fixed_code_and_nothing_sent(tmp_path: Path) -> None:
    env = {"CLAVE_TEST_DESTINATIONS": "default:+1 500 555 0006=123456,other:qa@example.com=424242"}
    async for api in open_api(settings_for(tmp_path, **env)):
        sent = await api.send("+15005550006")
        assert sent.status_code == 201
        assert [a["status"] for a in sent.json()["send_attempts"]] == ["skipped"]
        assert await api.domain.store.pending_deliveries() == 0
        r = await api.check("000000", id=sent.json()["id"])
        assert r.json()["status"] == "pending"  # still counted like any other check
        r = await api.check("123456", id=sent.json()["id"])
        assert r.json()["status"] == "approved"
        messages = (await api.client.get("/dev/inbox/messages")).json()["messages"]
        assert messages == []
        # Only for the service it is configured for: "qa@example.com" is the other service's.
        r = await api.send("qa@example.com", "email")
        assert r.json()["send_attempts"][0]["status"] == "queued"


async def test_not_a_test_destination_unless_configured(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path)):
        sent = await api.send("+15005550006")
        assert sent.json()["send_attempts"][0]["status"] == "queued"
        assert (await api.check("123456", id=sent.json()["id"])).json()["status"] == "pending"


def test_bad_test_destinations_stop_startup() -> None:
    for value in (
        "+15005550006=123456",
        "default:+15005550006=12",
        "default:+15005550006=12345",  # a fixed code is never shorter than 6 digits
        "default:nobody=123456",
    ):
        with pytest.raises(SettingsError, match="CLAVE_TEST_DESTINATIONS"):
            Settings.load({"CLAVE_TEST_DESTINATIONS": value})
