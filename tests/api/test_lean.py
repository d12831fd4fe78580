"""Lean routes answer exactly as the framework does.

Every request here goes once through the app (where a lean route takes the plain ones) and
once through Litestar alone, and both answers must be the same: status, JSON body (ids and
times aside) and the headers a client acts on. Each case also says who must answer it through
the app, so a lean route that stopped taking plain requests (or took a malformed one) fails.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from clave.bootstrap import Settings, build_domains, prepare_async
from clave.platform.app import build_app
from clave.platform.client import AppRef
from clave.platform.lean import LeanApp
from tests.api.conftest import Api
from tests.support import HMAC_KEYS

VOLATILE = {"id", "created_at", "updated_at", "expires_at", "to", "provider_message_id"}
HEADERS = ("content-type", "retry-after", "www-authenticate", "allow", "link", "cache-control")


def shape(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """What a client acts on: status, those headers, the body with ids and times blanked."""

    def blank(value: Any) -> Any:
        if isinstance(value, dict):
            if "send_attempts" in value:  # delivery runs beside the request: its own pace
                value = {**value, "send_attempts": [a["channel"] for a in value["send_attempts"]]}
            return {k: "*" if k in VOLATILE else blank(v) for k, v in value.items()}
        if isinstance(value, list):
            return [blank(v) for v in value]
        return value

    headers = {h: response.headers[h] for h in HEADERS if h in response.headers}
    try:
        body = blank(response.json())
    except json.JSONDecodeError:
        body = response.text
    return response.status_code, headers, body


def who_answers(app: LeanApp) -> list[str]:
    """The paths the framework is handed from now on, through `app`."""
    handed: list[str] = []
    inner = app.framework

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            handed.append(scope["path"])
        await inner(scope, receive, send)

    app.framework = counting
    return handed


async def compare(
    api: Api,
    handed: list[str],
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    lean: bool,
    twin: Callable[[bytes], bytes] = lambda b: b,
) -> tuple[int, dict[str, str], Any]:
    """POST `body` through the app and (`twin(body)`: another target when the first request
    changed state) through the framework alone; the answers must match."""
    handed.clear()
    through_app = await api.client.post(path, content=body, headers=headers)
    assert handed == ([] if lean else [path]), f"{body!r}: lean={not handed}"
    through_framework = await api.framework.post(path, content=twin(body), headers=headers)
    assert shape(through_app) == shape(through_framework), body
    return shape(through_app)


JSON = {"Content-Type": "application/json"}


async def test_check_answers_as_the_framework(api: Api) -> None:
    auth = {**api.auth, **JSON}
    first = (await api.send("+14155550100")).json()
    second = (await api.send("+14155550101")).json()
    handed = who_answers(api.app)
    path = "/api/verifications/check"

    def other(body: bytes) -> bytes:
        return body.replace(first["id"].encode(), second["id"].encode())

    wrong = json.dumps({"code": "000000", "id": first["id"]}).encode()
    cases: list[tuple[bytes, dict[str, str], bool, int]] = [
        (wrong, auth, True, 200),  # a wrong code: still pending
        (json.dumps({"code": "000000", "id": "VE" + "0" * 32}).encode(), auth, True, 404),
        (json.dumps({"code": "000000", "to": "+14155550199"}).encode(), auth, True, 404),
        (json.dumps({"code": "000000"}).encode(), auth, True, 400),  # neither id nor to
        (json.dumps({"code": "12", "id": first["id"]}).encode(), auth, True, 400),
        (
            json.dumps({"code": "000000", "id": first["id"], "client_ip": "x"}).encode(),
            auth,
            True,
            400,
        ),
        (wrong, JSON, True, 401),  # no key
        (wrong, {"Authorization": "Bearer nope", **JSON}, True, 401),
        (wrong, {"Authorization": "Basic Zm9vOmJhcg==", **JSON}, True, 401),
        # Not plain: the framework answers, as it always did.
        (wrong, {**api.auth, "Content-Type": "text/plain"}, False, 415),
        (wrong, api.auth, False, 415),  # no content type
        (b'{"code": "000000", ', auth, False, 400),  # not JSON
        (b"[]", auth, False, 400),
        (json.dumps({"code": 123456, "id": first["id"]}).encode(), auth, False, 400),
        (json.dumps({"code": "000000", "id": first["id"], "extra": 1}).encode(), auth, False, 400),
        (b'{"code": "000000", "id": "' + b"x" * 70_000 + b'"}', auth, False, 413),
    ]
    for body, headers, lean, status in cases:
        answer = await compare(api, handed, path, body, headers, lean=lean, twin=other)
        assert answer[0] == status, (body[:80], answer)
    # Both verifications took the same checks, one through each path.
    left = {
        v["id"]: (await api.get(f"/api/verifications/{v['id']}")).json()["check_attempts_left"]
        for v in (first, second)
    }
    assert left[first["id"]] == left[second["id"]] < 5


async def test_send_answers_as_the_framework(api: Api) -> None:
    auth = {**api.auth, **JSON}
    handed = who_answers(api.app)
    path = "/api/verifications"
    numbers = iter(range(100, 200))

    def body(**fields: Any) -> bytes:
        return json.dumps({"to": f"+1415555{next(numbers):04d}", **fields}).encode()

    def twin(sent: bytes) -> bytes:  # the same request to a number of its own
        fields = json.loads(sent)
        if "to" in fields:
            fields["to"] = f"+1415555{next(numbers):04d}"
        return json.dumps(fields).encode()

    cases: list[tuple[bytes, dict[str, str], bool, int]] = [
        (body(channel="sms"), auth, True, 201),
        (body(channel="email"), auth, True, 400),  # a phone number by email
        (body(channel="sms", locale="pt-BR", code_length=8), auth, True, 201),
        (body(channel="sms", client_ip="203.0.113.9"), auth, True, 201),
        (body(channel="sms", client_ip="no"), auth, True, 400),
        (body(channel="sms"), JSON, True, 401),
        (body(channel="pigeon"), auth, False, 400),
        # Litestar's decoding is lax ("6" is taken for 6); the lean one hands it over.
        (body(channel="sms", code_length="6"), auth, False, 201),
        (
            body(channel="sms"),
            {**api.auth, "Content-Type": "application/x-www-form-urlencoded"},
            False,
            415,
        ),
    ]
    for sent, headers, lean, status in cases:
        answer = await compare(api, handed, path, sent, headers, lean=lean, twin=twin)
        assert answer[0] == status, (sent, answer)
    # A re-send of a pending verification: 200 on both paths.
    again = body(channel="sms")
    assert (await api.client.post(path, content=again, headers=auth)).status_code == 201
    handed.clear()
    through_app = await api.client.post(path, content=again, headers=auth)
    through_framework = await api.framework.post(path, content=again, headers=auth)
    assert handed == []
    assert through_app.status_code == through_framework.status_code == 200


@pytest.fixture
async def monolith(tmp_path: Path) -> AsyncIterator[tuple[LeanApp, AsyncTestClient[Any]]]:
    settings = Settings.load(
        {
            "CLAVE_DATA_DIR": str(tmp_path),
            "CLAVE_HMAC_KEYS": HMAC_KEYS,
            "CLAVE_DEV_INBOX": "true",
            "CLAVE_SEED": "true",
        }
    )
    await prepare_async(settings)
    ref = AppRef()
    app = build_app(settings.platform, build_domains(settings, ref))
    ref.app = app
    # Litestar's test client (it runs the lifespan) serves any ASGI app, not only its own.
    async with AsyncTestClient(app, base_url="http://clave.test") as client:  # type: ignore[type-var]
        yield app, client


async def test_users_list_answers_as_the_framework(
    monolith: tuple[LeanApp, AsyncTestClient[Any]],
) -> None:
    app, client = monolith
    framework = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.framework), base_url="http://clave.test"
    )
    handed = who_answers(app)
    cases = [
        ("", True, 200),
        ("limit=2", True, 200),  # a Link to the next page
        ("limit=2&after=2", True, 200),
        ("after=3", True, 200),
        ("limit=100&after=9007199254740992", True, 200),
        ("limit=0", False, 400),
        ("limit=101", False, 400),
        ("limit=two", False, 400),
        ("limit=-1", False, 400),
        ("after=9007199254740993", False, 400),
        ("limit=2&limit=3", False, 200),
        ("limit=2&sort=name", False, 200),  # kept in the Link, as ever
        ("limit=%32", False, 200),
    ]
    async with framework:
        for query, lean, status in cases:
            url = "/api/users" + (f"?{query}" if query else "")
            handed.clear()
            through_app = await client.get(url)
            assert handed == ([] if lean else ["/api/users"]), query
            through_framework = await framework.get(url)
            assert shape(through_app) == shape(through_framework), query
            assert through_app.status_code == status, (query, through_app.text)
        assert len((await client.get("/api/users")).json()) == 4
        assert (
            'after=2&limit=2>; rel="next"'
            in (await client.get("/api/users?limit=2")).headers["link"]
        )


async def test_a_length_no_server_could_read_is_the_frameworks_to_answer(api: Api) -> None:
    """Content-Length of 5,001 digits (zeros first, which the HTTP server lets through):
    the framework's 400, never a 500 from reading it as a number."""

    async def asgi(app: Any) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/verifications/check",
            "raw_path": b"/api/verifications/check",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"clave.test"),
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {api.key}".encode()),
                (b"content-length", b"0" * 5000 + b"2"),
            ],
            "client": ("127.0.0.1", 5000),
            "server": ("clave.test", 80),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    handed = who_answers(api.app)
    through_app = await asgi(api.app)
    assert handed == ["/api/verifications/check"]
    through_framework = await asgi(api.app.framework)
    assert through_app[0]["status"] == through_framework[0]["status"] == 400
