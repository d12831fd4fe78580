"""Real `clave serve` processes on loopback, their logs kept for inspection."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import HMAC_KEYS, free_port


class ClaveProcess:
    """`clave serve` as a user runs it: its own process group, its own data dir and log."""

    def __init__(
        self, data_dir: Path, *, workers: int = 2, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.workers = workers
        self.log_path = data_dir / "server.log"
        self.env = {
            **os.environ,
            "CLAVE_DATA_DIR": str(data_dir),
            "CLAVE_HMAC_KEYS": HMAC_KEYS,
            "CLAVE_DEV_INBOX": "true",
            "CLAVE_OUTBOX_POLL": "0.1",
            "CLAVE_OUTBOX_LEASE": "2",
            "CLAVE_OUTBOX_BACKOFF": "0.2",
            "CLAVE_OUTBOX_BACKOFF_MAX": "1",
            "CLAVE_OUTBOX_MAX_TRIES": "100",
            "CLAVE_SEND_TIMEOUT": "2",
            "CLAVE_KEY_CACHE_SECONDS": "0",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run another `clave` command against the same data."""
        return subprocess.run(
            [sys.executable, "-m", "clave", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def start(self) -> ClaveProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clave",
                "serve",
                "--workers",
                str(self.workers),
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"clave serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if (
                    httpx.get(self.url + "/readyz", timeout=1).status_code == 200
                    and len(self.worker_pids()) == self.workers
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"clave serve not ready in {timeout}s:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes (children of the master)."""
        assert self.proc is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                found.append(int(entry.name))
        return sorted(found)

    def kill_all(self) -> None:
        """kill -9 the master and every worker at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM, as a supervisor stops it; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_all()
        # No worker may outlive its master.
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def twilio_credentials(server: ClaveProcess, *args: str) -> dict[str, str]:
    """New /v2 credentials (`clave apikey create --twilio ARGS`), by their variable names."""
    printed = server.cli("apikey", "create", "--twilio", *args).stdout
    return dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)


def inbox_code(server: ClaveProcess, to: str, count: int = 1, timeout: float = 10.0) -> str:
    """The code in the newest dev-inbox message to `to`, waiting for `count` to arrive."""
    from tests.support import code_in

    deadline = time.monotonic() + timeout
    while True:
        messages = httpx.get(server.url + "/dev/inbox/messages", params={"to": to}).json()[
            "messages"
        ]
        if len(messages) >= count:
            return code_in(messages[0]["text"])
        assert time.monotonic() < deadline, f"no message to {to}"
        time.sleep(0.05)


async def race_checks(server: ClaveProcess, key: str, to: str, n: int = 50) -> list[httpx.Response]:
    """Send a code to `to`, then check the right code `n` times at once."""
    import asyncio

    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=20
    ) as client:
        r = await client.post("/api/verifications", json={"to": to, "channel": "sms"})
        vid = r.json()["id"]
        code = await asyncio.to_thread(inbox_code, server, to)
        return await asyncio.gather(
            *(
                client.post("/api/verifications/check", json={"id": vid, "code": code})
                for _ in range(n)
            )
        )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[ClaveProcess]]:
    """A factory of servers; every one started is stopped after the test."""
    started: list[ClaveProcess] = []

    class Tracked(ClaveProcess):
        def start(self) -> ClaveProcess:
            started.append(self)
            return super().start()

    yield Tracked
    for server in started:
        server.stop()


@pytest.fixture
def clave_up(tmp_path: Path, haproxy_bin: str) -> Iterator[Any]:
    """A factory of `clave up` stacks; each is stopped (and checked to stop cleanly) after."""
    from tests.e2e.up import ClaveUp, stop_cleanly

    started: list[ClaveUp] = []

    def make(topology: str, **kw: Any) -> ClaveUp:
        stack = ClaveUp(tmp_path / f"up{len(started)}", topology, **kw)
        started.append(stack)
        return stack.start()

    yield make
    for stack in started:
        stop_cleanly(stack)
