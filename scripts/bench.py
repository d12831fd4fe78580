"""Benchmark `clave serve --workers 1` with wrk: create and check on SQLite and on Redis, and a
bare endpoint as the ceiling.

Prints req/s, p50 and p99 latency, non-2xx answers and the worker's memory. The server gets one
core and wrk the other (taskset), so the load generator is not what limits the figures.
Run with `make bench`; DURATION and CONNECTIONS can be set in the environment.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
AREAS = [201, 202, 206, 212, 213, 305, 310, 312, 404, 415, 503, 512, 602, 617, 646, 702, 713, 718]

REPORT = """
done = function(summary, latency, requests)
  local s = summary
  io.write(string.format('{"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, '
    .. '"non2xx": %d, "socket_errors": %d}\\n',
    s.requests, s.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    s.errors.status, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout))
end
"""

CREATE = """
local areas = {AREAS}
local counter = 0
local thread_seed = 0
setup = function(thread) thread_seed = thread_seed + 1; thread:set("seed", thread_seed) end
request = function()
  counter = counter + 1
  local n = counter * 7 + (seed or 0)
  local area = areas[(n % #areas) + 1]
  local number = string.format("+1%d%03d%04d", area, 200 + (math.floor(n / #areas) % 800),
    math.floor(n / (#areas * 800)) % 10000)
  return wrk.format("POST", "/api/verifications", nil,
    '{"to":"' .. number .. '","channel":"sms"}')
end
""".replace("AREAS", ",".join(map(str, AREAS)))

# The same sends through the Twilio-compatible API (form body, Basic auth), other numbers.
V2_CREATE = (
    CREATE.replace("counter * 7 + (seed or 0)", "counter * 7 + (seed or 0) + 3000000")
    .replace('"/api/verifications"', '"/v2/Services/SERVICE/Verifications"')
    .replace(
        """'{"to":"' .. number .. '","channel":"sms"}'""",
        '"To=%2B" .. number:sub(2) .. "&Channel=sms"',
    )
)

CHECK = """
local pairs_ = {PAIRS}
local i = 0
request = function()
  i = i + 1
  local p = pairs_[((i - 1) % #pairs_) + 1]
  return wrk.format("POST", "/api/verifications/check", nil,
    '{"id":"' .. p[1] .. '","code":"' .. p[2] .. '"}')
end
"""


def find_wrk() -> str:
    """wrk on PATH, installed from Debian's packages when missing and possible."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("installing wrk with apt-get ...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("make bench needs the wrk load generator: apt-get install wrk (or brew install wrk)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int) -> list[str]:
    return (
        ["taskset", "-c", str(core)]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1
        else []
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
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
    return found


def run_wrk(
    wrk: str,
    url: str,
    script: str,
    key: str,
    duration: int,
    *,
    auth: str | None = None,
    content_type: str = "application/json",
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + REPORT)
    try:
        out = subprocess.run(
            [
                *pinned(0),
                wrk,
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{duration}s",
                "-s",
                handle.name,
                "-H",
                f"Authorization: {auth or 'Bearer ' + key}",
                "-H",
                f"Content-Type: {content_type}",
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    line = next(li for li in reversed(out.splitlines()) if li.startswith("{"))
    result: dict[str, float] = json.loads(line)
    result["rps"] = result["requests"] / result["seconds"]
    return result


def redis_url() -> str | None:
    """A Redis for the Redis-store run: BENCH_REDIS_URL or 127.0.0.1:6379, if one answers."""
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


def run_store(
    wrk: str, label: str, extra_env: dict[str, str], *, bare: bool
) -> tuple[dict[str, dict[str, float]], int, float, float]:
    """Start clave on one store, drive it, stop it: results, pairs, RSS idle and loaded."""
    data = Path(tempfile.mkdtemp(prefix="clave-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "CLAVE_DATA_DIR": str(data),
        "CLAVE_DEV_INBOX": "true",
        "CLAVE_LOG_LEVEL": "warning",
        "CLAVE_CODE_TTL": "3600",
        # Required with a shared (Redis) store; a throwaway key for the run.
        "CLAVE_HMAC_KEYS": "bench:" + base64.b64encode(os.urandom(32)).decode(),
        # Limits stay on, so their counting is part of the cost, but never refuse here.
        "CLAVE_LIMIT_SENDS_PER_SERVICE": "1000000000/60",
        "CLAVE_LIMIT_SENDS_PER_DAY": "1000000000/86400",
        "CLAVE_LIMIT_SENDS_PER_SERVICE_DAY": "1000000000/86400",
        "CLAVE_COUNTRY_CAP_FLOOR": "10000000",
        **extra_env,
    }
    clave = [sys.executable, "-m", "clave"]
    key = subprocess.run(
        [*clave, "apikey", "create"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    server = subprocess.Popen(
        [*pinned(1), *clave, "serve", "--workers", "1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, float]] = {}
    try:
        for _ in range(100):
            try:
                urlopen(url + "/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        worker = children(server.pid)[0]
        idle = rss_mib(worker)
        if bare:
            results["bare GET /healthz"] = run_wrk(wrk, url + "/healthz", "", key, DURATION)
        results[f"create ({label})"] = run_wrk(wrk, url, CREATE, key, DURATION)
        if bare:
            results[f"create, Twilio v2 ({label})"] = run_v2(wrk, url, clave, env)
        time.sleep(1)  # let the dispatcher drain the outbox into the inbox
        with sqlite3.connect(data / "inbox.db") as conn:
            rows = conn.execute("SELECT verification_id, text FROM messages").fetchall()
        pairs = [(vid, re.search(r"\b(\d{6})\b", text).group(1)) for vid, text in rows]  # type: ignore[union-attr]
        # Each pair approves once; a check costs less than a create (no delivery), so size the
        # run to stay inside the pairs: non-2xx in the table says if it did not.
        create_rps = results[f"create ({label})"]["rps"]
        check_duration = max(1, min(DURATION, int(len(pairs) / (2.5 * create_rps))))
        table = ",".join(f'{{"{v}","{c}"}}' for v, c in pairs)
        results[f"check ({label})"] = run_wrk(
            wrk, url, CHECK.replace("PAIRS", table), key, check_duration
        )
        loaded = rss_mib(worker)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    return results, len(pairs), idle, loaded


def run_v2(wrk: str, url: str, clave: list[str], env: dict[str, str]) -> dict[str, float]:
    """Creates through /v2 with an SDK's request shape: Basic auth, a form body."""
    from urllib.request import Request

    printed = subprocess.run(
        [*clave, "apikey", "create", "--twilio"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    creds = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    basic = (
        "Basic "
        + base64.b64encode(
            f"{creds['TWILIO_ACCOUNT_SID']}:{creds['TWILIO_AUTH_TOKEN']}".encode()
        ).decode()
    )
    request = Request(
        url + "/v2/Services",
        data=b"FriendlyName=Bench",
        headers={"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urlopen(request, timeout=10) as response:
        sid = json.loads(response.read())["sid"]
    return run_wrk(
        wrk,
        url,
        V2_CREATE.replace("SERVICE", sid),
        "",
        DURATION,
        auth=basic,
        content_type="application/x-www-form-urlencoded",
    )


def main() -> None:
    wrk = find_wrk()
    results, pairs, idle, loaded = run_store(wrk, "SQLite", {}, bare=True)
    notes = [
        f"SQLite: {pairs} verifications created; "
        f"worker RSS {idle:.1f} MiB idle, {loaded:.1f} MiB after load"
    ]
    redis = redis_url()
    if redis:
        prefix = f"bench{os.getpid()}:"
        more, pairs, idle, loaded = run_store(
            wrk, "Redis", {"CLAVE_VERIFY_STORE": redis, "CLAVE_REDIS_PREFIX": prefix}, bare=False
        )
        results |= more
        notes.append(
            f"Redis: {pairs} verifications created; "
            f"worker RSS {idle:.1f} MiB idle, {loaded:.1f} MiB after load"
        )
        import redis as redis_client

        client = redis_client.Redis.from_url(redis)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    else:
        notes.append("Redis: none answered at BENCH_REDIS_URL or 127.0.0.1:6379, so no Redis run")

    ceiling = results["bare GET /healthz"]["rps"]
    print(
        f"clave serve --workers 1, dev inbox delivery, wrk -t1 -c{CONNECTIONS}, "
        f"{os.cpu_count()} cores, server and wrk pinned to separate cores"
    )
    print(
        f"{'endpoint (store)':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non-2xx':>8} {'of bare':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:32} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{int(r['non2xx']):8d} {r['rps'] / ceiling:8.0%}"
        )
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
