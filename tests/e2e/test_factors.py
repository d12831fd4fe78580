"""Authenticator apps against a real `clave serve --workers 2`: a factor enrolled under the
key derived from the HMAC key keeps working once CLAVE_ENCRYPTION_KEYS is set and through a
rotation of it (`clave factors rekey`), and a replayed code is refused on whichever worker."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.e2e.conftest import ClaveProcess

pytestmark = pytest.mark.e2e


def key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def test_a_factor_survives_a_key_rotation(tmp_path: Path, serve: type[ClaveProcess]) -> None:
    first, second = key("k1"), key("k2")
    # Enrolled before CLAVE_ENCRYPTION_KEYS is set: under a key derived from the HMAC key.
    server = serve(tmp_path).start()
    api_key = server.cli("apikey", "create").stdout.strip()
    auth = {"Authorization": f"Bearer {api_key}"}
    made = httpx.post(
        server.url + "/api/factors",
        json={"entity": "user-1", "friendly_name": "Phone"},
        headers=auth,
    ).json()
    app = pyotp.parse_uri(made["binding"]["uri"])
    assert isinstance(app, pyotp.TOTP)
    confirmed = httpx.post(
        f"{server.url}/api/factors/{made['id']}/confirm", json={"code": app.now()}, headers=auth
    )
    assert confirmed.json()["status"] == "approved"
    server.stop()

    # CLAVE_ENCRYPTION_KEYS set: the derived key still opens the secret, rekey moves it.
    server.env["CLAVE_ENCRYPTION_KEYS"] = first
    moved = server.cli("factors", "rekey").stdout
    assert moved.startswith("1 factor secrets sealed under the newest key; 0 were already")

    # A new key first, the old one still there: rekey moves every secret under the new one.
    server.env["CLAVE_ENCRYPTION_KEYS"] = f"{second},{first}"
    out = server.cli("factors", "rekey").stdout
    assert out.startswith("1 factor secrets sealed under the newest key; 0 were already"), out
    again = server.cli("factors", "rekey").stdout
    assert again.startswith("0 factor secrets sealed under the newest key; 1 were already")
    # The old key gone: the factor still opens, and its next code approves exactly once.
    server.env["CLAVE_ENCRYPTION_KEYS"] = second
    server.start()
    code = app.at(time.time() + 30)  # the next step's (within the skew): newer than the last
    answers = [
        httpx.post(
            server.url + "/api/challenges",
            json={"factor_id": made["id"], "code": code},
            headers=auth,
        ).json()["status"]
        for _ in range(4)  # across both workers
    ]
    assert answers == ["approved", "pending", "pending", "pending"]
