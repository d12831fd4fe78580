"""Authenticator apps through the native API: enroll, confirm, challenge, replay and guessing
refused, per-tenant, events, and secrets that a copy of the database does not reveal."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import zxingcpp
from PIL import Image

from tests.api.conftest import Api, open_api, settings_for
from tests.api.test_events import events_env, received, verified_body
from tests.api.test_twilio_api import basic, open_v2, twilio_error
from tests.support import FakeClock, RecordingServer

NOW = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    async for found in open_api(settings_for(tmp_path, CLAVE_LIMIT_FAILED_TOTP="4/900"), clock):
        yield found


async def enroll(api: Api, entity: str = "user-1", name: str = "Ana's phone") -> dict[str, Any]:
    r = await api.post("/api/factors", {"entity": entity, "friendly_name": name, "type": "totp"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def app_of(factor: dict[str, Any]) -> pyotp.TOTP:
    """The user's authenticator app, enrolled from the URI."""
    app = pyotp.parse_uri(factor["binding"]["uri"])
    assert isinstance(app, pyotp.TOTP)
    return app


async def test_enroll_confirm_and_challenge(api: Api, clock: FakeClock) -> None:
    made = await enroll(api)
    assert made["id"].startswith("YF")
    assert (made["entity"], made["type"], made["status"]) == ("user-1", "totp", "unverified")
    assert made["totp"] == {"time_step": 30, "code_length": 6, "skew": 1}
    app = app_of(made)
    assert app.secret == made["binding"]["secret"]
    assert (app.issuer, app.name) == (
        api.domain.settings.default_policy.friendly_name,
        "Ana's phone",
    )
    png = base64.b64decode(made["qr_png_url"].removeprefix("data:image/png;base64,"))
    [qr] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert qr.text == made["binding"]["uri"]
    # The secret is never shown again.
    read = (await api.get(f"/api/factors/{made['id']}")).json()
    assert read["binding"] is None
    assert read["qr_png_url"] is None
    # An unverified factor takes no challenge; a wrong code does not confirm it.
    code = app.at(clock.now)
    refused = await api.post("/api/challenges", {"factor_id": made["id"], "code": code})
    assert refused.status_code == 404
    wrong = await api.post(f"/api/factors/{made['id']}/confirm", {"code": wrong_code(code)})
    assert wrong.json()["status"] == "pending"
    confirmed = await api.post(f"/api/factors/{made['id']}/confirm", {"code": code})
    assert confirmed.json() == {
        "status": "approved",
        "valid": True,
        "factor_id": made["id"],
        "entity": "user-1",
    }
    assert (await api.get(f"/api/factors/{made['id']}")).json()["status"] == "verified"
    # The code that confirmed it is spent; the next step's code approves once.
    replay = await api.post("/api/challenges", {"factor_id": made["id"], "code": code})
    assert replay.json()["status"] == "pending"
    clock.advance(30)
    following = app.at(clock.now)
    by_entity = await api.post("/api/challenges", {"entity": "user-1", "code": following})
    assert by_entity.json()["status"] == "approved"
    again = await api.post("/api/challenges", {"entity": "user-1", "code": following})
    assert again.json()["status"] == "pending"
    # A code from the step before (within the skew) is older than the one accepted: refused.
    clock.advance(30)
    late = await api.post("/api/challenges", {"factor_id": made["id"], "code": following})
    assert late.json()["status"] == "pending"


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_failed_codes_are_counted_then_refused(api: Api, clock: FakeClock) -> None:
    made = await enroll(api)
    app = app_of(made)
    await api.post(f"/api/factors/{made['id']}/confirm", {"code": app.at(clock.now)})
    clock.advance(30)
    right = app.at(clock.now)
    for _ in range(4):  # CLAVE_LIMIT_FAILED_TOTP=4/900 here
        r = await api.post("/api/challenges", {"factor_id": made["id"], "code": wrong_code(right)})
        assert r.json()["status"] == "pending"
    spent = await api.post("/api/challenges", {"factor_id": made["id"], "code": right})
    assert spent.status_code == 429
    assert spent.json()["error"]["code"] == "too_many_failed_totp"
    assert int(spent.headers["Retry-After"]) > 0
    clock.advance(900 + 900 / 24 + 1)
    assert (
        await api.post("/api/challenges", {"factor_id": made["id"], "code": app.at(clock.now)})
    ).json()["status"] == "approved"


async def test_one_valid_code_at_once_approves_exactly_once(api: Api, clock: FakeClock) -> None:
    made = await enroll(api)
    app = app_of(made)
    await api.post(f"/api/factors/{made['id']}/confirm", {"code": app.at(clock.now)})
    clock.advance(30)
    code = app.at(clock.now)
    answers = await asyncio.gather(
        *(api.post("/api/challenges", {"factor_id": made["id"], "code": code}) for _ in range(20))
    )
    # One approves; every other is a replay: pending, counted as a failure, so past the
    # factor's budget the rest are refused outright.
    statuses = [a.json().get("status", a.status_code) for a in answers]
    assert statuses.count("approved") == 1
    assert set(statuses) <= {"approved", "pending", 429}


