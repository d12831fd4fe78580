"""Keys, tenants and secrets as an operator runs them: against real processes, each attack or
mistake of the operations review first shown refused."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import ClaveProcess, twilio_credentials
from tests.support import HMAC_KEYS, RecordingServer

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"e2e{os.urandom(4).hex()}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


def send_one(server: ClaveProcess, to: str) -> tuple[str, dict[str, str]]:
    """A new API key of the default service, and the id of a verification it sent to `to`."""
    auth = {"Authorization": f"Bearer {server.cli('apikey', 'create').stdout.strip()}"}
    r = httpx.post(
        server.url + "/api/verifications", json={"to": to, "channel": "sms"}, headers=auth
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], auth


def serve_fails(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`clave serve` that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "clave", "serve", "--port", "0"],
        env={**os.environ, "CLAVE_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_generated_hmac_keys_are_refused_where_they_cannot_be_shared(
    tmp_path: Path, redis_url: str
) -> None:
    for env in ({"CLAVE_VERIFY_STORE": redis_url}, {"CLAVE_HOST": "0.0.0.0"}):
        result = serve_fails(tmp_path, **env)
        assert result.returncode == 2, result.stderr
        assert "CLAVE_HMAC_KEYS is required" in result.stderr
    assert not (tmp_path / "verify-hmac-keys").exists()


def test_two_instances_with_different_secrets_never_send_a_wrong_code(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    # One key id, two secrets: the operator's mistake the dispatcher must catch.
    other_keys = "test1:" + base64.urlsafe_b64encode(b"z" * 32).decode()
    assert other_keys.split(":")[0] == HMAC_KEYS.split(":")[0]
    refusing = RecordingServer()
    refusing.default = (503, {})  # A's only provider: it keeps failing, so B gets the send
    shared = {
        "CLAVE_VERIFY_STORE": redis_url,
        "CLAVE_REDIS_PREFIX": redis_prefix,
        "CLAVE_OUTBOX_BACKOFF": "0.1",
        "CLAVE_OUTBOX_BACKOFF_MAX": "0.2",
        # A retries until B, started later, claims a retry (ten tries at 0.2 s could run out
        # while B is still starting).
        "CLAVE_OUTBOX_MAX_TRIES": "100",
    }
    a = ClaveProcess(
        tmp_path / "a",
        workers=1,
        env={
            **shared,
            "CLAVE_DEV_INBOX": "false",
            "CLAVE_WEBHOOK_URL": refusing.url,
            "CLAVE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    b = ClaveProcess(tmp_path / "b", workers=1, env={**shared, "CLAVE_HMAC_KEYS": other_keys})
    try:
        a.start()
        vid, auth = send_one(a, "+14155550201")
        # A's own dispatcher tries first (its sink refuses); B starts only then, so it can only
        # meet a retry. Started together, B's poll sometimes claimed the first try on a busy
        # machine, and A never tried at all.
        deadline = time.monotonic() + 30
        while not refusing.requests:
            assert time.monotonic() < deadline, "A's dispatcher never tried its own provider"
            time.sleep(0.05)
        b.start()
        deadline = time.monotonic() + 30
        while True:
            read = httpx.get(f"{a.url}/api/verifications/{vid}", headers=auth).json()
            errors = [s["error"] or "" for s in read["send_attempts"]]
            if any("hmac_key_mismatch" in e for e in errors):
                break
            assert time.monotonic() < deadline, read
            time.sleep(0.1)
        assert read["send_attempts"][0]["status"] == "failed"
        assert read["status"] == "failed"
        # B never delivered its wrong code; what A tried to send (and its sink refused) was
        # A's own code, which checks right.
        assert httpx.get(b.url + "/dev/inbox/messages").json()["messages"] == []
        assert "hmac_key_mismatch" in b.log()
        sent = {json.loads(req["body"])["text"] for req in refusing.requests}
        assert sent, "A's dispatcher never tried its own provider"
    finally:
        a.stop()
        b.stop()
        refusing.stop()


def test_files_are_private_and_old_ones_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    leftover = data / "inbox.db"  # a file from before, made with the default umask
    leftover.touch(mode=0o644)
    os.chmod(leftover, 0o644)
    server = ClaveProcess(data, workers=1, env={"CLAVE_HMAC_KEYS": ""})  # a generated key
    try:
        server.start()
        send_one(server, "+14155550202")
        time.sleep(0.5)  # the dispatcher writes the inbox
        assert "tightened" in server.log()
        assert oct(data.stat().st_mode & 0o777) == oct(0o700)
        files = {p.name: p.stat().st_mode & 0o777 for p in data.iterdir() if p.is_file()}
        for name in (
            "verify.db",
            "verify.db-wal",
            "limits.db",
            "inbox.db",
            "users.db",
            "verify-hmac-keys",
            "users-verify-key",
        ):
            assert name in files, sorted(files)
        loose = {name: oct(mode) for name, mode in files.items() if mode & 0o077}
        assert not loose, loose
    finally:
        server.stop()


def test_logs_and_stored_errors_mask_destinations(tmp_path: Path) -> None:
    twilio = RecordingServer()
    refusal = "The 'To' number +14155550203 is not a valid phone number (ana@example.com)."
    twilio.default = (400, {"code": 21211, "message": refusal})
    server = ClaveProcess(
        tmp_path,
        workers=1,
        env={
            "CLAVE_ACCESS_LOG": "true",
            "CLAVE_DEV_INBOX": "false",
            "CLAVE_TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
            "CLAVE_TWILIO_AUTH_TOKEN": "token",
            "CLAVE_TWILIO_FROM": "+15005550006",
            "CLAVE_TWILIO_BASE_URL": twilio.url,
        },
    )
    try:
        server.start()
        vid, auth = send_one(server, "+14155550203")
        creds = twilio_credentials(server)
        basic = (creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
        sid = server.cli("service", "list").stdout.split("\t")[1]
        httpx.get(f"{server.url}/v2/Services/{sid}/Verifications/+14155550203", auth=basic)
        httpx.get(f"{server.url}/v2/Services/{sid}/Verifications/%2B14155550203", auth=basic)
        deadline = time.monotonic() + 15
        while True:
            attempt = httpx.get(f"{server.url}/api/verifications/{vid}", headers=auth).json()[
                "send_attempts"
            ][0]
            if attempt["status"] == "failed":
                break
            assert time.monotonic() < deadline, attempt
            time.sleep(0.1)
        assert "+1415***0203" in attempt["error"]
        assert "a***@example.com" in attempt["error"]
        assert "14155550203" not in attempt["error"]
        log = server.log()
        assert "/Verifications/+1415***0203" in log  # the access log line, masked
        for plain in ("14155550203", "ana@example.com"):
            assert plain not in log
    finally:
        server.stop()
        twilio.stop()


def test_a_revoked_or_expired_key_is_refused_by_every_worker(tmp_path: Path) -> None:
    server = ClaveProcess(tmp_path, workers=2, env={"CLAVE_KEY_CACHE_SECONDS": "1"}).start()
    try:
        key = server.cli("apikey", "create", "--name", "shop backend").stdout.strip()
        short = server.cli("apikey", "create", "--expires", "3s").stdout.strip()
        url = server.url + "/api/verifications/VE" + "0" * 32

        def statuses(raw: str, n: int = 20) -> set[int]:
            # New connections: the workers take turns accepting them.
            return {
                httpx.get(url, headers={"Authorization": f"Bearer {raw}"}).status_code
                for _ in range(n)
            }

        assert statuses(key) == {404}  # known key, unknown verification: both workers cached it
        assert statuses(short) == {404}
        listed = server.cli("apikey", "list").stdout
        assert key not in listed  # never the secret
        assert short not in listed
        [row] = [line.split("\t") for line in listed.splitlines() if "shop backend" in line]
        key_id, owner, _, _, last_used, expires, status = row
        assert (owner, expires, status) == ("default", "never", "active")
        assert last_used != "-"
        assert server.cli("apikey", "revoke", key_id).stdout.strip() == f"revoked {key_id}"
        time.sleep(1.5)  # one key cache period
        assert statuses(key) == {401}
        time.sleep(2)
        assert statuses(short) == {401}
        statuses_now = {
            line.split("\t")[0]: line.split("\t")[-1]
            for line in server.cli("apikey", "list").stdout.splitlines()[1:]
        }
        assert statuses_now[key_id] == "revoked"
        assert "expired" in statuses_now.values()
        again = server.cli("apikey", "revoke", key_id, check=False)
        assert again.returncode == 1
        assert "no active API key" in again.stderr

        # The /v2 credentials have the same life cycle.
        creds = twilio_credentials(server)
        basic = (creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
        assert httpx.get(server.url + "/v2/Services", auth=basic).status_code == 200
        twilio_keys = server.cli("apikey", "list", "--twilio").stdout.splitlines()[1:]
        assert {line.split("\t")[2] for line in twilio_keys} == {"auth token", "API key"}
        token_id = next(line.split("\t")[0] for line in twilio_keys if "auth token" in line)
        server.cli("apikey", "revoke", token_id)
        time.sleep(1.5)
        r = httpx.get(server.url + "/v2/Services", auth=basic)
        assert (r.status_code, r.json()["code"]) == (401, 20003)
        api_key = (creds["TWILIO_API_KEY"], creds["TWILIO_API_SECRET"])
        assert httpx.get(server.url + "/v2/Services", auth=api_key).status_code == 200
    finally:
        server.stop()


def test_rotating_the_users_key_revokes_the_old_one(tmp_path: Path) -> None:
    old, new = "users-key-" + "a" * 40, "users-key-" + "b" * 40
    first = ClaveProcess(tmp_path, workers=1, env={"CLAVE_VERIFY_KEY": old}).start()
    probe = "/api/verifications/VE" + "0" * 32
    try:
        r = httpx.get(first.url + probe, headers={"Authorization": f"Bearer {old}"})
        assert r.status_code == 404  # the users tenant's key works
    finally:
        first.stop()
    second = ClaveProcess(tmp_path, workers=1, env={"CLAVE_VERIFY_KEY": new}).start()
    try:
        r = httpx.get(second.url + probe, headers={"Authorization": f"Bearer {old}"})
        assert r.status_code == 401
        r = httpx.get(second.url + probe, headers={"Authorization": f"Bearer {new}"})
        assert r.status_code == 404
        rows = second.cli("apikey", "list", "--service", "users").stdout.splitlines()[1:]
        assert sorted(line.split("\t")[-1] for line in rows) == ["active", "revoked"]
    finally:
        second.stop()


def test_an_account_sees_and_manages_only_its_own_services(tmp_path: Path) -> None:
    server = ClaveProcess(tmp_path, workers=1).start()
    try:

        def account(name: str) -> tuple[str, str]:
            creds = twilio_credentials(server, "--account", name)
            return creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"]

        a, b = account("alpha"), account("beta")
        assert a[0] != b[0]
        mine = httpx.post(server.url + "/v2/Services", data={"FriendlyName": "A"}, auth=a)
        sid = mine.json()["sid"]
        to = "+14155550204"
        path = f"{server.url}/v2/Services/{sid}"
        sent = httpx.post(f"{path}/Verifications", data={"To": to, "Channel": "sms"}, auth=a)
        vid = sent.json()["sid"]
        # B can do nothing with A's service: it is not found, as a missing one is.
        attempts = [
            httpx.get(path, auth=b),
            httpx.post(path, data={"CodeLength": "8"}, auth=b),
            httpx.delete(path, auth=b),
            httpx.post(f"{path}/Verifications", data={"To": to, "Channel": "sms"}, auth=b),
            httpx.get(f"{path}/Verifications/{vid}", auth=b),
            httpx.post(f"{path}/Verifications/{vid}", data={"Status": "approved"}, auth=b),
            httpx.post(f"{path}/VerificationCheck", data={"To": to, "Code": "123456"}, auth=b),
        ]
        assert [(r.status_code, r.json()["code"]) for r in attempts] == [(404, 20404)] * 7
        assert httpx.get(server.url + "/v2/Services", auth=b).json()["services"] == []
        # A lists only its own: neither the default service nor the forum's users tenant.
        listed = httpx.get(server.url + "/v2/Services", auth=a).json()["services"]
        assert [s["sid"] for s in listed] == [sid]
        assert httpx.get(f"{path}/Verifications/{vid}", auth=a).json()["status"] == "pending"
        # The operator grants the default service to B: now B sees it, and only that.
        server.cli("service", "grant", "default", "--account", "beta")
        listed = httpx.get(server.url + "/v2/Services", auth=b).json()["services"]
        assert [s["friendly_name"] for s in listed] == ["clave"]
        assert "accounts=beta" in server.cli("service", "list").stdout
        server.cli("service", "ungrant", "default", "--account", "beta")
        assert httpx.get(server.url + "/v2/Services", auth=b).json()["services"] == []
    finally:
        server.stop()
