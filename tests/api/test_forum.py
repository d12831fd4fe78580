"""The forum routes on the whole monolith, in-process, on real SQLite files."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from clave import cli
from clave.bootstrap import Settings, build_domains, prepare, prepare_async
from clave.platform.app import build_app
from clave.platform.client import AppRef
from clave.platform.settings import SettingsError
from clave.verify.bootstrap import open_admin
from clave.verify.models import Channel
from tests.support import HMAC_KEYS, FakeClock, code_in, free_port

SAMPLE_USERS = [
    {
        "id": 1,
        "username": "marceline",
        "name": "Marceline Abadeer",
        "bio": "1000 year old vampire queen, musician",
    },
    {
        "id": 2,
        "username": "finn",
        "name": "Finn 'the Human' Mertens",
        "bio": "Adventurer and hero, last human, defender of good",
    },
    {
        "id": 3,
        "username": "pb",
        "name": "Bonnibel Bubblegum",
        "bio": "Scientist, bearer of candy power, ruler of the candy kingdom",
    },
    {
        "id": 4,
        "username": "jake",
        "name": "Jake the Dog",
        "bio": "Former criminal, now magical dog adventurer, and father",
    },
]
TOKEN = re.compile(r"clave_user_[A-Za-z0-9_-]{43}")
Client = AsyncTestClient[Any]


INBOX = "forum-test-inbox-token"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CLAVE_DATA_DIR": str(tmp_path),
        "CLAVE_HMAC_KEYS": HMAC_KEYS,
        "CLAVE_DEV_INBOX": "true",
        "CLAVE_SEED": "true",
        # Litestar's test client is the peer "testclient", not this machine: the inbox needs
        # its token then.
        "CLAVE_DEV_INBOX_TOKEN": INBOX,
        "CLAVE_OUTBOX_POLL": "0.05",
        **extra,
    }


async def open_client(
    settings: Settings, clock: Callable[[], float] = time.time
) -> AsyncIterator[Client]:
    ref = AppRef()
    app = build_app(settings.platform, build_domains(settings, ref, clock=clock))
    ref.app = app
    # Litestar's test client (it runs the lifespan) serves any ASGI app, not only its own.
    async with AsyncTestClient(app, base_url="http://clave.test") as client:  # type: ignore[type-var]
        yield client


@pytest.fixture
def monolith_settings(tmp_path: Path) -> Settings:
    settings = Settings.load(env_for(tmp_path))
    prepare(settings)
    return settings


@pytest.fixture
async def api(monolith_settings: Settings) -> AsyncIterator[Client]:
    async for client in open_client(monolith_settings):
        yield client


async def api_with(tmp_path: Path, **env: str) -> AsyncIterator[Client]:
    """A monolith with extra settings (prepared as `clave serve` would)."""
    settings = Settings.load(env_for(tmp_path, **env))
    await prepare_async(settings)
    async for client in open_client(settings):
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_up(api: Client, username: str, **fields: Any) -> tuple[dict[str, Any], str]:
    """A new user and its token."""
    r = await api.post("/api/users", json={"username": username, "name": username, **fields})
    assert r.status_code == 201, r.text
    body = r.json()
    return body, body.pop("token")


async def inbox(api: Client, to: str) -> list[dict[str, Any]]:
    r = await api.get(
        "/dev/inbox/messages", params={"to": to}, headers={"Authorization": f"Bearer {INBOX}"}
    )
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


async def wait_code(api: Client, to: str, count: int = 1) -> str:
    deadline = time.monotonic() + 5
    while len(messages := await inbox(api, to)) < count:
        assert time.monotonic() < deadline, f"no message to {to}"
        await asyncio.sleep(0.02)
    return code_in(messages[0]["text"])


def public(user: dict[str, Any]) -> dict[str, Any]:
    return {**user, "email": None, "phone": None, "emailVerified": False, "phoneVerified": False}


async def test_sample_data_in_the_original_shapes(api: Client) -> None:
    assert (await api.get("/api/users")).json() == [public(u) for u in SAMPLE_USERS]
    assert (await api.get("/api/users/3")).json() == public(SAMPLE_USERS[2])
    assert (await api.get("/api/threads/1")).json() == {
        "id": 1,
        "title": "What's up with the Lich?",
        "createdBy": 4,
    }
    assert len((await api.get("/api/threads")).json()) == 3
    assert (await api.get("/api/posts/in-thread/2")).json() == [
        {"id": 3, "thread": 2, "text": "Come party with the candy people tomorrow!", "user": 3},
        {"id": 4, "thread": 2, "text": "Mathematical!", "user": 2},
        {"id": 5, "thread": 2, "text": "I'll bring my guitar", "user": 1},
    ]
    assert [p["id"] for p in (await api.get("/api/posts/by-user/1")).json()] == [5, 6]
    assert (await api.get("/api/posts/in-thread/99")).json() == []
    assert len((await api.get("/api/posts")).json()) == 6


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/users/99", "user_not_found"),
        ("/api/threads/99", "thread_not_found"),
        ("/api/posts/99", "post_not_found"),
    ],
)
async def test_unknown_ids_are_404_with_the_error_shape(api: Client, path: str, code: str) -> None:
    r = await api.get(path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == code


async def test_pagination_with_link_header(api: Client) -> None:
    first = await api.get("/api/posts", params={"limit": 4})
    assert [p["id"] for p in first.json()] == [1, 2, 3, 4]
    assert first.headers["link"] == '<http://clave.test/api/posts?after=4&limit=4>; rel="next"'
    second = await api.get("/api/posts?after=4&limit=4")
    assert [p["id"] for p in second.json()] == [5, 6]
    assert "link" not in second.headers
    r = await api.get("/api/users", params={"limit": 0})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request")


async def test_link_headers_carry_the_public_origin_behind_a_proxy(tmp_path: Path) -> None:
    """The next page's link is https:// when the trusted proxy says the client used HTTPS,
    from the framework's routes and the lean one (GET /api/users) alike."""
    async for api in api_with(tmp_path, CLAVE_PROXY_HOPS="1"):
        https = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "forum.example"}
        posts = await api.get("/api/posts", params={"limit": 2}, headers=https)
        users = await api.get("/api/users", params={"limit": 2}, headers=https)
        for r, path in ((posts, "/api/posts"), (users, "/api/users")):
            expected = f'<https://forum.example{path}?after=2&limit=2>; rel="next"'
            assert r.headers["link"] == expected


