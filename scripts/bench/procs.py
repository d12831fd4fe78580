"""Processes: ports, core pinning, servers started and stopped, worker memory, the events sink."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int) -> list[str]:
    """The taskset prefix that runs a command on one core (nothing on one core or no taskset)."""
    return (
        ["taskset", "-c", str(core)]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1
        else []
    )


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


TICK = os.sysconf("SC_CLK_TCK")
# What a run's CPU is expected to go to besides the load generator: the servers started (and
# their workers) and these (the Redis clave uses).
SERVERS: list[Server] = []
ALSO_MEASURED: set[int] = set()


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process (all its threads) has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def busy_seconds() -> float:
    """CPU used on all cores (steal included: another guest's use of this machine)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


@contextlib.contextmanager
def other_load(into: dict[str, float]) -> Iterator[None]:
    """Measure what else used the CPU during the block (neither the servers, nor the load
    generator, a child of this process, nor this process): `other_cores`, in cores."""
    pids = [pid for server in SERVERS for pid in server.all_pids()] + sorted(ALSO_MEASURED)
    pids.append(os.getpid())
    ours = sum(cpu_seconds(pid) for pid in pids)
    children = os.times().children_user + os.times().children_system
    busy, start = busy_seconds(), time.monotonic()
    yield
    wall = time.monotonic() - start
    ours = sum(cpu_seconds(pid) for pid in pids) - ours
    children = os.times().children_user + os.times().children_system - children
    into["other_cores"] = max(0.0, busy_seconds() - busy - ours - children) / max(wall, 1e-9)


class Server:
    """A server process in its own session (stopped with its children), on 127.0.0.1:port."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        port: int,
        *,
        cwd: Path | None = None,
        ready: str = "/",
    ) -> None:
        self.port = port
        self.name = " ".join(argv)
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_ready(ready)
        SERVERS.append(self)

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                with urlopen(self.url + path, timeout=1):
                    return
            except HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url} in {timeout:.0f}s")

    def workers(self) -> list[int]:
        """The worker processes (granian's children), or the process itself when it has none."""
        return children(self.process.pid) or [self.process.pid]

    def all_pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def stop(self) -> None:
        if self in SERVERS:
            SERVERS.remove(self)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        type(self).received += 1

    received = 0

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def events_sink() -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 that takes any POST with a 200: where clave's signed
    events go during the run (an http:// events URL is allowed to this machine only)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events"
    finally:
        server.shutdown()
        server.server_close()


def events_received() -> int:
    return _Sink.received
