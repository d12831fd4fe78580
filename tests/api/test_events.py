"""Event webhooks to the operator, signed, from every final status, with retries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clave.bootstrap import Settings
from clave.platform.settings import SettingsError
from tests.api.conftest import open_api, settings_for
from tests.support import FakeClock, RecordingServer

KEY = b"e" * 32
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    server = RecordingServer()
    server.default = (200, {})
    yield server
    server.stop()


def events_env(receiver: RecordingServer) -> dict[str, str]:
    return {
        "CLAVE_EVENTS_URL": receiver.url + "/clave-events",
        "CLAVE_EVENTS_SECRET": SECRET,
        "CLAVE_OUTBOX_BACKOFF": "0.05",
    }


async def received(receiver: RecordingServer, count: int) -> list[dict[str, Any]]:
    return await asyncio.to_thread(receiver.wait, count)


def verified_body(request: dict[str, Any]) -> dict[str, Any]:
    h = request["headers"]
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request["body"]
    expected = "v1," + base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    assert h["webhook-signature"] == expected
    body: dict[str, Any] = json.loads(request["body"])
    assert h["webhook-id"] == body["id"]
    return body


async def test_approved_and_canceled_events(tmp_path: Path, receiver: RecordingServer) -> None:
    async for api in open_api(settings_for(tmp_path, **events_env(receiver))):
        approved = (await api.send("+14155552671")).json()["id"]
        await api.check(await api.code("+14155552671"), id=approved)
        canceled = (await api.send("+14155552672")).json()["id"]
        await api.post(f"/api/verifications/{canceled}/cancel", None)
        requests = await received(receiver, 2)
        bodies = {verified_body(r)["type"]: verified_body(r) for r in requests}
        assert set(bodies) == {"verification.approved", "verification.canceled"}
        assert bodies["verification.approved"]["data"]["verification_id"] == approved
        assert bodies["verification.canceled"]["data"]["verification_id"] == canceled
        assert bodies["verification.approved"]["occurred_at"].endswith("Z")
        assert all(r["path"] == "/clave-events" for r in requests)


async def test_expiry_is_swept_and_announced(tmp_path: Path, receiver: RecordingServer) -> None:
    clock = FakeClock(time.time())
    async for api in open_api(
        settings_for(tmp_path, CLAVE_CODE_TTL="30", **events_env(receiver)), clock=clock
    ):
        vid = (await api.send("+14155552671")).json()["id"]
        await api.code("+14155552671")
        clock.advance(31)  # nobody reads it: the sweeper notices
        [request] = await received(receiver, 1)
        body = verified_body(request)
        assert (body["type"], body["data"]["verification_id"]) == ("verification.expired", vid)
        assert (await api.get(f"/api/verifications/{vid}")).json()["status"] == "expired"


async def test_an_endpoint_outage_is_retried(tmp_path: Path, receiver: RecordingServer) -> None:
    receiver.answers = [(503, {}), (500, {})]
    async for api in open_api(settings_for(tmp_path, **events_env(receiver))):
        vid = (await api.send("+14155552671")).json()["id"]
        await api.post(f"/api/verifications/{vid}/cancel", None)
        requests = await received(receiver, 3)
        assert len({r["headers"]["webhook-id"] for r in requests}) == 1  # the same event each time
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == 3  # accepted on the third: no more


def test_events_settings_go_together() -> None:
    with pytest.raises(SettingsError, match="CLAVE_EVENTS_URL and CLAVE_EVENTS_SECRET"):
        Settings.load({"CLAVE_EVENTS_URL": "https://ops.example/hook"})