async def test_sign_up_shows_the_token_once_and_keeps_only_its_hash(
    api: Client, tmp_path: Path
) -> None:
    r = await api.post(
        "/api/users", json={"username": "bmo", "name": "BMO", "email": "BMO@Example.com"}
    )
    assert r.status_code == 201
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    token = body.pop("token")
    assert TOKEN.fullmatch(token), token
    assert body == {
        "id": 5,
        "username": "bmo",
        "name": "BMO",
        "bio": "",
        "email": "B***@example.com",
        "phone": None,
        "emailVerified": False,
        "phoneVerified": False,
    }
    # Never again: not in a read, a list, or the user's own view of itself.
    for path, headers in (
        ("/api/users/5", {}),
        ("/api/users", {}),
        ("/api/users/me", bearer(token)),
    ):
        r = await api.get(path, headers=headers)
        assert r.status_code == 200, path
        assert token not in r.text
        assert "token" not in r.text
    assert (await api.get("/api/users/me", headers=bearer(token))).json() == body
    # The database holds its SHA-256, never the token.
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("users.db*"))
    assert token.encode() not in stored
    assert hashlib.sha256(token.encode()).digest() in stored
    # Two sign-ups, two different tokens.
    _, other = await sign_up(api, "bmo2")
    assert other != token


