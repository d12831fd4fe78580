"""The forum's users with an authenticator app: added with the user's token, confirmed with a
first code, then asked for at sign-in (a code to the verified phone, and the app's)."""

from __future__ import annotations

import base64
import io
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import zxingcpp
from litestar.testing import AsyncTestClient
from PIL import Image

from tests.api.test_forum import api_with, bearer, sign_up, wait_code

Client = AsyncTestClient[Any]
PHONE = "+14155552671"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Client]:
    async for client in api_with(tmp_path):
        yield client


async def verified_user(api: Client, username: str = "ana") -> tuple[int, str]:
    """A user whose phone is proved, and its token."""
    user, token = await sign_up(api, username, phone=PHONE)
    auth = bearer(token)
    await api.post(f"/api/users/{user['id']}/verification", json={"channel": "sms"}, headers=auth)
    code = await wait_code(api, PHONE)
    r = await api.post(
        f"/api/users/{user['id']}/verification/check", json={"code": code}, headers=auth
    )
    assert r.json()["user"]["phoneVerified"] is True
    return int(user["id"]), token


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


async def test_sign_in_without_an_authenticator_needs_the_phones_code(api: Client) -> None:
    user_id, old = await verified_user(api)
    r = await api.post(f"/api/users/{user_id}/sign-in", json={"channel": "sms"})
    assert r.status_code == 201, r.text
    assert r.json()["to"] == "+14******671"
    code = await wait_code(api, PHONE, count=2)
    miss = await api.post(f"/api/users/{user_id}/sign-in/check", json={"code": wrong(code)})
    assert (miss.json()["status"], miss.json()["token"]) == ("pending", None)
    ok = await api.post(f"/api/users/{user_id}/sign-in/check", json={"code": code})
    token = ok.json()["token"]
    assert ok.json()["status"] == "approved"
    assert token.startswith("clave_user_")
    assert (await api.get("/api/users/me", headers=bearer(token))).json()["id"] == user_id
    assert (await api.get("/api/users/me", headers=bearer(old))).status_code == 401
    # The code is spent: there is nothing more to check.
    again = await api.post(f"/api/users/{user_id}/sign-in/check", json={"code": code})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "no_pending_verification")


async def test_an_unproved_contact_does_not_sign_in(api: Client) -> None:
    user, token = await sign_up(api, "bob", phone="+14155550177")
    r = await api.post(f"/api/users/{user['id']}/sign-in", json={"channel": "sms"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "contact_missing")
    # A code proving a new contact (started with the token) is not a sign-in code.
    auth = bearer(token)
    await api.post(f"/api/users/{user['id']}/verification", json={"channel": "sms"}, headers=auth)
    code = await wait_code(api, "+14155550177")
    r = await api.post(f"/api/users/{user['id']}/sign-in/check", json={"code": code})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "no_pending_verification")


async def test_an_authenticator_becomes_a_second_factor(api: Client) -> None:
    user_id, token = await verified_user(api)
    auth = bearer(token)
    added = await api.post(f"/api/users/{user_id}/totp", json={}, headers=auth)
    assert added.status_code == 201, added.text
    body = added.json()
    assert added.headers["cache-control"] == "no-store"
    png = base64.b64decode(body["qr_png_url"].removeprefix("data:image/png;base64,"))
    [qr] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert qr.text == body["uri"]
    app = pyotp.parse_uri(body["uri"])
    assert isinstance(app, pyotp.TOTP)
    assert app.secret == body["secret"]
    confirmed = await api.post(
        f"/api/users/{user_id}/totp/confirm", json={"code": app.now()}, headers=auth
    )
    assert confirmed.json() == {"status": "approved"}

    # Without the phone's code, the app is not even asked about (nor its budget spent).
    await api.post(f"/api/users/{user_id}/sign-in", json={"channel": "sms"})
    code = await wait_code(api, PHONE, count=2)
    later = app.at(time.time() + 30)  # the next step's code (the confirming one is spent)
    guess = await api.post(
        f"/api/users/{user_id}/sign-in/check", json={"code": wrong(code), "totp_code": later}
    )
    assert (guess.json()["status"], guess.json()["token"]) == ("pending", None)
    # The phone's code without the app's: refused, and this sign-in is over.
    missing = await api.post(f"/api/users/{user_id}/sign-in/check", json={"code": code})
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "second_factor_required")
    spent = await api.post(f"/api/users/{user_id}/sign-in/check", json={"code": code})
    assert spent.json()["error"]["code"] == "no_pending_verification"
    await api.post(f"/api/users/{user_id}/sign-in", json={"channel": "sms"})
    code = await wait_code(api, PHONE, count=3)
    ok = await api.post(
        f"/api/users/{user_id}/sign-in/check", json={"code": code, "totp_code": later}
    )
    assert ok.json()["status"] == "approved", ok.text
    assert (await api.get("/api/users/me", headers=bearer(ok.json()["token"]))).status_code == 200


