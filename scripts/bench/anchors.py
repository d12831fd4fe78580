"""The Node anchors of ../shared/bench (see its README): installed outside it, run one at a time.

Each is copied into a cache directory keyed by its files and the Node version
(`$BENCH_CACHE`, else `$XDG_CACHE_HOME/clave-bench` or `~/.cache/clave-bench`) and `npm ci`
runs there once: better-sqlite3 builds from source (about a minute), and nothing is ever
written into the shared directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from bench.procs import Server, free_port, pinned
from bench.wrk import fixed_script, run_wrk

# ../shared/bench beside the clone, or BENCH_ANCHORS.
SHARED = Path(
    os.environ.get("BENCH_ANCHORS") or Path(__file__).resolve().parents[3] / "shared" / "bench"
)
# node-verify's seeded destination, and a wrong code for it (its right one is 999999).
CHECK_BODY = '{"to":"+15551234567","code":"123456"}'


def find_node() -> tuple[str | None, str]:
    """(node, "") when node and npm are there (installed with apt-get when missing and
    possible), else (None, why not)."""
    missing = not (shutil.which("node") and shutil.which("npm"))
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        print("installing nodejs and npm with apt-get ...", file=sys.stderr)
        for step in (["install", "nodejs", "npm"], ["update"], ["install", "nodejs", "npm"]):
            subprocess.run(["apt-get", "-y", "-qq", *step], check=False, capture_output=True)
            if shutil.which("node") and shutil.which("npm"):
                break
    node = shutil.which("node")
    if not node or not shutil.which("npm"):
        return None, "no node and npm (apt-get install nodejs npm)"
    return node, ""


def cache_root() -> Path:
    if os.environ.get("BENCH_CACHE"):
        return Path(os.environ["BENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clave-bench"


def install(name: str, node: str) -> tuple[Path | None, str]:
    """The anchor `name` ready to run: (its directory, "") or (None, why not)."""
    source = SHARED / name
    if not (source / "package-lock.json").exists():
        return None, f"{source} not found"
    files = sorted(p for p in source.iterdir() if p.is_file())
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    target = cache_root() / f"{name}-{digest.hexdigest()[:16]}"
    if (target / ".installed").exists():
        return target, ""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=target.parent))
    try:
        for path in files:
            shutil.copy2(path, staging / path.name)
        print(f"npm ci for the anchor {name} (once, in {target}) ...", file=sys.stderr)
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            return None, f"npm ci failed for {name}: {tail[0]}"
        (staging / ".installed").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, ""


def start(node: str, directory: Path, env: dict[str, str], ready: str) -> Server:
    port = free_port()
    return Server(
        [*pinned(1), node, "server.js"],
        {**os.environ, **env, "PORT": str(port)},
        port,
        cwd=directory,
        ready=ready,
    )


def measure(wrk: str, server: Server, script: str, path: str, duration: float) -> dict[str, float]:
    headers = {"Content-Type": "application/json"}
    run_wrk(wrk, server.url + path, script, 1, headers)  # warm-up (the JIT)
    return run_wrk(wrk, server.url + path, script, duration, headers)


def koa_users(wrk: str, node: str, directory: Path, duration: float) -> dict[str, float]:
    """The original sample's Koa server: GET /api/users."""
    server = start(node, directory, {}, "/api/users")
    try:
        return measure(wrk, server, fixed_script("GET", "/api/users"), "/api/users", duration)
    finally:
        server.stop()


def node_verify(
    wrk: str, node: str, directory: Path, store: str, duration: float, *, redis_port: int = 6379
) -> dict[str, dict[str, float]]:
    """node-verify on one store: its check of a wrong code, and (on SQLite) GET /health."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="node-verify-") as tmp:
        env = {"STORE": store, "DB": str(Path(tmp) / "node.db"), "REDIS_PORT": str(redis_port)}
        server = start(node, directory, env, "/health")
        try:
            check = fixed_script("POST", "/check", CHECK_BODY)
            results["check"] = measure(wrk, server, check, "/check", duration)
            if store == "sqlite":
                health = fixed_script("GET", "/health")
                results["bare"] = measure(wrk, server, health, "/health", duration)
        finally:
            server.stop()
    return results


def redis_port(url: str) -> int | None:
    """The port node-verify can reach the bench's Redis on (it knows 127.0.0.1 and db 0 only),
    or None."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.password:
        return None
    if parts.path.strip("/") not in ("", "0"):
        return None
    return parts.port or 6379
