"""The migration guarantee and the promised benefits, against real processes behind haproxy."""

from __future__ import annotations

import collections
import os
import re
import signal
import threading
import time
from typing import Any

import httpx
import pyotp
import pytest

from tests.e2e.up import ClaveUp, children
from tests.support import code_in

pytestmark = pytest.mark.e2e

USERS = [
    (1, "marceline", "Marceline Abadeer", "1000 year old vampire queen, musician"),
    (2, "finn", "Finn 'the Human' Mertens", "Adventurer and hero, last human, defender of good"),
    (3, "pb", "Bonnibel Bubblegum", "Scientist, bearer of candy power, ruler of the candy kingdom"),
    (4, "jake", "Jake the Dog", "Former criminal, now magical dog adventurer, and father"),
]
# Mid-migration: each service at a different step of the strangler.
MIXED = {"verify": 50, "users": 50, "threads": 100, "posts": 10}
# Ids, times and tokens differ from run to run; the transcripts compare everything else.
_VOLATILE = re.compile(
    r"(?:V[AE]|IN)[0-9a-f]{32}|\d{4}-\d\d-\d\dT[\d:.]+Z|clave_user_[A-Za-z0-9_-]{43}"
)


def user_json(uid: int, username: str, name: str, bio: str, **extra: Any) -> dict[str, Any]:
    base = {"id": uid, "username": username, "name": name, "bio": bio, "email": None, "phone": None}
    return base | {"emailVerified": False, "phoneVerified": False} | extra


