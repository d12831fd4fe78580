"""The forum routes on the whole monolith, in-process, on real SQLite files."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from clave.bootstrap import Settings, build_domains, prepare, prepare_async
from clave.platform.app import build_app
from clave.platform.client import AppRef
from tests.support import HMAC_KEYS, code_in, free_port

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


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CLAVE_DATA_DIR": str(tmp_path),
        "CLAVE_HMAC_KEYS": HMAC_KEYS,
        "CLAVE_DEV_INBOX": "true",
        "CLAVE_SEED": "true",
        "CLAVE_OUTBOX_POLL": "0.05",
        **extra,
    }


async def open_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    ref = AppRef()
    app = build_app(settings.platform, build_domains(settings, ref))
    ref.app = app
    async with AsyncTestClient(app, base_url="http://clave.test") as client:
        yield client


@pytest.fixture
def monolith_settings(tmp_path: Path) -> Settings:
    settings = Settings.load(env_for(tmp_path))
    prepare(settings)
    return settings


@pytest.fixture
async def api(monolith_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async for client in open_client(monolith_settings):
        yield client


def public(user: dict[str, Any]) -> dict[str, Any]:
    return {**user, "email": None, "phone": None, "emailVerified": False, "phoneVerified": False}


async def test_sample_data_in_the_original_shapes(api: AsyncTestClient[Any]) -> None:
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
async def test_unknown_ids_are_404_with_the_error_shape(
    api: AsyncTestClient[Any], path: str, code: str
) -> None:
    r = await api.get(path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == code


async def test_pagination_with_link_header(api: AsyncTestClient[Any]) -> None:
    first = await api.get("/api/posts", params={"limit": 4})
    assert [p["id"] for p in first.json()] == [1, 2, 3, 4]
    assert first.headers["link"] == '</api/posts?after=4&limit=4>; rel="next"'
    second = await api.get("/api/posts?after=4&limit=4")
    assert [p["id"] for p in second.json()] == [5, 6]
    assert "link" not in second.headers
    r = await api.get("/api/users", params={"limit": 0})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request")


async def test_create_update_delete(api: AsyncTestClient[Any]) -> None:
    r = await api.post(
        "/api/users", json={"username": "bmo", "name": "BMO", "email": "BMO@Example.com"}
    )
    assert r.status_code == 201
    bmo = r.json()
    assert (bmo["id"], bmo["email"]) == (5, "B***@example.com")
    r = await api.post("/api/users", json={"username": "bmo", "name": "Again"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "username_taken")
    r = await api.patch("/api/users/5", json={"bio": "Football!"})
    assert r.json()["bio"] == "Football!"

    r = await api.post("/api/threads", json={"title": "Games", "createdBy": 5})
    assert (r.status_code, r.json()) == (201, {"id": 4, "title": "Games", "createdBy": 5})
    r = await api.post("/api/threads", json={"title": "Nope", "createdBy": 99})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_user")

    r = await api.post("/api/posts", json={"thread": 4, "text": "Who wants to play?", "user": 5})
    assert (r.status_code, r.json()) == (
        201,
        {"id": 7, "thread": 4, "text": "Who wants to play?", "user": 5},
    )
    r = await api.post("/api/posts", json={"thread": 99, "text": "x", "user": 98})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_reference")
    assert "user 98" in r.json()["error"]["message"]
    assert "thread 99" in r.json()["error"]["message"]
    r = await api.patch("/api/posts/7", json={"text": "Anyone?"})
    assert r.json()["text"] == "Anyone?"
    assert (await api.delete("/api/posts/7")).status_code == 204
    assert (await api.get("/api/posts/7")).status_code == 404
    assert (await api.delete("/api/posts/7")).status_code == 404
    assert (await api.patch("/api/threads/4", json={"title": "Board games"})).json()[
        "title"
    ] == "Board games"
    assert (await api.delete("/api/users/5")).status_code == 204
    assert (await api.get("/api/users/5")).status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/users", {"username": "Bad Name", "name": "x"}),
        ("/api/users", {"username": "ok", "name": ""}),
        ("/api/users", {"username": "ok", "name": "x", "phone": "555"}),
        ("/api/users", {"username": "ok", "name": "x", "admin": True}),
        ("/api/threads", {"title": "", "createdBy": 1}),
        ("/api/threads", {"title": "x", "createdBy": "one"}),
        ("/api/posts", {"thread": 1, "text": "", "user": 1}),
        ("/api/posts", {"thread": 0, "text": "x", "user": 1}),
    ],
)
async def test_bad_input_is_400(api: AsyncTestClient[Any], path: str, body: dict[str, Any]) -> None:
    r = await api.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("invalid_request", "invalid_parameter")


async def test_user_proves_a_phone_through_verify(api: AsyncTestClient[Any]) -> None:
    r = await api.patch("/api/users/2", json={"phone": "+1 415 555 2671"})
    assert (r.json()["phone"], r.json()["phoneVerified"]) == ("+14******671", False)
    r = await api.post("/api/users/2/verification/check", json={"code": "123456"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "no_pending_verification")
    r = await api.post("/api/users/2/verification", json={"channel": "email"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "contact_missing")

    r = await api.post("/api/users/2/verification", json={"channel": "sms"})
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["to"]) == ("pending", "+14******671")
    deadline = time.monotonic() + 5
    while not (
        messages := (await api.get("/dev/inbox/messages", params={"to": "+14155552671"})).json()[
            "messages"
        ]
    ):
        assert time.monotonic() < deadline
    code = code_in(messages[0]["text"])
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    r = await api.post("/api/users/2/verification/check", json={"code": wrong})
    assert (
        r.json()["status"],
        r.json()["checkAttemptsLeft"],
        r.json()["user"]["phoneVerified"],
    ) == ("pending", 4, False)
    r = await api.post("/api/users/2/verification/check", json={"code": code})
    assert (r.json()["status"], r.json()["user"]["phoneVerified"]) == ("approved", True)
    # A new number is not verified any more.
    r = await api.patch("/api/users/2", json={"phone": "+14155552672"})
    assert r.json()["phoneVerified"] is False


async def test_verify_errors_pass_through_with_their_status(api: AsyncTestClient[Any]) -> None:
    await api.patch("/api/users/1", json={"phone": "+14155552671"})
    for _ in range(5):
        assert (
            await api.post("/api/users/1/verification", json={"channel": "sms"})
        ).status_code == 201
    r = await api.post("/api/users/1/verification", json={"channel": "sms"})
    assert (r.status_code, r.json()["error"]["code"]) == (429, "max_send_attempts_reached")
    assert int(r.headers["retry-after"]) > 0


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
        r = await client.post("/api/posts", json={"thread": 1, "text": "x", "user": 1})
        assert time.monotonic() - started < 3
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "dependency_unavailable"
        assert "unavailable" in r.json()["error"]["message"]


async def test_users_alone_needs_a_verify_key(tmp_path: Path) -> None:
    from clave.platform.settings import SettingsError

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
    from clave.verify.bootstrap import VerifyDomain

    shared = "ck_" + "s3cret" * 8
    settings = Settings.load(env_for(tmp_path, CLAVE_SERVICES="verify", CLAVE_VERIFY_KEY=shared))
    await prepare_async(settings)
    await prepare_async(settings)  # every start: installed once, no error the second time
    verify = VerifyDomain(settings.verify, settings.platform)
    verify.prepare()
    await verify.open()
    try:
        assert (await verify.tenants.service_for_key(shared)).name == "users"
        assert not (tmp_path / "users-verify-key").exists()
    finally:
        await verify.close()
    async for client in open_client(settings):
        auth = {"Authorization": f"Bearer {shared}"}
        r = await client.post(
            "/api/verifications", json={"to": "a@example.com", "channel": "email"}, headers=auth
        )
        assert r.status_code == 201, r.text


async def test_a_weak_shared_verify_key_is_refused(tmp_path: Path) -> None:
    from clave.verify.errors import InvalidParameter

    settings = Settings.load(env_for(tmp_path, CLAVE_SERVICES="verify", CLAVE_VERIFY_KEY="short"))
    with pytest.raises(InvalidParameter, match="32-200"):
        await prepare_async(settings)
