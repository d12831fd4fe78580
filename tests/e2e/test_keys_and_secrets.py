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
