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

from tests.e2e.conftest import ClaveProcess
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
        b.start()
        key = a.cli("apikey", "create").stdout.strip()
        auth = {"Authorization": f"Bearer {key}"}
        vid = httpx.post(
            a.url + "/api/verifications",
            json={"to": "+14155550201", "channel": "sms"},
            headers=auth,
        ).json()["id"]
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
        key = server.cli("apikey", "create").stdout.strip()
        r = httpx.post(
            server.url + "/api/verifications",
            json={"to": "+14155550202", "channel": "sms"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 201
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
        key = server.cli("apikey", "create").stdout.strip()
        auth = {"Authorization": f"Bearer {key}"}
        vid = httpx.post(
            server.url + "/api/verifications",
            json={"to": "+14155550203", "channel": "sms"},
            headers=auth,
        ).json()["id"]
        printed = server.cli("apikey", "create", "--twilio").stdout
        creds = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
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
