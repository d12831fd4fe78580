from __future__ import annotations

import pytest

from tests.api.conftest import Api

PHONE = "+14155552671"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"to": PHONE}, "invalid_request"),
        ({"to": PHONE, "channel": "fax"}, "invalid_request"),
        ({"to": 5, "channel": "sms"}, "invalid_request"),
        ({"to": PHONE, "channel": "sms", "code_length": 3}, "invalid_request"),
        ({"to": PHONE, "channel": "sms", "chanel": "x"}, "invalid_request"),
        ({"to": "4155552671", "channel": "sms"}, "invalid_destination"),
        ({"to": "ana@", "channel": "email"}, "invalid_destination"),
        ({"to": PHONE, "channel": "sms", "locale": "??"}, "invalid_parameter"),
        ([], "invalid_request"),
    ],
)
async def test_bad_create_input_is_400_with_a_stable_code(
    api: Api, body: object, code: str
) -> None:
    r = await api.post("/api/verifications", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert await api.domain.store.pending_deliveries() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"code": "123456"},
        {"code": "123456", "to": PHONE, "id": "VE1"},
        {"code": "12x456", "to": PHONE},
        {"to": PHONE},
    ],
)
async def test_bad_check_input_is_400(api: Api, body: object) -> None:
    r = await api.post("/api/verifications/check", body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] in {"invalid_request", "invalid_parameter"}


async def test_malformed_json_is_400(api: Api) -> None:
    r = await api.client.post(
        "/api/verifications",
        content=b"{not json",
        headers={**api.auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


async def test_oversized_body_is_413(api: Api) -> None:
    r = await api.client.post(
        "/api/verifications",
        content=b'{"to": "' + b"1" * 100_000 + b'"}',
        headers={**api.auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer "])
async def test_missing_or_wrong_key_is_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in [
        ("POST", "/api/verifications"),
        ("POST", "/api/verifications/check"),
        ("GET", "/api/verifications/VE1"),
    ]:
        r = await api.client.request(
            method, path, json={"to": PHONE, "channel": "sms"}, headers=headers
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_unknown_route_and_method(api: Api) -> None:
    r = await api.client.get("/api/nothing")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = await api.client.delete("/api/verifications/check", headers=api.auth)
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")