async def test_create_update_delete_with_the_users_own_token(api: Client) -> None:
    bmo, token = await sign_up(api, "bmo", email="bmo@example.com")
    auth = bearer(token)
    r = await api.post("/api/users", json={"username": "bmo", "name": "Again"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "username_taken")
    r = await api.patch("/api/users/5", json={"bio": "Football!"}, headers=auth)
    assert (r.status_code, r.json()["bio"]) == (200, "Football!")

    r = await api.post("/api/threads", json={"title": "Games", "createdBy": 5}, headers=auth)
    assert (r.status_code, r.json()) == (201, {"id": 4, "title": "Games", "createdBy": 5})
    # Creating as someone else is refused, whoever that is.
    for created_by in (1, 99):
        r = await api.post(
            "/api/threads", json={"title": "Nope", "createdBy": created_by}, headers=auth
        )
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")

    r = await api.post(
        "/api/posts", json={"thread": 4, "text": "Who wants to play?", "user": 5}, headers=auth
    )
    assert (r.status_code, r.json()) == (
        201,
        {"id": 7, "thread": 4, "text": "Who wants to play?", "user": 5},
    )
    r = await api.post("/api/posts", json={"thread": 99, "text": "x", "user": 5}, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_reference")
    assert "thread 99" in r.json()["error"]["message"]
    r = await api.patch("/api/posts/7", json={"text": "Anyone?"}, headers=auth)
    assert r.json()["text"] == "Anyone?"
    assert (await api.delete("/api/posts/7", headers=auth)).status_code == 204
    assert (await api.get("/api/posts/7")).status_code == 404
    r = await api.delete("/api/posts/7", headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "post_not_found")
    r = await api.patch("/api/threads/4", json={"title": "Board games"}, headers=auth)
    assert r.json()["title"] == "Board games"
    r = await api.patch("/api/threads/99", json={"title": "x"}, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "thread_not_found")
    assert (await api.delete("/api/threads/4", headers=auth)).status_code == 204
    assert (await api.delete("/api/users/5", headers=auth)).status_code == 204
    assert (await api.get("/api/users/5")).status_code == 404
    assert bmo["id"] == 5


@pytest.fixture
async def victim(api: Client) -> dict[str, Any]:
    """A user with a phone, a thread and a post of its own; and another signed-up user."""
    user, token = await sign_up(api, "victim", phone="+14155552671", email="v@example.com")
    auth = bearer(token)
    thread = await api.post(
        "/api/threads", json={"title": "Mine", "createdBy": user["id"]}, headers=auth
    )
    post = await api.post(
        "/api/posts", json={"thread": 1, "text": "mine", "user": user["id"]}, headers=auth
    )
    _, mallory = await sign_up(api, "mallory", phone="+14155550100")
    return {
        "id": user["id"],
        "token": token,
        "thread": thread.json()["id"],
        "post": post.json()["id"],
        "mallory": mallory,
    }


# Every write route, acting on the victim's user, thread or post.
WRITES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PATCH", "/api/users/{id}", {"phone": "+14155550100"}),
    ("DELETE", "/api/users/{id}", None),
    ("POST", "/api/users/{id}/token", None),
    ("POST", "/api/users/{id}/verification", {"channel": "sms"}),
    ("POST", "/api/users/{id}/verification", {"channel": "call"}),
    ("POST", "/api/users/{id}/verification", {"channel": "email"}),
    ("POST", "/api/users/{id}/verification/check", {"code": "123456"}),
    ("POST", "/api/users/{id}/totp", {}),
    ("POST", "/api/users/{id}/totp/confirm", {"code": "123456"}),
    ("POST", "/api/threads", {"title": "as you", "createdBy": "{id}"}),
    ("PATCH", "/api/threads/{thread}", {"title": "pwned"}),
    ("DELETE", "/api/threads/{thread}", None),
    ("POST", "/api/posts", {"thread": 1, "text": "as you", "user": "{id}"}),
    ("PATCH", "/api/posts/{post}", {"text": "pwned"}),
    ("DELETE", "/api/posts/{post}", None),
]


def _fill(value: Any, victim: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, victim) for k, v in value.items()}
    if value == "{id}":
        return victim["id"]
    return value


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_every_write_needs_the_owners_token(
    api: Client,
    victim: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    url = path.format(**victim)
    payload = {"json": _fill(body, victim)} if body is not None else {}
    cases = [
        ({}, 401, "unauthorized"),
        (bearer(victim["mallory"]), 403, "forbidden"),
    ]
    for headers, status, code in cases:
        r = await api.request(method, url, headers=headers, **payload)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (headers, r.text)
        if status == 401:
            assert r.headers["www-authenticate"] == 'Bearer realm="clave"'
    # Nothing changed, nothing was sent.
    user = (await api.get(f"/api/users/{victim['id']}")).json()
    assert user["phone"] == "+14******671"
    assert (await api.get(f"/api/threads/{victim['thread']}")).json()["title"] == "Mine"
    assert (await api.get(f"/api/posts/{victim['post']}")).json()["text"] == "mine"
    assert (await api.get(f"/api/posts/by-user/{victim['id']}")).json() == [
        {"id": victim["post"], "thread": 1, "text": "mine", "user": victim["id"]}
    ]
    assert (await api.get("/api/threads?after=3")).json() == [
        {"id": victim["thread"], "title": "Mine", "createdBy": victim["id"]}
    ]
    assert await inbox(api, "+14155552671") == []
    assert await inbox(api, "v@example.com") == []
    assert (await api.get("/api/users/me", headers=bearer(victim["token"]))).status_code == 200


async def test_the_seeded_users_have_no_token_until_an_operator_issues_one(
    api: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, mallory = await sign_up(api, "mallory")
    r = await api.patch("/api/users/1", json={"phone": "+14155552671"})
    assert r.status_code == 401
    r = await api.patch("/api/users/1", json={"phone": "+14155552671"}, headers=bearer(mallory))
    assert r.status_code == 403

    for name, value in env_for(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert await asyncio.to_thread(cli.main, ["user", "token", "1"]) == 0
    first = capsys.readouterr().out
    assert TOKEN.fullmatch(first.strip()), first  # the token and nothing else
    r = await api.patch("/api/users/1", json={"bio": "Vampire"}, headers=bearer(first.strip()))
    assert (r.status_code, r.json()["bio"]) == (200, "Vampire")
    # Issuing again rotates: the first one stops working.
    assert await asyncio.to_thread(cli.main, ["user", "token", "1"]) == 0
    second = capsys.readouterr().out.strip()
    assert (await api.get("/api/users/me", headers=bearer(first.strip()))).status_code == 401
    assert (await api.get("/api/users/me", headers=bearer(second))).json()["id"] == 1
    # Posting as marceline works now (threads and posts ask users who the token is).
    r = await api.post(
        "/api/posts", json={"thread": 3, "text": "Found one!", "user": 1}, headers=bearer(second)
    )
    assert r.status_code == 201
    assert await asyncio.to_thread(cli.main, ["user", "token", "99"]) == 1
    assert "no user with id 99" in capsys.readouterr().err


async def test_rotation_revokes_the_old_token_at_once(api: Client) -> None:
    user, old = await sign_up(api, "bmo")
    r = await api.post(f"/api/users/{user['id']}/token", headers=bearer(old))
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    new = r.json()["token"]
    assert TOKEN.fullmatch(new)
    assert new != old
    assert r.json() == {"token": new}
    # The old token is dead everywhere: users, and threads and posts (through users).
    for method, path, body in (
        ("GET", "/api/users/me", None),
        ("PATCH", f"/api/users/{user['id']}", {"bio": "x"}),
        ("POST", f"/api/users/{user['id']}/token", None),
        ("POST", "/api/threads", {"title": "x", "createdBy": user["id"]}),
        ("POST", "/api/posts", {"thread": 1, "text": "x", "user": user["id"]}),
    ):
        r = await api.request(method, path, headers=bearer(old), json=body)
        assert r.status_code == 401, (path, r.text)
    assert (await api.get("/api/users/me", headers=bearer(new))).json()["id"] == user["id"]
    r = await api.post("/api/threads", json={"title": "x", "createdBy": 5}, headers=bearer(new))
    assert r.status_code == 201


async def test_concurrent_rotations_with_one_token_leave_one_new_token(api: Client) -> None:
    user, old = await sign_up(api, "bmo")
    answers = await asyncio.gather(
        *(api.post(f"/api/users/{user['id']}/token", headers=bearer(old)) for _ in range(5))
    )
    issued = [r.json()["token"] for r in answers if r.status_code == 200]
    assert sorted(r.status_code for r in answers) == [200, 401, 401, 401, 401]
    working = [
        t for t in issued if (await api.get("/api/users/me", headers=bearer(t))).status_code == 200
    ]
    assert working == issued


async def test_deleting_a_user_kills_its_token(api: Client) -> None:
    user, token = await sign_up(api, "bmo")
    assert (await api.delete(f"/api/users/{user['id']}", headers=bearer(token))).status_code == 204
    r = await api.get("/api/users/me", headers=bearer(token))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
    # A new user of the same name does not inherit it.
    again, _ = await sign_up(api, "bmo")
    assert again["id"] != user["id"]
    r = await api.patch(f"/api/users/{again['id']}", json={"bio": "x"}, headers=bearer(token))
    assert r.status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer",
        b"Bearer ",
        b"Basic Zm9vOmJhcg==",
        b"Token clave_user_" + b"A" * 43,
        b"bearer clave_user_" + b"A" * 43,  # well formed, no such token
        b"Bearer clave_user_" + b"A" * 42,
        b"Bearer clave_" + b"A" * 43,  # an API key's shape
        b"Bearer clave_user_" + "\u00e9".encode("latin-1") * 43,
        b"Bearer clave_user_" + "\u00e9".encode() * 22,
        b"Bearer \xff\xfe\x00",
        b"Bearer " + b"A" * 100_000,
    ],
)
async def test_a_malformed_authorization_is_401_on_every_domain(api: Client, header: bytes) -> None:
    for method, path, body in (
        ("GET", "/api/users/me", None),
        ("PATCH", "/api/users/1", {"bio": "x"}),
        ("POST", "/api/threads", {"title": "x", "createdBy": 1}),
        ("PATCH", "/api/threads/1", {"title": "x"}),
        ("POST", "/api/posts", {"thread": 1, "text": "x", "user": 1}),
        ("DELETE", "/api/posts/1", None),
    ):
        r = await api.request(method, path, headers={b"Authorization": header}, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized"), (path, r.text)
        assert r.headers["www-authenticate"] == 'Bearer realm="clave"'


async def test_the_tokens_user_acts_only_on_its_own(api: Client) -> None:
    """A user's token is worth nothing on the sample data of others."""
    _, token = await sign_up(api, "bmo")
    auth = bearer(token)
    for method, path, body in (
        ("PATCH", "/api/threads/1", {"title": "mine now"}),
        ("DELETE", "/api/threads/1", None),
        ("PATCH", "/api/posts/1", {"text": "mine now"}),
        ("DELETE", "/api/posts/1", None),
        ("DELETE", "/api/users/99", None),
    ):
        r = await api.request(method, path, headers=auth, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), path
    assert (await api.get("/api/threads/1")).json()["title"] == "What's up with the Lich?"
    assert (await api.get("/api/posts/1")).json()["text"] == (
        "Has anyone checked on the lich recently?"
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/users", {"username": "Bad Name", "name": "x"}),
        ("/api/users", {"username": "ok", "name": ""}),
        ("/api/users", {"username": "ok", "name": "x", "phone": "555"}),
        ("/api/users", {"username": "ok", "name": "x", "admin": True}),
        ("/api/users", {"username": "ok", "name": "x", "token": "clave_user_" + "A" * 43}),
        ("/api/threads", {"title": "", "createdBy": 5}),
        ("/api/threads", {"title": "x", "createdBy": "one"}),
        ("/api/posts", {"thread": 1, "text": "", "user": 5}),
        ("/api/posts", {"thread": 0, "text": "x", "user": 5}),
    ],
)
async def test_bad_input_is_400(api: Client, path: str, body: dict[str, Any]) -> None:
    _, token = await sign_up(api, "bmo")
    r = await api.post(path, json=body, headers=bearer(token))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("invalid_request", "invalid_parameter")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/users", {"username": "eve", "name": "Eve\r\nAdmin: yes"}),
        ("POST", "/api/users", {"username": "eve", "name": "Eve \u202egnp.exe"}),
        ("POST", "/api/users", {"username": "eve", "name": "Eve\tTab"}),
        ("POST", "/api/users", {"username": "eve", "name": "Eve", "bio": "\x1b[31mred"}),
        ("POST", "/api/users", {"username": "eve", "name": "Eve", "bio": "nul\x00"}),
        ("PATCH", "/api/users/5", {"name": "bell\x07"}),
        ("PATCH", "/api/users/5", {"bio": "zero\u200bwidth"}),
        ("POST", "/api/threads", {"title": "two\nlines", "createdBy": 5}),
        ("POST", "/api/threads", {"title": "\u2028separator", "createdBy": 5}),
        ("PATCH", "/api/threads/4", {"title": "tab\there"}),
        ("POST", "/api/posts", {"thread": 1, "text": "esc\x1b[2J", "user": 5}),
        ("PATCH", "/api/posts/7", {"text": "rtl \u202e override"}),
    ],
)
async def test_control_characters_are_refused(
    api: Client, method: str, path: str, body: dict[str, Any]
) -> None:
    _, token = await sign_up(api, "bmo")
    auth = bearer(token)
    await api.post("/api/threads", json={"title": "Games", "createdBy": 5}, headers=auth)
    await api.post("/api/posts", json={"thread": 4, "text": "hi", "user": 5}, headers=auth)
    r = await api.request(method, path, json=body, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_parameter"), r.text
    assert (await api.get("/api/users/5")).json()["name"] == "bmo"
    assert (await api.get("/api/threads/4")).json()["title"] == "Games"
    assert (await api.get("/api/posts/7")).json()["text"] == "hi"
    assert (await api.get("/api/users/6")).status_code == 404  # no user was made


async def test_line_breaks_and_tabs_are_fine_in_a_bio_and_a_post(api: Client) -> None:
    user, token = await sign_up(api, "bmo", bio="line one\nline two\r\n\tindented")
    assert user["bio"] == "line one\nline two\r\n\tindented"
    r = await api.post(
        "/api/posts",
        json={"thread": 1, "text": "para one\n\npara two\tend", "user": 5},
        headers=bearer(token),
    )
    assert (r.status_code, r.json()["text"]) == (201, "para one\n\npara two\tend")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/users"),
        ("PATCH", "/api/users/5"),
        ("POST", "/api/users/5/verification"),
        ("POST", "/api/threads"),
        ("PATCH", "/api/threads/1"),
        ("POST", "/api/posts"),
        ("PATCH", "/api/posts/1"),
    ],
)
async def test_json_routes_refuse_other_media_types(api: Client, method: str, path: str) -> None:
    """A cross-site form or text/plain POST (no CORS preflight) cannot drive the forum."""
    _, token = await sign_up(api, "bmo", phone="+14155552671")
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        r = await api.request(
            method,
            path,
            content=b'{"username": "csrf", "name": "x", "title": "x", "createdBy": 5}',
            headers={**bearer(token), "Content-Type": content_type},
        )
        assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert (await api.get("/api/users/6")).status_code == 404
    assert await inbox(api, "+14155552671") == []


