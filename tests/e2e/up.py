"""`clave up` as a user runs it: a real haproxy in front of real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from clave.topology.table import RoutingTable
from tests.support import HMAC_KEYS, free_port

REPO_TABLE = Path(__file__).resolve().parents[2] / "routes.toml"


class ClaveUp:
    """One `clave up` process with its own data dir and a copy of the routing table."""

    def __init__(
        self,
        tmp_path: Path,
        topology: str,
        *,
        weights: dict[str, int] | None = None,
        workers: dict[str, int] | None = None,
        restart_delay: float = 2.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.dir = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.topology = topology
        self.port = free_port()
        self.table = tmp_path / "routes.toml"
        table = RoutingTable.load(REPO_TABLE)
        for service, weight in (weights or {}).items():
            table = table.shift(service, weight)
        table.save(self.table)
        self.workers = workers or {}
        self.restart_delay = restart_delay
        self.env = {
            **os.environ,
            # Relative, as under `make run`: clave up runs from its own directory below.
            "CLAVE_DATA_DIR": "data",
            "CLAVE_HMAC_KEYS": HMAC_KEYS,
            "CLAVE_DEV_INBOX": "true",
            "CLAVE_OUTBOX_POLL": "0.1",
            "CLAVE_KEY_CACHE_SECONDS": "0",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "up.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def run_dir(self) -> Path:
        return self.dir / "data" / "up"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clave", *args],
            env=self.env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def start(self) -> ClaveUp:
        command = [
            sys.executable,
            "-m",
            "clave",
            "up",
            "--port",
            str(self.port),
            "--topology",
            self.topology,
            "--routes",
            str(self.table),
            "--seed",
            "--show-server",  # the tests tell servers apart by it
            "--restart-delay",
            str(self.restart_delay),
        ]
        for name, count in self.workers.items():
            command += ["--workers", f"{name}={count}"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"clave up exited {self.proc.returncode}:\n{self.log.read_text()}"
                )
            if (self.run_dir / "state.json").exists():
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.url + "/", timeout=2).status_code == 200:
                        return self
            time.sleep(0.1)
        raise AssertionError(f"clave up not ready:\n{self.log.read_text()}")

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.run_dir / "state.json").read_text())
        return state

    def pids(self) -> list[int]:
        """Every process of every component (masters and workers) and haproxy's."""
        roots = [c["pid"] for c in self.state()["components"].values()]
        roots.append(self.state()["haproxy"]["pid"])
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.getpgid(int(entry.name)) in roots:
                        found.append(int(entry.name))
        return found

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C would; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


def stop_cleanly(stack: ClaveUp) -> None:
    """Stop a stack and check it stopped cleanly: exit code 0, none of its processes left."""
    pids = stack.pids() if stack.proc and stack.proc.poll() is None else []
    assert stack.stop() == 0, stack.log.read_text()
    leftovers = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    assert not leftovers, f"processes left running after clave up stopped: {leftovers}"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def children(pid: int) -> list[int]:
    """Direct children of a process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found