def inbox_code(client: httpx.Client, to: str, count: int = 1) -> str:
    deadline = time.monotonic() + 15
    while True:
        messages = client.get("/dev/inbox/messages", params={"to": to}).json()["messages"]
        if len(messages) >= count:
            return code_in(messages[0]["text"])
        assert time.monotonic() < deadline, f"no message to {to}"
        time.sleep(0.05)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def suite(client: httpx.Client, key: str, finn: str) -> list[Any]:
    """Every route, reads and writes; asserts what each answers and returns a transcript.
    `finn` is the token an operator issued to the sample user finn (2)."""
    seen: list[Any] = []

    origin = str(client.base_url).rstrip("/")

    def call(method: str, path: str, expect: int, **kw: Any) -> Any:
        r = client.request(method, path, **kw)
        link = r.headers.get("link")
        if link is not None:  # absolute, at the origin the client used (this stack's port)
            assert link.startswith(f"<{origin}/"), link
            link = link.replace(origin, "", 1)
        assert r.status_code == expect, (method, path, r.status_code, r.text)
        body = (
            r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        )
        seen.append(
            (
                method,
                _VOLATILE.sub("*", path),
                r.status_code,
                _VOLATILE.sub("*", repr(body)),
                link,
                r.headers.get("www-authenticate"),
            )
        )
        return body

    assert call("GET", "/", 200).startswith("clave ")
    assert call("GET", "/api", 200)["name"] == "clave"
    assert call("GET", "/api/users", 200) == [user_json(*u) for u in USERS]
    assert call("GET", "/api/users/2", 200) == user_json(*USERS[1])
    assert call("GET", "/api/users/99", 404)["error"]["code"] == "user_not_found"
    assert call("GET", "/api/threads", 200)[1] == {
        "id": 2,
        "title": "Party at the candy kingdom tomorrow",
        "createdBy": 3,
    }
    assert call("GET", "/api/threads/3", 200)["createdBy"] == 1
    assert call("GET", "/api/threads/99", 404)["error"]["code"] == "thread_not_found"
    assert [p["id"] for p in call("GET", "/api/posts", 200)] == [1, 2, 3, 4, 5, 6]
    assert [p["text"] for p in call("GET", "/api/posts/in-thread/1", 200)] == [
        "Has anyone checked on the lich recently?",
        "I'll stop by and see how he's doing tomorrow!",
    ]
    assert [p["id"] for p in call("GET", "/api/posts/by-user/2", 200)] == [2, 4]
    assert call("GET", "/api/posts/in-thread/99", 200) == []
    assert len(call("GET", "/api/posts?limit=2", 200)) == 2
    assert seen[-1][4] == '</api/posts?after=2&limit=2>; rel="next"'

    bmo = call(
        "POST", "/api/users", 201, json={"username": "bmo", "name": "BMO", "phone": "+14155552671"}
    )
    token = bmo.pop("token")
    assert bmo == user_json(5, "bmo", "BMO", "", phone="+14******671")
    mine = bearer(token)
    assert (
        call("POST", "/api/users", 409, json={"username": "bmo", "name": "x"})["error"]["code"]
        == "username_taken"
    )
    assert call("GET", "/api/users/me", 200, headers=mine) == bmo
    assert "token" not in call("GET", "/api/users/5", 200)
    assert call("GET", "/api/users/me", 401)["error"]["code"] == "unauthorized"
    # Writes as a user need that user's token, in every domain.
    patch = {"bio": "Who wants to play video games?"}
    assert call("PATCH", "/api/users/5", 401, json=patch)["error"]["code"] == "unauthorized"
    assert call("PATCH", "/api/users/5", 403, json=patch, headers=bearer(finn))
    assert call("PATCH", "/api/users/5", 200, json=patch, headers=mine)["bio"]
    games = {"title": "Games", "createdBy": 5}
    assert call("POST", "/api/threads", 401, json=games)["error"]["code"] == "unauthorized"
    assert call("POST", "/api/threads", 201, json=games, headers=mine) == {
        "id": 4,
        "title": "Games",
        "createdBy": 5,
    }
    assert (
        call("POST", "/api/threads", 403, json={"title": "x", "createdBy": 99}, headers=mine)[
            "error"
        ]["code"]
        == "forbidden"
    )
    me_too = {"thread": 4, "text": "Me!", "user": 2}
    assert call("POST", "/api/posts", 401, json=me_too)["error"]["code"] == "unauthorized"
    assert call("POST", "/api/posts", 403, json=me_too, headers=mine)["error"]["code"] == (
        "forbidden"
    )
    assert call("POST", "/api/posts", 201, json=me_too, headers=bearer(finn))["id"] == 7
    assert (
        call("POST", "/api/posts", 422, json={"thread": 99, "text": "x", "user": 5}, headers=mine)[
            "error"
        ]["code"]
        == "unknown_reference"
    )
    assert call("GET", "/api/posts/in-thread/4", 200) == [
        {"id": 7, "thread": 4, "text": "Me!", "user": 2}
    ]
    assert call("PATCH", "/api/posts/7", 403, json={"text": "Me?"}, headers=mine)
    assert (
        call("PATCH", "/api/posts/7", 200, json={"text": "Me too!"}, headers=bearer(finn))["text"]
        == "Me too!"
    )
    call("DELETE", "/api/posts/7", 403, headers=mine)
    call("DELETE", "/api/posts/7", 204, headers=bearer(finn))
    assert call("GET", "/api/posts/7", 404)["error"]["code"] == "post_not_found"
    assert call("PATCH", "/api/threads/4", 403, json={"title": "x"}, headers=bearer(finn))
    assert (
        call("PATCH", "/api/threads/4", 200, json={"title": "Video games"}, headers=mine)["title"]
        == "Video games"
    )

    # Prometheus scrapes the components directly: never through the load balancer.
    assert call("GET", "/metrics", 404)["error"]["code"] == "not_found"
    assert call("GET", "/metrics/", 404)["error"]["code"] == "not_found"

    # users -> verify, across whatever processes serve them.
    start = "/api/users/5/verification"
    assert call("POST", start, 401, json={"channel": "sms"})["error"]["code"] == "unauthorized"
    assert call("POST", start, 403, json={"channel": "sms"}, headers=bearer(finn))
    assert (
        call("POST", start, 422, json={"channel": "call"}, headers=mine)["error"]["code"]
        == "channel_not_allowed"
    )
    started = call("POST", start, 201, json={"channel": "sms"}, headers=mine)
    assert (started["status"], started["to"]) == ("pending", "+14******671")
    code = inbox_code(client, "+14155552671")
    checked = call("POST", f"{start}/check", 200, json={"code": code}, headers=mine)
    assert (checked["status"], checked["user"]["phoneVerified"]) == ("approved", True)
    assert call("GET", "/api/users/5", 200)["phoneVerified"] is True
    # A new token: the old one stops working everywhere at once.
    rotated = call("POST", "/api/users/5/token", 200, headers=mine)["token"]
    assert rotated != token
    assert call("GET", "/api/users/me", 401, headers=mine)["error"]["code"] == "unauthorized"
    assert call("PATCH", "/api/threads/4", 401, json={"title": "x"}, headers=mine)
    mine = bearer(rotated)
    assert call("GET", "/api/users/me", 200, headers=mine)["id"] == 5

    # An authenticator app (users -> verify's factors), then a sign-in asking for its code.
    # Its answers hold secrets and fresh ids: checked here, kept out of the transcript.
    added = client.post("/api/users/5/totp", json={}, headers=mine)
    assert added.status_code == 201, added.text
    app = pyotp.TOTP(added.json()["secret"])
    confirmed = client.post("/api/users/5/totp/confirm", json={"code": app.now()}, headers=mine)
    assert confirmed.json() == {"status": "approved"}
    assert client.post("/api/users/5/sign-in", json={"channel": "sms"}).status_code == 201
    sign_in = inbox_code(client, "+14155552671", count=2)
    refused = client.post("/api/users/5/sign-in/check", json={"code": sign_in})
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "second_factor_required")
    # That sign-in is over: a new one, with both codes.
    assert client.post("/api/users/5/sign-in", json={"channel": "sms"}).status_code == 201
    sign_in = inbox_code(client, "+14155552671", count=3)
    signed = client.post(
        "/api/users/5/sign-in/check",
        json={"code": sign_in, "totp_code": app.at(time.time() + 30)},
    )
    assert signed.json()["status"] == "approved", signed.text
    mine = bearer(signed.json()["token"])
    assert call("GET", "/api/users/me", 200, headers=mine)["id"] == 5

    # verify's own API, the Twilio-compatible one and the original service's routes.
    auth = {"Authorization": f"Bearer {key}"}
    assert call("GET", "/v2/Services", 401)["code"] == 20003  # routed to verify, Twilio's shape
    made = call(
        "POST",
        "/api/verifications",
        201,
        json={"to": "+34612345678", "channel": "sms"},
        headers=auth,
    )
    code = inbox_code(client, "+34612345678")
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    assert (
        call(
            "POST",
            "/api/verifications/check",
            200,
            json={"id": made["id"], "code": wrong},
            headers=auth,
        )["status"]
        == "pending"
    )
    assert (
        call(
            "POST",
            "/api/verifications/check",
            200,
            json={"id": made["id"], "code": code},
            headers=auth,
        )["status"]
        == "approved"
    )
    assert (
        call("GET", f"/api/verifications/{made['id']}", 200, headers=auth)["status"] == "approved"
    )
    assert (
        call("POST", "/api/verifications", 401, json={"to": "+34612345678", "channel": "sms"})[
            "error"
        ]["code"]
        == "unauthorized"
    )
    assert call(
        "POST", "/api/messages/send-code", 200, json={"to": "+14155552672"}, headers=auth
    ) == {"message": True}
    code = inbox_code(client, "+14155552672")
    assert call(
        "POST",
        "/api/messages/verify-code",
        200,
        json={"to": "+14155552672", "code": code},
        headers=auth,
    ) == {"message": "approved"}
    assert call(
        "POST", "/api/messages/verify-code", 400, json={"to": "+14155552672"}, headers=auth
    )["message"]
    call("DELETE", "/api/users/5", 401)
    call("DELETE", "/api/users/5", 204, headers=mine)
    assert call("GET", "/api/users/5", 404)["error"]["code"] == "user_not_found"
    assert call("GET", "/api/users/me", 401, headers=mine)["error"]["code"] == "unauthorized"
    return seen