async def test_user_proves_a_phone_through_verify(api: Client) -> None:
    _, token = await sign_up(api, "bmo")
    auth = bearer(token)
    r = await api.patch("/api/users/5", json={"phone": "+1 415 555 2671"}, headers=auth)
    assert (r.json()["phone"], r.json()["phoneVerified"]) == ("+14******671", False)
    r = await api.post("/api/users/5/verification/check", json={"code": "123456"}, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "no_pending_verification")
    r = await api.post("/api/users/5/verification", json={"channel": "email"}, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "contact_missing")

    r = await api.post("/api/users/5/verification", json={"channel": "sms"}, headers=auth)
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["to"]) == ("pending", "+14******671")
    code = await wait_code(api, "+14155552671")
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    r = await api.post("/api/users/5/verification/check", json={"code": wrong}, headers=auth)
    assert (
        r.json()["status"],
        r.json()["checkAttemptsLeft"],
        r.json()["user"]["phoneVerified"],
    ) == ("pending", 4, False)
    r = await api.post("/api/users/5/verification/check", json={"code": code}, headers=auth)
    assert (r.json()["status"], r.json()["user"]["phoneVerified"]) == ("approved", True)
    # A new number is not verified any more.
    r = await api.patch("/api/users/5", json={"phone": "+14155552672"}, headers=auth)
    assert r.json()["phoneVerified"] is False


