"""The original attack on the forum, against real processes: `clave up`, every service split,
behind a real haproxy.

The sample's forum had no accounts: anyone could PATCH any user's phone to a number of their
choosing and have clave text, call or mail it, over and over (SMS pumping through a forum).
Here: writes need the user's own token, the users tenant cannot call or use WhatsApp, a user
starts at most five verifications a day whatever its phone, and verify's per-IP limit counts
the end user's address, which users passes on from haproxy's X-Forwarded-For.

One stack serves the module; each test connects from its own loopback address (haproxy sees
127.0.0.2, 127.0.0.3, ... as different end users), so their per-IP budgets are their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.up import ClaveUp, stop_cleanly

pytestmark = pytest.mark.e2e

SENDS_PER_IP = 6
PREMIUM = "+14155553000"  # where the attacker wants the calls to go


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[ClaveUp]:
    up = ClaveUp(
        Path(tmp_path_factory.mktemp("forum-security")),
        "split",
        env={"CLAVE_LIMIT_SENDS_PER_IP": f"{SENDS_PER_IP}/3600"},
    )
    try:
        up.start()
        yield up
    finally:
        stop_cleanly(up)


def client_from(stack: ClaveUp, address: str) -> httpx.Client:
    """A client whose connections leave from `address` (any of 127/8 works on loopback)."""
    return httpx.Client(
        base_url=stack.url, timeout=15, transport=httpx.HTTPTransport(local_address=address)
    )


def sign_up(client: httpx.Client, username: str, **fields: Any) -> tuple[int, dict[str, str]]:
    """A new user's id and the Authorization header of its token."""
    r = client.post("/api/users", json={"username": username, "name": username, **fields})
    assert r.status_code == 201, r.text
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}


def messages(client: httpx.Client, to: str) -> list[dict[str, Any]]:
    """What the dev inbox (verify's) holds for `to`."""
    found: list[dict[str, Any]] = client.get("/dev/inbox/messages", params={"to": to}).json()[
        "messages"
    ]
    return found


