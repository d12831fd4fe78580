"""clave under load: its server, the sends, and the pool of pending verifications it checks."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import Request, urlopen

from bench.openloop import run_fixed_rate
from bench.procs import Server, free_port, pinned, rss_mib
from bench.wrk import CONNECTIONS, CREATE, V2_CREATE, cycle_script, fixed_script, run_wrk

# Checks a verification takes (CLAVE_MAX_CHECKS, clave's highest); the bench gives each at most
# one fewer, so none ever locks and every check is a wrong code on a pending verification.
MAX_CHECKS = 20
BUDGET = MAX_CHECKS - 1
CHECK_PATH = "/api/verifications/check"
PROBE_RATE = 30_000  # checks a second no worker comes near (node-verify does ~20k)


class Pool:
    """Pending verifications sent by the bench (id and a wrong code, from the dev inbox), and
    how many checks each has had. Each check run goes through them in order, least checked
    first, so checks spread evenly; `room` says whether a run of n fits the budget."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox
        self.seen = 0  # the inbox's last seq read
        self.entries: list[tuple[str, str, int]] = []  # (id, wrong code, checks so far)

    def __len__(self) -> int:
        return len(self.entries)

    def _rows_after(self, seq: int) -> list[tuple[int, str, str]]:
        if not self.inbox.exists():
            return []
        with sqlite3.connect(self.inbox) as conn:
            return conn.execute(
                "SELECT seq, verification_id, text FROM messages WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()

    def drain(self, timeout: float = 60.0) -> tuple[list[tuple[int, str, str]], float]:
        """Wait until delivery stops adding messages (1 s with none): (the new rows, seconds)."""
        start = time.monotonic()
        count, since = -1, start
        while time.monotonic() - start < timeout:
            rows = self._rows_after(self.seen)
            if len(rows) != count:
                count, since = len(rows), time.monotonic()
            elif time.monotonic() - since >= 1.0:
                break
            time.sleep(0.2)
        return rows, since - start

    def harvest(self) -> float:
        """Take the messages delivered since the last harvest into the pool: seconds waited."""
        rows, waited = self.drain()
        for seq, vid, text in rows:
            found = re.search(r"\b(\d{4,10})\b", text)
            if found:
                code = found.group(1)
                wrong = str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
                self.entries.append((vid, wrong, 0))
            self.seen = max(self.seen, seq)
        return waited

    def skip(self) -> None:
        """Messages delivered so far are not the pool's (another service's sends)."""
        rows, _ = self.drain()
        if rows:
            self.seen = rows[-1][0]

    def order(self) -> None:
        """Least checked first: the order every run goes through the pool in."""
        self.entries.sort(key=lambda entry: entry[2])

    def worst(self, n: int, extra: int = 0) -> int:
        """The most checks any verification would have after a run of n (with `extra` new
        verifications, which come first)."""
        checks = [0] * extra + sorted(c for _, _, c in self.entries)
        if not checks:
            return BUDGET + 1 if n else 0
        full, rest = divmod(n, len(checks))
        return max(c + full + (1 if i < rest else 0) for i, c in enumerate(checks))

    def shortfall(self, n: int) -> int:
        """How many more verifications a run of n checks needs to stay within the budget."""
        if self.worst(n) <= BUDGET:
            return 0
        high = 256
        while self.worst(n, high) > BUDGET:
            high *= 2
        low = high // 2
        while high - low > 64:
            middle = (low + high) // 2
            low, high = (low, middle) if self.worst(n, middle) <= BUDGET else (middle, high)
        return high

    def bodies(self) -> list[str]:
        """The check bodies, least checked first, each with an end user's address (as a
        backend passes it, so the per-IP limit counts)."""
        self.order()
        return [
            json.dumps(
                {"id": vid, "code": wrong, "client_ip": f"203.0.113.{i % 250 + 1}"},
                separators=(",", ":"),
            )
            for i, (vid, wrong, _) in enumerate(self.entries)
        ]

    def count(self, n: int) -> None:
        """Record a run of n checks that went through the pool in `bodies` order."""
        full, rest = divmod(n, len(self.entries))
        self.entries = [
            (vid, wrong, checks + full + (1 if i < rest else 0))
            for i, (vid, wrong, checks) in enumerate(self.entries)
        ]

    def most(self) -> int:
        return max((checks for _, _, checks in self.entries), default=0)


class Clave:
    """clave on one store, with its data directory, an API key and the pool it checks."""

    def __init__(self, label: str, store_env: dict[str, str], events_url: str) -> None:
        self.label = label
        self.data = Path(tempfile.mkdtemp(prefix="clave-bench-"))
        self.env = {
            **os.environ,
            "CLAVE_DATA_DIR": str(self.data),
            "CLAVE_DEV_INBOX": "true",
            "CLAVE_SEED": "true",
            "CLAVE_LOG_LEVEL": "warning",
            "CLAVE_CODE_TTL": "3600",
            "CLAVE_MAX_CHECKS": str(MAX_CHECKS),
            # Required with a shared (Redis) store; a throwaway key for the run.
            "CLAVE_HMAC_KEYS": "bench:" + base64.b64encode(os.urandom(32)).decode(),
            # Events on, to a local sink that answers 200.
            "CLAVE_EVENTS_URL": events_url,
            "CLAVE_EVENTS_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
            # Limits stay on, so their counting is part of the cost, but never refuse here.
            "CLAVE_LIMIT_SENDS_PER_IP": "1000000000/3600",
            "CLAVE_LIMIT_SENDS_PER_SERVICE": "1000000000/60",
            "CLAVE_LIMIT_SENDS_PER_DAY": "1000000000/86400",
            "CLAVE_LIMIT_SENDS_PER_SERVICE_DAY": "1000000000/86400",
            "CLAVE_LIMIT_FAILED_CHECKS_PER_IP": "1000000000/900",
            # The most the guess bound allows on 6 digits (a day's 100); the bench's at most
            # BUDGET per destination stays below it.
            "CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION": "100/86400",
            "CLAVE_COUNTRY_CAP_FLOOR": "10000000",
            **store_env,
        }
        # The runtime-only install `make bench` prepares (what `make run` and the image have).
        self.clave = [os.environ.get("CLAVE_BENCH_PYTHON", sys.executable), "-m", "clave"]
        key = subprocess.run(
            [*self.clave, "apikey", "create"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.pool = Pool(self.data / "inbox.db")
        self.server: Server | None = None
        self.workers = 0
        self.sends = 0  # create runs so far: each sends to numbers of its own
        self.create_rps = 0.0
        self.topped_up = 0

    def start(self, workers: int = 1) -> Server:
        """`clave serve --workers n`, pinned to core 1 with one worker (not with more)."""
        self.stop()
        port = free_port()
        argv = [*self.clave, "serve", "--workers", str(workers), "--port", str(port)]
        self.server = Server(
            [*pinned(1), *argv] if workers == 1 else argv, self.env, port, ready="/readyz"
        )
        self.workers = workers
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def rss(self) -> list[float]:
        assert self.server is not None
        return [rss_mib(pid) for pid in self.server.workers()]

    def get(self, wrk: str, path: str, duration: float) -> dict[str, float]:
        run_wrk(wrk, self.url + path, fixed_script("GET", path), 1, {})  # warm-up
        return run_wrk(wrk, self.url + path, fixed_script("GET", path), duration, {})

    def create(self, wrk: str, duration: float, *, measured: bool = True) -> dict[str, float]:
        """Sends through the native API, to numbers no other run uses; their messages join
        the pool."""
        self.sends += 1
        script = CREATE.replace("BASE", str(self.sends * 2_000_000))
        result = run_wrk(wrk, self.url, script, duration, self.headers)
        if measured:
            self.create_rps = result["rps"]
        result["drain_s"] = self.pool.harvest()
        return result

    def create_v2(self, wrk: str, duration: float) -> dict[str, float]:
        """Sends through /v2 with an SDK's request shape: Basic auth, a form body, a service
        created through /v2 (its messages are not the pool's)."""
        printed = subprocess.run(
            [*self.clave, "apikey", "create", "--twilio"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        creds = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
        pair = f"{creds['TWILIO_ACCOUNT_SID']}:{creds['TWILIO_AUTH_TOKEN']}"
        basic = "Basic " + base64.b64encode(pair.encode()).decode()
        request = Request(
            self.url + "/v2/Services",
            data=b"FriendlyName=Bench",
            headers={"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"},
        )
        with urlopen(request, timeout=10) as response:
            sid = json.loads(response.read())["sid"]
        self.sends += 1
        script = V2_CREATE.replace("SERVICE", sid).replace("BASE", str(self.sends * 2_000_000))
        headers = {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}
        result = run_wrk(wrk, self.url, script, duration, headers)
        self.pool.skip()
        return result

    def ensure(self, wrk: str, checks: int) -> None:
        """Send more verifications (not measured) until a run of `checks` fits the budget."""
        for _ in range(5):
            more = self.pool.shortfall(checks)
            if not more:
                return
            rate = self.create_rps or 500.0
            seconds = math.ceil(more * 1.2 / rate)
            before = len(self.pool)
            self.create(wrk, seconds, measured=False)
            self.topped_up += len(self.pool) - before

    def check(self, wrk: str, duration: float, expected: int) -> dict[str, float]:
        """Wrong codes on the pool, closed loop (wrk), for `duration`; `expected` is the most
        checks the run might send (the pool is grown to take them first)."""
        self.ensure(wrk, expected)
        with tempfile.TemporaryDirectory(prefix="clave-bench-") as tmp:
            bodies = Path(tmp) / "bodies"
            bodies.write_text("\n".join(self.pool.bodies()) + "\n")
            result = run_wrk(
                wrk,
                self.url,
                cycle_script("POST", CHECK_PATH, bodies, 0),
                duration,
                self.headers,
            )
        self.pool.count(int(result["sent"]))
        result["pool"] = len(self.pool)
        result["most_checks"] = self.pool.most()
        return result

    def check_saturated(self, wrk: str, duration: float) -> dict[str, float]:
        """A 1 s probe (sized for up to PROBE_RATE) sizes the pool for the measured run (twice
        the probe's rate, for headroom)."""
        probe = self.check(wrk, 1, PROBE_RATE * self.workers)
        expected = int(2 * probe["rps"] * duration) + CONNECTIONS
        return self.check(wrk, duration, expected)

    def check_fixed_rate(self, wrk: str, rate: float, duration: float) -> dict[str, float]:
        """Wrong codes on the pool at a fixed rate (open loop, pinned to core 0)."""
        total = max(1, int(rate * duration))
        self.ensure(wrk, total)
        assert self.server is not None
        host = f"127.0.0.1:{self.server.port}"
        head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        requests = [
            f"POST {CHECK_PATH} HTTP/1.1\r\nHost: {host}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
            for body in self.pool.bodies()
        ]
        result = run_fixed_rate(
            "127.0.0.1", self.server.port, rate, duration, requests, CONNECTIONS
        )
        # Each of the scheduled checks went out at most once (the ones in flight at the end too).
        self.pool.count(int(result["scheduled"]))
        result["pool"] = len(self.pool)
        result["most_checks"] = self.pool.most()
        return result