PHONES = [f"+1415555{n:04d}" for n in range(2671, 2691)]


async def test_at_most_five_starts_a_day_however_the_contact_changes(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    settings = Settings.load(env_for(tmp_path))
    await prepare_async(settings)
    async for api in open_client(settings, clock=clock):
        user, token = await sign_up(api, "bmo", phone=PHONES[0], email="bmo@example.com")
        other_user, other = await sign_up(api, "finn2", phone=PHONES[10])
        auth = bearer(token)
        start = f"/api/users/{user['id']}/verification"
        for n, channel in enumerate(["sms", "email", "sms", "sms", "email"]):
            r = await api.post(start, json={"channel": channel}, headers=auth)
            assert r.status_code == 201, (n, r.text)
            # A new phone each time: verify's per-destination limit never applies.
            await api.patch(f"/api/users/{user['id']}", json={"phone": PHONES[n + 1]}, headers=auth)
            clock.advance(3600)
        for channel in ("sms", "email"):
            r = await api.post(start, json={"channel": channel}, headers=auth)
            assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_verifications")
            # The day began at the first start, 5 hours ago.
            assert int(r.headers["retry-after"]) == 19 * 3600
        assert len(await inbox(api, PHONES[5])) == 0
        # Another user has its own budget.
        r = await api.post(
            f"/api/users/{other_user['id']}/verification",
            json={"channel": "sms"},
            headers=bearer(other),
        )
        assert r.status_code == 201, r.text
        # A day after the first start, a new day begins.
        clock.advance(19 * 3600)
        r = await api.post(start, json={"channel": "sms"}, headers=auth)
        assert r.status_code == 201, r.text


async def test_concurrent_starts_never_pass_the_cap(tmp_path: Path) -> None:
    async for api in api_with(tmp_path, CLAVE_USERS_VERIFICATIONS_PER_DAY="3"):
        user, token = await sign_up(api, "bmo", email="bmo@example.com")
        answers = await asyncio.gather(
            *(
                api.post(
                    f"/api/users/{user['id']}/verification",
                    json={"channel": "email"},
                    headers=bearer(token),
                )
                for _ in range(12)
            )
        )
        statuses = [r.status_code for r in answers]
        assert statuses.count(201) == 3, statuses  # a first send, then re-sends
        assert statuses.count(429) == 9, statuses
        assert {r.json()["error"]["code"] for r in answers if r.status_code == 429} == {
            "too_many_verifications"
        }


async def test_verify_errors_pass_through_and_refused_starts_are_not_counted(
    tmp_path: Path,
) -> None:
    async for api in api_with(tmp_path, CLAVE_USERS_VERIFICATIONS_PER_DAY="6"):
        user, token = await sign_up(api, "bmo", phone=PHONES[0])
        auth = bearer(token)
        start = f"/api/users/{user['id']}/verification"
        for _ in range(5):
            assert (await api.post(start, json={"channel": "sms"}, headers=auth)).status_code == 201
        # verify's own per-destination limit: its status, code and Retry-After pass through.
        r = await api.post(start, json={"channel": "sms"}, headers=auth)
        assert (r.status_code, r.json()["error"]["code"]) == (429, "max_send_attempts_reached")
        assert int(r.headers["retry-after"]) > 0
        # That refusal sent nothing, so it did not use the 6th start of the day.
        await api.patch(f"/api/users/{user['id']}", json={"phone": PHONES[1]}, headers=auth)
        r = await api.post(start, json={"channel": "sms"}, headers=auth)
        assert r.status_code == 201, r.text
        r = await api.post(start, json={"channel": "sms"}, headers=auth)
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_verifications")


async def test_the_users_tenant_sends_sms_and_email_only_by_default(
    api: Client, monolith_settings: Settings
) -> None:
    user, token = await sign_up(api, "bmo", phone=PHONES[0], email="bmo@example.com")
    auth = bearer(token)
    start = f"/api/users/{user['id']}/verification"
    for channel in ("call", "whatsapp", "call", "whatsapp", "call", "whatsapp"):
        r = await api.post(start, json={"channel": channel}, headers=auth)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "channel_not_allowed")
    assert await inbox(api, PHONES[0]) == []
    # The refusals did not use up the day: five starts remain.
    for channel in ("sms", "email", "email", "email", "email"):
        r = await api.post(start, json={"channel": channel}, headers=auth)
        assert r.status_code == 201, r.text
    r = await api.post(start, json={"channel": "email"}, headers=auth)
    assert r.json()["error"]["code"] == "too_many_verifications"


