"""SMS autofill options travel with the send and are rendered at delivery, on every store."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.api.conftest import open_api, settings_for
from tests.contract.conftest import drop_prefix


@pytest.mark.parametrize("store", ["sqlite", pytest.param("redis", marks=pytest.mark.e2e)])
async def test_app_hash_and_webotp_line(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    env: dict[str, str] = {}
    if store == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = f"t{secrets.token_hex(4)}:"
        env = {"CLAVE_VERIFY_STORE": url, "CLAVE_REDIS_PREFIX": prefix}
    try:
        async for api in open_api(settings_for(tmp_path, **env)):
            r = await api.send(
                "+14155552671", app_hash="FA+9qCX9VSu", webotp_domain="Login.Acme.example"
            )
            assert r.status_code == 201
            [message] = await api.inbox("+14155552671")
            lines = message["text"].splitlines()
            code = await api.code("+14155552671")
            assert lines[-1] == f"@login.acme.example #{code}"
            assert "FA+9qCX9VSu" in lines
            # A resend without options renders without them.
            await api.send("+14155552671")
            [latest, _] = await api.inbox("+14155552671", 2)
            assert "@login" not in latest["text"]
    finally:
        if store == "redis":
            await drop_prefix(url, prefix)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("app_hash", "short"),
        ("app_hash", "FA+9qCX9VS!"),
        ("webotp_domain", "https://acme.example"),
        ("webotp_domain", "acme"),
    ],
)
async def test_bad_autofill_options_are_400(tmp_path: Path, field: str, value: str) -> None:
    async for api in open_api(settings_for(tmp_path)):
        r = await api.send("+14155552671", **{field: value})
        assert r.status_code == 400
        assert await api.domain.store.pending_deliveries() == 0
