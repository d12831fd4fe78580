"""The attacks of the abuse review, performed against a real `clave serve`: each is refused
with the status and code the security model promises."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ClaveProcess, inbox_code, twilio_credentials
from tests.support import HMAC_KEYS, RecordingServer

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()
TWILIO_SID, TWILIO_TOKEN = "AC" + "a" * 32, "twilio-auth-token"


class Attacked:
    """The server under attack, with an API key of its default service and /v2 credentials."""

    def __init__(self, server: ClaveProcess, events: RecordingServer) -> None:
        self.server = server
        self.events = events
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.key = server.cli("apikey", "create").stdout.strip()
        creds = twilio_credentials(server)
        self.basic = (creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])

    def bearer(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def send(self, to: str, channel: str = "sms", key: str | None = None, **extra: Any) -> Any:
        body = {"to": to, "channel": channel, **extra}
        return self.http.post("/api/verifications", json=body, headers=self.bearer(key))

    def check(self, code: str, key: str | None = None, **target: str) -> Any:
        body = {"code": code, **target}
        return self.http.post("/api/verifications/check", json=body, headers=self.bearer(key))

    def v2(self, path: str, form: dict[str, str] | None = None) -> Any:
        if form is None:
            return self.http.get("/v2" + path, auth=self.basic)
        return self.http.post("/v2" + path, data=form, auth=self.basic)

    def service_key(self, name: str, *options: str) -> str:
        """A new service with its own policy, and an API key for it."""
        self.server.cli("service", "create", name, *options)
        return self.server.cli("apikey", "create", "--service", name).stdout.strip()

    def sid_of(self, name: str) -> str:
        listed = self.server.cli("service", "list").stdout
        found = re.search(rf"^{name}\t(VA[0-9a-f]{{32}})\t", listed, re.M)
        assert found, listed
        return found.group(1)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    events = RecordingServer()
    server = ClaveProcess(
        tmp_path_factory.mktemp("abuse"),
        env={
            "CLAVE_EVENTS_URL": events.url,
            "CLAVE_EVENTS_SECRET": WEBHOOK_SECRET,
            # Providers with status callbacks, so their signature checks face the attacks; every
            # message itself goes to the dev inbox.
            "CLAVE_TWILIO_ACCOUNT_SID": TWILIO_SID,
            "CLAVE_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "CLAVE_TWILIO_FROM": "+15005550006",
            "CLAVE_TWILIO_BASE_URL": "http://127.0.0.1:9",
            "CLAVE_TWILIO_STATUS_CALLBACK": "https://clave.example/api/providers/twilio/status",
            "CLAVE_WEBHOOK_URL": "http://127.0.0.1:9/send",
            "CLAVE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            **{f"CLAVE_{c}_PROVIDERS": "inbox" for c in ("SMS", "WHATSAPP", "CALL", "EMAIL")},
        },
    )
    try:
        server.start()
        attacked = Attacked(server, events)
        yield attacked
        attacked.http.close()
    finally:
        server.stop()
        events.stop()


def wrong(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def inbox(server: ClaveProcess, to: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = httpx.get(
        server.url + "/dev/inbox/messages", params={"to": to}
    ).json()["messages"]
    return messages


def test_json_routes_refuse_bodies_a_web_page_could_send(attacked: Attacked) -> None:
    # A cross-site form or text/plain POST needs no CORS preflight: it must not be parsed.
    body = json.dumps({"to": "+14155550101", "channel": "sms"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = attacked.http.post(
            "/api/verifications",
            content=body,
            headers={**attacked.bearer(), "Content-Type": content_type},
        )
        assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")
    r = attacked.http.post(
        "/api/messages/send-code",
        content=json.dumps({"to": "+14155550101"}),
        headers={**attacked.bearer(), "Content-Type": "text/plain"},
    )
    assert r.status_code == 415
    assert set(r.json()) == {"message"}
    time.sleep(0.5)
    assert inbox(attacked.server, "+14155550101") == []  # nothing was sent
    sent = attacked.http.post(
        "/api/verifications",
        content=body,
        headers={**attacked.bearer(), "Content-Type": "application/json; charset=utf-8"},
    )
    assert sent.status_code == 201


def test_a_client_cannot_weaken_the_code(attacked: Attacked) -> None:
    key = attacked.service_key("long", "--code-length", "8")
    for length in (4, 7):
        r = attacked.send("+14155550102", key=key, code_length=length)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_parameter")
    r = attacked.send("+14155550102", key=key, code_length=9)
    assert r.status_code == 201
    assert len(inbox_code(attacked.server, "+14155550102")) == 9

    custom = attacked.v2("/Services", {"FriendlyName": "Custom", "CodeLength": "8"})
    sid = custom.json()["sid"]
    attacked.v2(f"/Services/{sid}", {"CustomCodeEnabled": "true"})
    r = attacked.v2(
        f"/Services/{sid}/Verifications",
        {"To": "+14155550103", "Channel": "sms", "CustomCode": "1234"},
    )
    assert (r.status_code, r.json()["code"]) == (400, 60200)
    time.sleep(0.3)
    assert inbox(attacked.server, "+14155550103") == []


def test_a_resend_never_rebinds_a_psd2_code(attacked: Attacked) -> None:
    sid = attacked.v2("/Services", {"FriendlyName": "Bank", "Psd2Enabled": "true"}).json()["sid"]
    to = "+14155550104"
    path = f"/Services/{sid}/Verifications"
    first = attacked.v2(path, {"To": to, "Channel": "sms", "Amount": "1.00EUR", "Payee": "Alice"})
    assert first.status_code == 201
    first_code = inbox_code(attacked.server, to)
    second = attacked.v2(
        path, {"To": to, "Channel": "sms", "Amount": "9999.00EUR", "Payee": "Mallory"}
    )
    # Not a resend of the first code: a new verification, the first one canceled.
    assert second.status_code == 201
    assert second.json()["sid"] != first.json()["sid"]
    assert (second.json()["amount"], second.json()["payee"]) == ("9999.00EUR", "Mallory")
    second_code = inbox_code(attacked.server, to, count=2)
    message = inbox(attacked.server, to)[0]["text"]
    assert "9999.00EUR" in message
    assert "Mallory" in message
    assert second_code in message
    assert second_code != first_code

    check = f"/Services/{sid}/VerificationCheck"
    # The first code is dead, whatever terms come with it.
    r = attacked.v2(
        check,
        {"VerificationSid": first.json()["sid"], "Code": first_code, "Amount": "1.00EUR"}
        | {"Payee": "Alice"},
    )
    assert (r.status_code, r.json()["code"]) == (404, 20404)
    r = attacked.v2(
        check, {"To": to, "Code": first_code, "Amount": "9999.00EUR", "Payee": "Mallory"}
    )
    assert r.json()["status"] == "pending"
    # The second code approves only with the terms its message showed.
    r = attacked.v2(check, {"To": to, "Code": second_code, "Amount": "1.00EUR", "Payee": "Alice"})
    assert r.json()["status"] == "pending"
    r = attacked.v2(
        check, {"To": to, "Code": second_code, "Amount": "9999.00EUR", "Payee": "Mallory"}
    )
    assert (r.json()["status"], r.json()["sid"]) == ("approved", second.json()["sid"])
    # A service without PSD2 never echoes a payment it did not bind.
    plain = attacked.v2("/Services", {"FriendlyName": "Plain"}).json()["sid"]
    other = "+14155550112"
    attacked.v2(f"/Services/{plain}/Verifications", {"To": other, "Channel": "sms"})
    r = attacked.v2(
        f"/Services/{plain}/VerificationCheck",
        {"To": other, "Code": inbox_code(attacked.server, other), "Amount": "9999.00EUR"}
        | {"Payee": "Mallory"},
    )
    assert r.json()["status"] == "approved"
    assert (r.json()["amount"], r.json()["payee"]) == (None, None)
    # The operator hears that the first verification was canceled.
    deadline = time.monotonic() + 15
    while True:
        posted = [json.loads(req["body"]) for req in attacked.events.requests]
        canceled = [e for e in posted if e["type"] == "verification.canceled"]
        if any(e["data"]["verification_id"] == first.json()["sid"] for e in canceled):
            break
        assert time.monotonic() < deadline, posted
        time.sleep(0.1)


def test_a_resend_with_another_code_length_or_name_starts_over(attacked: Attacked) -> None:
    to = "+14155550105"
    first = attacked.send(to)
    first_code = inbox_code(attacked.server, to)
    longer = attacked.send(to, code_length=8)
    assert longer.status_code == 201
    assert longer.json()["id"] != first.json()["id"]
    assert len(inbox_code(attacked.server, to, count=2)) == 8
    r = attacked.check(first_code, id=first.json()["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (404, "verification_not_found")
    read = attacked.http.get(f"/api/verifications/{first.json()['id']}", headers=attacked.bearer())
    assert read.json()["status"] == "canceled"


def test_the_guess_budget_of_a_destination(attacked: Attacked) -> None:
    # 15 failed checks per destination a day, across verifications; one inbox, one budget.
    variants = ["Victim@example.com", "VICTIM@example.com", "victim+1@example.com"]
    spent = 0
    for address in variants[:2]:
        vid = attacked.send(address, "email").json()["id"]
        code = inbox_code(attacked.server, address)
        for _ in range(5):
            assert attacked.check(wrong(code), id=vid).status_code == 200
            spent += 1
        r = attacked.check(code, id=vid)
        assert (r.status_code, r.json()["error"]["code"]) == (429, "max_check_attempts_reached")
    third = attacked.send(variants[2], "email").json()["id"]
    third_code = inbox_code(attacked.server, variants[2])
    for _ in range(4):
        assert attacked.check(wrong(third_code), id=third).json()["status"] == "pending"
        spent += 1
    fourth_address = "victim+2@example.com"
    assert attacked.send(fourth_address, "email").status_code == 201
    fourth_code = inbox_code(attacked.server, fourth_address)
    assert attacked.check(wrong(fourth_code), to=fourth_address).json()["status"] == "pending"
    spent += 1
    assert spent == 15
    # Spent: the right codes of both pending verifications are refused, and so is a new send.
    for r in (attacked.check(third_code, id=third), attacked.check(fourth_code, to=fourth_address)):
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_failed_checks")
        # A rolling day in hourly slots: free again once the oldest failures are a day old.
        assert 86400 - 120 < int(r.headers["Retry-After"]) <= 86400 + 3600
    r = attacked.send("victim@example.com", "email")
    assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_failed_checks")
    assert int(r.headers["Retry-After"]) > 0
    # Twilio's code for it through /v2 (the default service granted to the test's account).
    attacked.server.cli("service", "grant", "default", "--account", "account")
    default_sid = attacked.sid_of("default")
    r = attacked.v2(
        f"/Services/{default_sid}/VerificationCheck", {"To": fourth_address, "Code": fourth_code}
    )
    assert (r.status_code, r.json()["code"]) == (429, 60202)
    # The message went to the address as given; another inbox is not held back.
    assert [m["to"] for m in inbox(attacked.server, "VICTIM@example.com")] == ["VICTIM@example.com"]
    assert attacked.send("someone.else@example.com", "email").status_code == 201


def test_checks_with_nothing_to_compare_spend_no_guess_budget(attacked: Attacked) -> None:
    # Otherwise anyone could lock a number out for a day without a single message sent.
    to = "+14155550111"
    for _ in range(20):
        r = attacked.check("123456", to=to)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "verification_not_found")
    sent = attacked.send(to)
    assert sent.status_code == 201
    code = inbox_code(attacked.server, to)
    assert attacked.check(code, id=sent.json()["id"]).json()["status"] == "approved"


def test_no_policy_may_exceed_the_guess_bound(attacked: Attacked) -> None:
    refused = attacked.server.cli("service", "create", "short", "--code-length", "4", check=False)
    assert refused.returncode == 1
    assert "15 failed checks per destination a day" in refused.stderr
    assert "10,000 4-digit codes, 1 a day" in refused.stderr
    attacked.server.cli(
        "service", "create", "short", "--code-length", "4", "--limit",
        "failed_checks_per_destination=1/86400",
    )  # fmt: skip
    sid = attacked.v2("/Services", {"FriendlyName": "Weak"}).json()["sid"]
    r = attacked.v2(f"/Services/{sid}", {"CodeLength": "4"})
    assert (r.status_code, r.json()["code"]) == (400, 60200)
    assert "15 failed checks" in r.json()["message"]
    assert attacked.v2(f"/Services/{sid}").json()["code_length"] == 6


def test_a_deployment_budget_that_breaks_a_services_bound_stops_start_up(tmp_path: Path) -> None:
    env = {**os.environ, "CLAVE_DATA_DIR": str(tmp_path), "CLAVE_HMAC_KEYS": HMAC_KEYS}

    def clave(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clave", *args],
            env=env | extra,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert clave("service", "create", "six", "--code-length", "6").returncode == 0
    # 1000 a day suits the 8-digit default service, not the 6-digit one created before.
    raised = {
        "CLAVE_CODE_LENGTH": "8",
        "CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION": "1000/86400",
    }
    started = clave("serve", "--port", "0", **raised)
    assert started.returncode == 2
    assert "six: 1000 failed checks per destination a day" in started.stderr


def test_per_ip_counting_holds(attacked: Attacked) -> None:
    key = attacked.service_key("perip", "--limit", "sends_per_ip=2/3600")
    numbers = iter(f"+1415555{n:04d}" for n in range(200, 300))

    def send(ip: str) -> int:
        return int(attacked.send(next(numbers), key=key, client_ip=ip).status_code)

    # One /64 is one client, however many addresses it uses.
    assert [send("2001:db8:1:2::1"), send("2001:db8:1:2:ffff::9")] == [201, 201]
    r = attacked.send(next(numbers), key=key, client_ip="2001:db8:1:2:abcd::1")
    assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_sends_from_ip")
    assert send("2001:db8:1:3::1") == 201  # another /64
    # An IPv4-mapped address is the IPv4 address.
    assert [send("192.0.2.7"), send("192.0.2.7")] == [201, 201]
    assert send("::ffff:192.0.2.7") == 429


def test_anonymous_original_routes_need_per_ip_counting(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CLAVE_DATA_DIR": str(tmp_path),
        "CLAVE_HMAC_KEYS": HMAC_KEYS,
        "CLAVE_COMPAT_ANONYMOUS": "true",
    }
    result = subprocess.run(
        [sys.executable, "-m", "clave", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CLAVE_LIMIT_PEER_IP" in result.stderr


def test_one_tenant_cannot_starve_the_others(attacked: Attacked) -> None:
    key = attacked.service_key("greedy", "--max-sends", "1", "--limit", "sends_per_day=3")
    # Sends the destination's window refuses cost nothing of the daily cap.
    assert attacked.send("+14155550300", key=key).status_code == 201
    for _ in range(5):
        r = attacked.send("+14155550300", key=key)
        assert (r.status_code, r.json()["error"]["code"]) == (429, "max_send_attempts_reached")
    for n in range(1, 3):
        assert attacked.send(f"+1415555030{n}", key=key).status_code == 201
    r = attacked.send("+14155550309", key=key)
    assert (r.status_code, r.json()["error"]["code"]) == (429, "service_daily_cap_reached")
    assert int(r.headers["Retry-After"]) > 0
    assert attacked.send("+14155550310").status_code == 201  # every other service keeps sending


def as_bytes(headers: Mapping[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    """Headers as they go on the wire, the bytes ones (not valid text) sent as they are."""
    return [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]


def test_malformed_headers_are_a_clear_4xx(attacked: Attacked) -> None:
    twilio = attacked.http.post(
        "/api/providers/twilio/status",
        data={"MessageSid": "SM1", "MessageStatus": "delivered"},
        headers={b"X-Twilio-Signature": "é¿ñ".encode()},
    )
    assert (twilio.status_code, twilio.json()["error"]["code"]) == (403, "bad_signature")
    body = json.dumps({"message_id": "m1", "status": "delivered"}).encode()
    now = str(int(time.time()))
    malformed: list[dict[str, str | bytes]] = [
        {"webhook-id": "msg_1", "webhook-timestamp": "²".encode(), "webhook-signature": "v1,x"},
        {"webhook-id": "msg_1", "webhook-timestamp": now, "webhook-signature": "v1,ü".encode()},
        {"webhook-id": "msg_ñ".encode(), "webhook-timestamp": now, "webhook-signature": "v1,x"},
    ]
    for headers in malformed:
        r = attacked.http.post(
            "/api/providers/webhook/status",
            content=body,
            headers=as_bytes({**headers, "Content-Type": "application/json"}),
        )
        assert (r.status_code, r.json()["error"]["code"]) == (403, "bad_signature"), headers
    basic = b"Basic " + base64.b64encode("AC\u00e9:token".encode()) + "ñ".encode()
    r = attacked.http.get("/v2/Services", headers={b"Authorization": basic})
    assert (r.status_code, r.json()["code"]) == (401, 20003)
    r = attacked.http.get("/v2/Services", headers={b"Authorization": "Basic ñ".encode("latin-1")})
    assert (r.status_code, r.json()["code"]) == (401, 20003)
    r = attacked.http.get(
        "/api/verifications/VE" + "0" * 32, headers={b"Authorization": "Bearer ü".encode()}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
    # Malformed /v2 parameters: digits int() refuses, JSON nested deeper than Python goes.
    sid = attacked.v2("/Services", {"FriendlyName": "Malformed"}).json()["sid"]
    for path, form in (
        (f"/Services/{sid}", {"CodeLength": "⁶"}),
        (f"/Services/{sid}/Verifications", {"To": "+14155550109", "Channel": "sms"}
         | {"Tags": "[" * 5000 + "]" * 5000}),
    ):  # fmt: skip
        r = attacked.v2(path, form)
        assert (r.status_code, r.json()["code"]) == (400, 60200), (path, r.text)
    for query in ("PageSize=²", "Page=①"):
        r = attacked.v2(f"/Services?{query}")
        assert (r.status_code, r.json()["code"]) == (400, 60200), query


def test_ids_of_the_wrong_shape_are_not_found(attacked: Attacked) -> None:
    sid = attacked.sid_of("default")
    for bad in ("VE" + "0" * 32 + ":att", "VE" + "F" * 32, "VE1"):
        r = attacked.http.get(f"/api/verifications/{bad}", headers=attacked.bearer())
        assert (r.status_code, r.json()["error"]["code"]) == (404, "verification_not_found")
        r = attacked.check("123456", id=bad)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "verification_not_found")
        r = attacked.v2(f"/Services/{sid}/Verifications/{bad}")
        assert (r.status_code, r.json()["code"]) == (404, 20404)
    for bad_sid in ("VA" + "0" * 32 + ":x", "VAnope"):
        r = attacked.v2(f"/Services/{bad_sid}")
        assert (r.status_code, r.json()["code"]) == (404, 20404)


def test_control_characters_never_reach_a_message(attacked: Attacked) -> None:
    sid = attacked.v2("/Services", {"FriendlyName": "Plain"}).json()["sid"]
    to = "+14155550106"
    r = attacked.v2(
        f"/Services/{sid}/Verifications",
        {"To": to, "Channel": "sms", "CustomFriendlyName": "Bank.\r\nCall +19005550100"},
    )
    assert (r.status_code, r.json()["code"]) == (400, 60200)
    r = attacked.v2("/Services", {"FriendlyName": "Bank\r\nCall +19005550100"})
    assert (r.status_code, r.json()["code"]) == (400, 60200)
    created = attacked.server.cli(
        "service", "create", "spoof", "--friendly-name", "Bank\u202e", check=False
    )
    assert created.returncode == 1
    assert "friendly name" in created.stderr
    time.sleep(0.3)
    assert inbox(attacked.server, to) == []


def test_storage_failures_say_what_not_how(tmp_path: Path) -> None:
    from tests.services import PrivateRedis, wait_until

    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed here: a private one is started, then stopped"
    private = PrivateRedis(binary)
    url = f"redis://127.0.0.1:{private.port}/0"

    def answers() -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.RedisError:
            return False

    wait_until(answers, timeout=15)
    server = ClaveProcess(tmp_path, workers=1, env={"CLAVE_VERIFY_STORE": url})
    try:
        server.start()
        attacked_key = server.cli("apikey", "create").stdout.strip()
        private.stop()
        r = httpx.post(
            server.url + "/api/verifications",
            json={"to": "+14155550107", "channel": "sms"},
            headers={"Authorization": f"Bearer {attacked_key}"},
            timeout=30,
        )
        # The key is still cached in the worker, or its lookup fails: either way the store.
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "storage_unavailable"
        for leak in ("Error", "111", "127.0.0.1", str(private.port), "Redis", "onnect", "closed"):
            assert leak not in r.text, r.text
        # The driver's own words ("Connection refused", "Connection closed by server", as the
        # timing falls) are in the log, for the operator: on the request's own error line
        # (the dispatcher's failing poll may log them too, or not yet).
        wait_until(
            lambda: re.search(
                r"storage_unavailable: (Redis unavailable|cannot reach Redis at \S+): \S",
                server.log(),
            ),
            timeout=10,
        )
    finally:
        server.stop()
        private.stop()