async def test_an_operator_may_widen_the_users_tenant_and_a_restart_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = env_for(tmp_path, CLAVE_KEY_CACHE_SECONDS="0")
    settings = Settings.load(env)
    await prepare_async(settings)

    async def channels() -> set[Channel]:
        async with open_admin(settings.verify, settings.platform) as verify:
            return set((await verify.tenants.get_tenant("users")).policy.channels)

    assert await channels() == {Channel.SMS, Channel.EMAIL}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (
        await asyncio.to_thread(
            cli.main, ["service", "update", "users", "--channels", "sms,email,call"]
        )
        == 0
    )
    capsys.readouterr()
    await prepare_async(settings)  # a restart
    assert await channels() == {Channel.SMS, Channel.EMAIL, Channel.CALL}
    async for api in open_client(settings):
        user, token = await sign_up(api, "bmo", phone=PHONES[0])
        r = await api.post(
            f"/api/users/{user['id']}/verification", json={"channel": "call"}, headers=bearer(token)
        )
        assert r.status_code == 201, r.text


async def test_a_default_policy_without_sms_and_email_stops_start_up(tmp_path: Path) -> None:
    settings = Settings.load(env_for(tmp_path, CLAVE_CHANNELS="call,whatsapp"))
    with pytest.raises(SettingsError, match="CLAVE_CHANNELS"):
        await prepare_async(settings)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", "100000"])