async def test_only_the_user_adds_or_confirms_an_authenticator(api: Client) -> None:
    user_id, token = await verified_user(api)
    _, mallory = await sign_up(api, "mallory")
    for path, body in (("totp", {}), ("totp/confirm", {"code": "123456"})):
        for headers, status in (({}, 401), (bearer(mallory), 403)):
            r = await api.post(f"/api/users/{user_id}/{path}", json=body, headers=headers)
            assert r.status_code == status, (path, r.text)
    nothing = await api.post(
        f"/api/users/{user_id}/totp/confirm", json={"code": "123456"}, headers=bearer(token)
    )
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (
        409,
        "no_authenticator_to_confirm",
    )


async def test_a_second_app_needs_the_first_apps_code(api: Client) -> None:
    user_id, token = await verified_user(api)
    auth = bearer(token)
    first = (await api.post(f"/api/users/{user_id}/totp", json={}, headers=auth)).json()
    app = pyotp.TOTP(first["secret"])
    await api.post(f"/api/users/{user_id}/totp/confirm", json={"code": app.now()}, headers=auth)
    alone = await api.post(f"/api/users/{user_id}/totp", json={}, headers=auth)
    assert (alone.status_code, alone.json()["error"]["code"]) == (401, "second_factor_required")
    code = app.at(time.time() + 30)
    second = await api.post(f"/api/users/{user_id}/totp", json={"totp_code": code}, headers=auth)
    assert second.status_code == 201, second.text


async def test_a_contact_changed_after_its_code_was_sent_is_not_proved(api: Client) -> None:
    user, token = await sign_up(api, "cleo", phone="+14155550188")
    auth = bearer(token)
    await api.post(f"/api/users/{user['id']}/verification", json={"channel": "sms"}, headers=auth)
    code = await wait_code(api, "+14155550188")
    await api.patch(f"/api/users/{user['id']}", json={"phone": "+14155550199"}, headers=auth)
    r = await api.post(
        f"/api/users/{user['id']}/verification/check", json={"code": code}, headers=auth
    )
    assert (r.status_code, r.json()["error"]["code"]) == (409, "no_pending_verification")
    assert (await api.get(f"/api/users/{user['id']}")).json()["phoneVerified"] is False


async def test_deleting_a_user_deletes_its_authenticator_apps(api: Client, tmp_path: Path) -> None:
    user_id, token = await verified_user(api)
    auth = bearer(token)
    await api.post(f"/api/users/{user_id}/totp", json={}, headers=auth)
    await api.post(f"/api/users/{user_id}/totp", json={}, headers=auth)
    for _ in range(2):  # at most 3 apps may wait for their first code
        await api.post(f"/api/users/{user_id}/totp", json={}, headers=auth)
    many = await api.post(f"/api/users/{user_id}/totp", json={}, headers=auth)
    assert (many.status_code, many.json()["error"]["code"]) == (409, "too_many_authenticators")

    def apps() -> int:
        with sqlite3.connect(tmp_path / "verify.db") as db:
            query = "SELECT COUNT(*) FROM factors WHERE entity = ?"
            return int(db.execute(query, (f"user-{user_id}",)).fetchone()[0])

    assert apps() == 3
    assert (await api.delete(f"/api/users/{user_id}", headers=auth)).status_code == 204
    assert apps() == 0


async def test_sign_in_codes_are_counted_apart_from_contact_verifications(
    tmp_path: Path,
) -> None:
    """Anyone may ask for a user's sign-in code: those never spend the owner's own starts."""
    async for api in api_with(tmp_path, CLAVE_USERS_VERIFICATIONS_PER_DAY="2"):
        user_id, token = await verified_user(api)  # one of the owner's two starts spent
        for _ in range(2):
            r = await api.post(f"/api/users/{user_id}/sign-in", json={"channel": "sms"})
            assert r.status_code == 201, r.text
        over = await api.post(f"/api/users/{user_id}/sign-in", json={"channel": "sms"})
        assert (over.status_code, over.json()["error"]["code"]) == (429, "too_many_verifications")
        mine = await api.post(
            f"/api/users/{user_id}/verification", json={"channel": "sms"}, headers=bearer(token)
        )
        assert mine.status_code == 201, mine.text