TRANSCRIPTS: dict[str, list[Any]] = {}


@pytest.mark.parametrize(
    ("topology", "weights"), [("monolith", {}), ("split", {}), ("mixed", MIXED)]
)
def test_one_suite_in_every_topology(clave_up: Any, topology: str, weights: dict[str, int]) -> None:
    stack: ClaveUp = clave_up(topology, weights=weights)
    key = stack.cli("apikey", "create").stdout.strip()
    finn = stack.cli("user", "token", "2").stdout.strip()
    servers: collections.Counter[str] = collections.Counter()
    with httpx.Client(
        base_url=stack.url,
        timeout=15,
        event_hooks={
            "response": [lambda r: servers.update([r.headers.get("x-clave-server", "?")])]
        },
    ) as client:
        TRANSCRIPTS[topology] = suite(client, key, finn)
    assert servers.pop("?", 0) == 2  # haproxy's own answers (404) to /metrics, no server's
    components = set(stack.state()["components"])
    if topology == "monolith":
        assert components == {"monolith"}
        assert set(servers) == {"monolith"}
    elif topology == "split":
        assert components == {"verify", "users", "threads", "posts"}
        assert "monolith" not in servers
        assert {"verify", "users", "threads", "posts"} <= set(servers)
    else:
        assert components == {"monolith", "verify", "users", "threads", "posts"}
        assert {"monolith", "verify", "users", "threads"} <= set(servers)
    # Each domain keeps its own database, whichever processes serve it.
    data = stack.run_dir.parent
    assert {"verify.db", "users.db", "threads.db", "posts.db"} <= {p.name for p in data.iterdir()}


def test_every_route_answers_the_same_in_all_three() -> None:
    assert set(TRANSCRIPTS) == {"monolith", "split", "mixed"}, "run with the topology tests above"
    assert TRANSCRIPTS["split"] == TRANSCRIPTS["monolith"]
    assert TRANSCRIPTS["mixed"] == TRANSCRIPTS["monolith"]