def test_an_invalid_daily_cap_stops_start_up_naming_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="CLAVE_USERS_VERIFICATIONS_PER_DAY"):
        Settings.load(env_for(tmp_path, CLAVE_USERS_VERIFICATIONS_PER_DAY=value))
    assert Settings.load(env_for(tmp_path)).users.verifications_per_day == 5


async def test_verify_counts_the_end_users_address_not_the_services(tmp_path: Path) -> None:
    """Behind one trusted proxy, users passes the address it appended to X-Forwarded-For,
    so verify's per-IP limit holds back many users sending from one place."""
    async for api in api_with(tmp_path, CLAVE_PROXY_HOPS="1", CLAVE_LIMIT_SENDS_PER_IP="3/3600"):
        tokens = []
        for n in range(5):
            user, token = await sign_up(api, f"user{n}", phone=PHONES[n])
            tokens.append((user["id"], token))

        async def start(
            n: int, forwarded: str, api: Client = api, tokens: list[tuple[int, str]] = tokens
        ) -> Any:
            uid, token = tokens[n]
            return await api.post(
                f"/api/users/{uid}/verification",
                json={"channel": "sms"},
                headers={**bearer(token), "X-Forwarded-For": forwarded},
            )

        # What the client wrote further left is not trusted: the proxy's entry counts.
        for n in range(3):
            assert (await start(n, f"10.0.0.{n}, 203.0.113.7")).status_code == 201
        r = await start(3, "203.0.113.7")
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_sends_from_ip")
        assert int(r.headers["retry-after"]) > 0
        assert await inbox(api, PHONES[3]) == []
        # Another end user is not held back by the first one's sends.
        assert (await start(3, "198.51.100.2")).status_code == 201
        # IPv6 end users are counted by /64, as verify does.
        for n, address in enumerate(["2001:db8::1", "2001:db8::2", "2001:db8::3"]):
            assert (await start(n, address)).status_code == 201  # a re-send, counted too
        r = await start(4, "2001:db8::4")
        assert r.json()["error"]["code"] == "too_many_sends_from_ip"