def delivered(client: httpx.Client, to: str, count: int = 1) -> int:
    """How many messages the dev inbox holds for `to`, once `count` arrived (the dispatcher
    delivers after the API answered) or 10 s passed."""
    deadline = time.monotonic() + 10
    while len(found := messages(client, to)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(found)


def error(r: httpx.Response) -> tuple[int, str, str]:
    return r.status_code, r.json()["error"]["code"], r.headers["x-clave-server"]


def test_nobody_but_the_user_points_its_phone_anywhere_or_sends_to_it(stack: ClaveUp) -> None:
    victim_phone, victim_email = "+14155552600", "victim@example.com"
    with client_from(stack, "127.0.0.2") as client:
        victim, victim_auth = sign_up(client, "victim", phone=victim_phone, email=victim_email)
        _, mallory = sign_up(client, "mallory")
        strangers: list[tuple[Mapping[str, str] | Mapping[bytes, bytes], int, str]] = [
            ({}, 401, "unauthorized"),
            ({"Authorization": "Bearer clave_user_" + "A" * 43}, 401, "unauthorized"),
            ({b"Authorization": b"Bearer clave_user_\xff\xfe"}, 401, "unauthorized"),
            ({"Authorization": "Basic dmljdGltOnZpY3RpbQ=="}, 401, "unauthorized"),
            (mallory, 403, "forbidden"),
        ]
        for headers, status, code in strangers:
            for uid in (victim, 1):  # a signed-up user, and a sample one (no token at all)
                r = client.patch(f"/api/users/{uid}", json={"phone": PREMIUM}, headers=headers)
                assert error(r) == (status, code, "users"), r.text
                for channel in ("sms", "call", "email"):
                    r = client.post(
                        f"/api/users/{uid}/verification",
                        json={"channel": channel},
                        headers=headers,
                    )
                    assert error(r) == (status, code, "users"), r.text
            if status == 401:
                assert r.headers["www-authenticate"] == 'Bearer realm="clave"'
            # threads and posts, in their own processes, ask users whose token it is.
            r = client.post(
                "/api/threads", json={"title": "Free stuff", "createdBy": victim}, headers=headers
            )
            assert error(r) == (status, code, "threads"), r.text
            r = client.post(
                "/api/posts",
                json={"thread": 1, "text": "click here", "user": victim},
                headers=headers,
            )
            assert error(r) == (status, code, "posts"), r.text
        # Nothing changed and nothing was sent.
        assert client.get(f"/api/users/{victim}").json()["phone"] == "+14******600"
        assert client.get("/api/users/1").json()["phone"] is None
        for to in (PREMIUM, victim_phone, victim_email):
            assert messages(client, to) == [], to
        # The user itself, with its token, can.
        r = client.post(
            f"/api/users/{victim}/verification", json={"channel": "sms"}, headers=victim_auth
        )
        assert r.status_code == 201, r.text
        assert delivered(client, victim_phone) == 1


def test_a_user_gets_sms_and_email_five_times_a_day_whatever_its_phone(stack: ClaveUp) -> None:
    phones = [f"+141555526{n:02d}" for n in range(10, 17)]
    email = "sender@example.com"
    with client_from(stack, "127.0.0.3") as client:
        uid, auth = sign_up(client, "sender", phone=phones[0], email=email)
        start = f"/api/users/{uid}/verification"
        for channel in ("call", "whatsapp"):
            r = client.post(start, json={"channel": channel}, headers=auth)
            assert error(r) == (422, "channel_not_allowed", "users"), r.text
        assert messages(client, phones[0]) == []
        # Five starts, a new phone before each sms: verify's per-destination limit never bites.
        plan = ["sms", "email", "sms", "sms", "sms"]
        for n, channel in enumerate(plan):
            r = client.patch(f"/api/users/{uid}", json={"phone": phones[n]}, headers=auth)
            assert r.status_code == 200, r.text
            r = client.post(start, json={"channel": channel}, headers=auth)
            assert r.status_code == 201, (n, r.text)
        r = client.patch(f"/api/users/{uid}", json={"phone": phones[5]}, headers=auth)
        assert r.status_code == 200
        for channel in ("sms", "email"):
            r = client.post(start, json={"channel": channel}, headers=auth)
            assert error(r) == (429, "too_many_verifications", "users"), r.text
            assert 86400 - 120 <= int(r.headers["retry-after"]) <= 86400
        assert delivered(client, email) == 1
        expected = [1, 0, 1, 1, 1, 0]  # phones[1] was set while the email was proven
        got = [delivered(client, p, want) for p, want in zip(phones[:6], expected, strict=True)]
        assert got == expected


def test_many_users_at_one_address_are_held_back_by_verifys_per_ip_limit(
    stack: ClaveUp,
) -> None:
    phones = [f"+141555527{n:02d}" for n in range(SENDS_PER_IP + 1)]
    with client_from(stack, "127.0.0.4") as crowd, client_from(stack, "127.0.0.5") as elsewhere:
        users = [sign_up(crowd, f"crowd{n}", phone=phone) for n, phone in enumerate(phones)]

        def start(client: httpx.Client, n: int) -> httpx.Response:
            uid, auth = users[n]
            return client.post(
                f"/api/users/{uid}/verification", json={"channel": "sms"}, headers=auth
            )

        for n in range(SENDS_PER_IP):
            assert start(crowd, n).status_code == 201
        r = start(crowd, SENDS_PER_IP)
        assert error(r) == (429, "too_many_sends_from_ip", "users"), r.text
        assert int(r.headers["retry-after"]) > 0
        assert messages(crowd, phones[SENDS_PER_IP]) == []
        # The same user from another address goes through: verify counts the end user's
        # address users passed on, not the users service's own (which is the same for all).
        assert start(elsewhere, SENDS_PER_IP).status_code == 201
        assert delivered(crowd, phones[SENDS_PER_IP]) == 1


def test_a_forged_x_forwarded_for_buys_no_fresh_budget(stack: ClaveUp) -> None:
    """haproxy appends its own X-Forwarded-For; whatever the client wrote before it is not
    trusted (CLAVE_PROXY_HOPS=1 under clave up)."""
    emails = [f"forger{n}@example.com" for n in range(SENDS_PER_IP + 1)]
    with client_from(stack, "127.0.0.6") as client:
        users = [sign_up(client, f"forger{n}", email=email) for n, email in enumerate(emails)]
        statuses = []
        for n, (uid, auth) in enumerate(users):
            r = client.post(
                f"/api/users/{uid}/verification",
                json={"channel": "email"},
                headers={**auth, "X-Forwarded-For": f"198.51.100.{n}"},
            )
            statuses.append(r.status_code)
        assert statuses == [201] * SENDS_PER_IP + [429], statuses
        assert r.json()["error"]["code"] == "too_many_sends_from_ip"