async def test_list_delete_and_other_tenants(api: Api, clock: FakeClock) -> None:
    first = await enroll(api)
    clock.advance(1)
    second = await enroll(api, name="Laptop")
    await enroll(api, entity="user-2")
    listed = (await api.get("/api/factors", params={"entity": "user-1"})).json()
    assert [f["id"] for f in listed] == [first["id"], second["id"]]
    assert all(f["binding"] is None for f in listed)
    # Another tenant's key sees none of them.
    await api.domain.tenants.create_tenant("other-shop", api.domain.settings.default_policy)
    other = {"Authorization": "Bearer " + await api.domain.tenants.create_api_key("other-shop")}
    assert (await api.client.get(f"/api/factors/{first['id']}", headers=other)).status_code == 404
    theirs = await api.client.get("/api/factors", params={"entity": "user-1"}, headers=other)
    assert theirs.json() == []
    stolen = await api.client.post(
        "/api/challenges", json={"factor_id": first["id"], "code": "123456"}, headers=other
    )
    assert stolen.status_code == 404
    assert (
        await api.client.delete(f"/api/factors/{first['id']}", headers=other)
    ).status_code == 404
    assert (
        await api.client.delete(f"/api/factors/{first['id']}", headers=api.auth)
    ).status_code == 204
    assert (await api.get(f"/api/factors/{first['id']}")).status_code == 404
    assert (await api.client.get("/api/factors", params={"entity": "user-1"})).status_code == 401
    bad = await api.post("/api/factors", {"entity": "", "friendly_name": "x"})
    assert bad.status_code == 400
    both = await api.post(
        "/api/challenges", {"factor_id": second["id"], "entity": "user-1", "code": "123456"}
    )
    assert (both.status_code, both.json()["error"]["code"]) == (400, "invalid_parameter")


async def test_a_database_copy_reveals_no_secret(api: Api, tmp_path: Path) -> None:
    made = await enroll(api)
    secret = base64.b32decode(
        made["binding"]["secret"] + "=" * (-len(made["binding"]["secret"]) % 8)
    )
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "verify" in p.name]
    assert files, list(tmp_path.rglob("*"))
    for path in files:
        data = path.read_bytes()
        assert secret not in data
        assert made["binding"]["secret"].encode() not in data


async def test_factor_and_challenge_events(tmp_path: Path, clock: FakeClock) -> None:
    receiver = RecordingServer()
    receiver.default = (200, {})
    try:
        async for api in open_api(settings_for(tmp_path, **events_env(receiver)), clock):
            made = await enroll(api)
            app = app_of(made)
            await api.post(f"/api/factors/{made['id']}/confirm", {"code": app.at(clock.now)})
            clock.advance(30)
            right = app.at(clock.now)
            await api.post("/api/challenges", {"factor_id": made["id"], "code": wrong_code(right)})
            await api.post("/api/challenges", {"factor_id": made["id"], "code": right})
            bodies = [verified_body(r) for r in await received(receiver, 3)]
            assert sorted(b["type"] for b in bodies) == [
                "challenge.approved",
                "challenge.failed",
                "factor.verified",
            ]
            assert all(b["data"]["factor_id"] == made["id"] for b in bodies)
    finally:
        receiver.stop()


async def test_twilio_entities_factors_and_challenges(tmp_path: Path, clock: FakeClock) -> None:
    async for v2 in open_v2(settings_for(tmp_path), clock):
        sid = await v2.service()
        base = f"/Services/{sid}/Entities"
        entity = (await v2.post(base, {"Identity": "user-7"})).json()
        assert (entity["sid"][:2], entity["service_sid"]) == ("YE", sid)
        assert entity["links"]["factors"] == entity["url"] + "/Factors"
        again = await v2.post(base, {"Identity": "user-7"})
        assert again.json()["sid"] == entity["sid"]  # one entity per identity
        made = await v2.post(
            f"{base}/user-7/Factors", {"FriendlyName": "Phone", "FactorType": "totp"}
        )
        assert made.status_code == 201, made.text
        factor = made.json()
        assert set(factor["binding"]) == {"secret", "uri"}
        fetched = (await v2.get(f"{base}/user-7/Factors/{factor['sid']}")).json()
        assert fetched["binding"] is None
        push = await v2.post(f"{base}/user-7/Factors", {"FriendlyName": "P", "FactorType": "push"})
        twilio_error(push, 60200, 400)
        unverified = await v2.post(
            f"{base}/user-7/Challenges", {"FactorSid": factor["sid"], "AuthPayload": "123456"}
        )
        twilio_error(unverified, 20404, 404)
        app = pyotp.TOTP(factor["binding"]["secret"])
        wrong = await v2.post(
            f"{base}/user-7/Factors/{factor['sid']}", {"AuthPayload": wrong_code(app.at(clock.now))}
        )
        assert wrong.json()["status"] == "unverified"
        ok = await v2.post(
            f"{base}/user-7/Factors/{factor['sid']}", {"AuthPayload": app.at(clock.now)}
        )
        assert ok.json()["status"] == "verified"
        # Another account sees none of it.
        other_sid, token, _, _ = await v2.api.domain.tenants.create_twilio_credentials(
            v2.api.domain.settings.default_policy, account="other"
        )
        twilio_error(await v2.get(base, headers=basic(other_sid, token)), 20404, 404)
        # Another entity's path does not reach this factor.
        await v2.post(base, {"Identity": "user-8"})
        twilio_error(await v2.get(f"{base}/user-8/Factors/{factor['sid']}"), 20404, 404)