async def test_openapi_marks_the_write_routes_as_bearer(api: Client) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    secured = {
        (path, method)
        for path, item in paths.items()
        for method, operation in item.items()
        if path.startswith(("/api/users", "/api/threads", "/api/posts"))
        and operation.get("security") == [{"bearer": []}]
    }
    assert secured == {
        ("/api/users/me", "get"),
        ("/api/users/{user_id}", "patch"),
        ("/api/users/{user_id}", "delete"),
        ("/api/users/{user_id}/token", "post"),
        ("/api/users/{user_id}/verification", "post"),
        ("/api/users/{user_id}/verification/check", "post"),
        ("/api/users/{user_id}/totp", "post"),
        ("/api/users/{user_id}/totp/confirm", "post"),
        ("/api/threads", "post"),
        ("/api/threads/{thread_id}", "patch"),
        ("/api/threads/{thread_id}", "delete"),
        ("/api/posts", "post"),
        ("/api/posts/{post_id}", "patch"),
        ("/api/posts/{post_id}", "delete"),
    }


async def test_a_dead_dependency_is_a_quick_503(tmp_path: Path) -> None:
    """posts alone, with users and threads pointing at a port where nothing listens."""
    dead = f"http://127.0.0.1:{free_port()}"
    settings = Settings.load(
        env_for(tmp_path, CLAVE_SERVICES="posts", CLAVE_USERS_URL=dead, CLAVE_THREADS_URL=dead)
    )
    await prepare_async(settings)
    async for client in open_client(settings):
        assert (await client.get("/api/posts/1")).status_code == 200  # its own data still answers
        started = time.monotonic()
        r = await client.post(
            "/api/posts",
            json={"thread": 1, "text": "x", "user": 1},
            headers=bearer("clave_user_" + "A" * 43),
        )
        assert time.monotonic() - started < 3
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "dependency_unavailable"
        assert "unavailable" in r.json()["error"]["message"]
        # Without a token there is nothing to ask users: 401 at once.
        r = await client.post("/api/posts", json={"thread": 1, "text": "x", "user": 1})
        assert r.status_code == 401


async def test_users_alone_needs_a_verify_key(tmp_path: Path) -> None:
    settings = Settings.load(
        env_for(tmp_path, CLAVE_SERVICES="users", CLAVE_VERIFY_URL="http://127.0.0.1:1")
    )
    with pytest.raises(SettingsError, match="CLAVE_VERIFY_KEY"):
        build_domains(settings)
    settings = Settings.load(env_for(tmp_path, CLAVE_SERVICES="threads"))
    with pytest.raises(SettingsError, match="CLAVE_USERS_URL"):
        build_domains(settings)


async def test_a_shared_verify_key_is_installed_where_verify_runs(tmp_path: Path) -> None:
    # A split deployment gives verify and users the same secret (CLAVE_VERIFY_KEY): verify
    # accepts it for the users tenant, users sends with it.
    shared = "ck_" + "s3cret" * 8
    settings = Settings.load(env_for(tmp_path, CLAVE_SERVICES="verify", CLAVE_VERIFY_KEY=shared))
    await prepare_async(settings)
    await prepare_async(settings)  # every start: installed once, no error the second time
    async with open_admin(settings.verify, settings.platform) as verify:
        service = await verify.tenants.tenant_for_key(shared)
        assert service.name == "users"
        assert service.policy.channels == {Channel.SMS, Channel.EMAIL}
        assert not (tmp_path / "users-verify-key").exists()
    async for client in open_client(settings):
        auth = {"Authorization": f"Bearer {shared}"}
        r = await client.post(
            "/api/verifications", json={"to": "a@example.com", "channel": "email"}, headers=auth
        )
        assert r.status_code == 201, r.text
        r = await client.post(
            "/api/verifications", json={"to": "+14155552671", "channel": "call"}, headers=auth
        )
        assert (r.status_code, r.json()["error"]["code"]) == (422, "channel_not_allowed")


async def test_a_weak_shared_verify_key_is_refused(tmp_path: Path) -> None:
    from clave.verify.errors import InvalidParameter

    settings = Settings.load(env_for(tmp_path, CLAVE_SERVICES="verify", CLAVE_VERIFY_KEY="short"))
    with pytest.raises(InvalidParameter, match="32-200"):
        await prepare_async(settings)
