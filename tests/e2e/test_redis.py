"""The monolith on the Redis store, against real processes and a real Redis."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import ClaveProcess, race_checks
from tests.support import SmtpServer, code_in, free_port, text_part

pytestmark = pytest.mark.e2e


class Silent:
    """A TCP server that accepts connections and never says a word (a hung SMTP server)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)  # close() from another thread does not wake a blocked accept()
        self.stopped = threading.Event()
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.stopped.set()
        self._thread.join()
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def redis_env(redis_url: str) -> Iterator[dict[str, str]]:
    prefix = f"e2e{secrets.token_hex(4)}:"
    yield {"CLAVE_VERIFY_STORE": redis_url, "CLAVE_REDIS_PREFIX": prefix}
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


def test_worker_killed_mid_delivery_sends_exactly_once(
    tmp_path: Path, serve: type[ClaveProcess], redis_env: dict[str, str]
) -> None:
    port = free_port()
    silent = Silent(port)
    env = {
        **redis_env,
        "CLAVE_SMTP_URL": f"smtp://127.0.0.1:{port}?starttls=false",
        "CLAVE_EMAIL_FROM": "a@acme.example",
        "CLAVE_DEV_INBOX": "false",
        "CLAVE_SEND_TIMEOUT": "60",
        "CLAVE_SMTP_TIMEOUT": "60",
        "CLAVE_OUTBOX_LEASE": "3",
    }
    server = serve(tmp_path, env=env).start()
    key = server.cli("apikey", "create").stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(
        server.url + "/api/verifications",
        json={"to": "ana@example.com", "channel": "email"},
        headers=auth,
    )
    assert r.status_code == 201
    vid = r.json()["id"]
    # A worker has taken the send and is stuck talking to the silent server.
    deadline = time.monotonic() + 10
    while not silent.accepted:
        assert time.monotonic() < deadline, "no worker tried to deliver"
        time.sleep(0.05)
    for pid in server.worker_pids():
        os.kill(pid, signal.SIGKILL)
    silent.close()
    smtp = SmtpServer(port=port).start()
    try:
        [mail] = smtp.wait_for("ana@example.com", timeout=30)  # re-claimed after the 3 s lease
        time.sleep(4)  # a second lease period: no duplicate may follow
        assert len(smtp.messages) == 1
        code = code_in(text_part(mail))
        r = httpx.post(
            server.url + "/api/verifications/check", json={"id": vid, "code": code}, headers=auth
        )
        assert r.json()["status"] == "approved"
        attempts = httpx.get(server.url + f"/api/verifications/{vid}", headers=auth).json()[
            "send_attempts"
        ]
        assert [a["status"] for a in attempts] == ["sent"]
    finally:
        smtp.stop()


async def test_concurrent_checks_on_redis(
    tmp_path: Path, serve: type[ClaveProcess], redis_env: dict[str, str]
) -> None:
    server = serve(tmp_path, env=redis_env).start()
    results = await race_checks(
        server, server.cli("apikey", "create").stdout.strip(), "+14155552671"
    )
    assert sum(r.status_code == 200 and r.json()["status"] == "approved" for r in results) == 1
    # The state lives in Redis, not in the data dir.
    assert not (tmp_path / "verify.db").exists()