def test_kill_one_service_others_keep_answering_and_nothing_is_lost(clave_up: Any) -> None:
    stack: ClaveUp = clave_up("split", restart_delay=4)
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        survivor = client.post(
            "/api/users", json={"username": "survivor", "name": "Still here"}
        ).json()
        auth = bearer(survivor.pop("token"))
        users_pid = stack.state()["components"]["users"]["pid"]
        os.killpg(users_pid, signal.SIGKILL)
        killed_at = time.monotonic()

        r = client.get("/api/users/1")
        assert r.status_code == 503
        assert time.monotonic() - killed_at < 2
        statuses: collections.Counter[int] = collections.Counter()
        while time.monotonic() - killed_at < 3:
            started = time.monotonic()
            statuses[client.get("/api/users/1").status_code] += 1
            assert time.monotonic() - started < 1, "a dead service must fail fast, not hang"
            for path in ("/api/threads/1", "/api/posts/1", "/api/posts/in-thread/2", "/api"):
                assert client.get(path).status_code == 200, path
            time.sleep(0.05)
        assert set(statuses) == {503}
        # posts needs users to accept a post: a clear 503 from posts, quickly.
        started = time.monotonic()
        r = client.post(
            "/api/posts",
            json={"thread": 1, "text": "anyone?", "user": survivor["id"]},
            headers=auth,
        )
        assert time.monotonic() - started < 3
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "dependency_unavailable"
        assert r.headers["x-clave-server"] == "posts"

        deadline = time.monotonic() + 30
        while client.get("/api/users/1").status_code != 200:
            assert time.monotonic() < deadline, "users did not come back"
            time.sleep(0.2)
        assert client.get(f"/api/users/{survivor['id']}").json()["username"] == "survivor"
        assert (
            client.post(
                "/api/posts",
                json={"thread": 1, "text": "back!", "user": survivor["id"]},
                headers=auth,
            ).status_code
            == 201
        )
    assert stack.state()["components"]["users"]["pid"] != users_pid


def share(client: httpx.Client, path: str, server: str, n: int = 1000) -> float:
    """The share of `n` requests `server` answered. The first request is not counted: after a
    reload, the old haproxy answers one more request on a connection opened before it (then
    closes it), rather than closing it under a request in flight."""
    client.get(path)
    hits = sum(client.get(path).headers["x-clave-server"] == server for _ in range(n))
    return hits / n


def test_gradual_migration_weighted_scaled_and_reloaded_without_drops(clave_up: Any) -> None:
    stack: ClaveUp = clave_up("mixed", workers={"users": 2, "monolith": 1})
    state = stack.state()["components"]
    assert state["users"]["workers"] == 2
    assert len(children(state["users"]["pid"])) == 2
    assert len(children(state["threads"]["pid"])) == 1
    assert len(children(state["monolith"]["pid"])) == 1

    failures: list[str] = []
    done = threading.Event()
    counted: collections.Counter[tuple[int, int]] = collections.Counter()

    def hammer() -> None:
        # New connections and a keep-alive one, through every reload below.
        with httpx.Client(base_url=stack.url, timeout=10) as keep:
            while not done.is_set():
                for path in ("/api/users/1", "/api/threads/1"):
                    try:
                        keep_status = keep.get(path).status_code
                        fresh_status = httpx.get(stack.url + path, timeout=10).status_code
                    except httpx.HTTPError as exc:
                        failures.append(f"{path}: {exc!r}")
                        continue
                    counted[(keep_status, fresh_status)] += 1
                    if (keep_status, fresh_status) != (200, 200):
                        failures.append(f"{path}: {keep_status}/{fresh_status}")

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        with httpx.Client(base_url=stack.url, timeout=10) as client:
            assert share(client, "/api/users/1", "users", 100) == 0
            out = stack.cli("routes", "shift", "users", "10").stdout
            assert "applied to the running clave up" in out
            measured = share(client, "/api/users/1", "users")
            assert 0.07 <= measured <= 0.13, measured
            stack.cli("routes", "shift", "users", "50")
            assert 0.4 <= share(client, "/api/users/1", "users", 200) <= 0.6
            stack.cli("routes", "shift", "users", "100")
            assert share(client, "/api/users/1", "users", 100) == 1
            assert share(client, "/api/threads/1", "monolith", 50) == 1

            stack.cli("routes", "retire", "users")
            monolith = stack.state()["components"]["monolith"]
            assert "users" not in monolith["services"]
            assert share(client, "/api/users/1", "users", 100) == 1
            assert client.get(f"http://127.0.0.1:{monolith['port']}/api/users/1").status_code == 404
            assert share(client, "/api/threads/1", "monolith", 50) == 1
            bad = stack.cli("routes", "shift", "users", "50", check=False)
            assert bad.returncode == 2
            assert "retired" in bad.stderr
    finally:
        done.set()
        worker.join()
    assert sum(counted.values()) > 50
    assert failures == []
