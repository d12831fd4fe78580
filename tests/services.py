"""Find or start the servers the tests need; fail clearly, never skip, when that cannot be done.

PostgreSQL: CLAVE_TEST_POSTGRES_URL, else 127.0.0.1:5432 (trust auth, database `test`), else a
private cluster started from the installed server binaries, else installed with apt-get when
running as root. haproxy: on PATH, else installed with apt-get when running as root.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support import free_port

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    psql = shutil.which("psql")
    if psql:
        result = subprocess.run(
            [psql, url, "-tAc", "select 1"], capture_output=True, text=True, timeout=10
        )
        return result.returncode == 0
    import asyncio

    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def _apt_install(package: str, *, recommends: bool = True) -> bool:
    """Install `package` with apt-get (as root only). The suite's worker processes (pytest-xdist)
    may want the same package at once: one installs while the others wait for it, and dpkg's
    own lock is waited for too (another apt on the machine)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [
        "apt-get",
        "install",
        "-y",
        "-qq",
        "-o",
        "DPkg::Lock::Timeout=600",
        *([] if recommends else ["--no-install-recommends"]),
    ]
    lock = Path(tempfile.gettempdir()) / "clave-tests-apt.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for args in (
            [*install, package],
            ["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=600"],
            [*install, package],
        ):
            result = subprocess.run(args, capture_output=True, env=env, timeout=900)
            if args[1] == "install" and result.returncode == 0:
                return True
    return False


class PrivatePostgres:
    """A throwaway cluster in a temporary directory, on a free port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="clave-pg-"))
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        command = [*args]
        if self.user:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        if self.user:
            shutil.chown(self.dir, self.user)
        data = self.dir / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "start",
        )
        url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run(
            [str(self.bindir / "psql"), url, "-c", "CREATE DATABASE test"],
            check=True,
            capture_output=True,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop"
            )
        shutil.rmtree(self.dir, ignore_errors=True)


def _server_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def postgres() -> tuple[str, PrivatePostgres | None]:
    """A PostgreSQL URL that answers, and the private cluster to stop afterwards (if any)."""
    url = os.environ.get("CLAVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    if _answers(url):
        return url, None
    bindir = _server_bindir()
    if bindir is None and _apt_install("postgresql"):
        bindir = _server_bindir()
    if bindir is None:
        pytest.fail(
            f"PostgreSQL is needed and none answers at {url}: install PostgreSQL (Debian: "
            "apt-get install postgresql) or set CLAVE_TEST_POSTGRES_URL",
            pytrace=False,
        )
    private = PrivatePostgres(bindir)
    try:
        return private.start(), private
    except (subprocess.SubprocessError, OSError) as exc:
        private.stop()
        pytest.fail(f"could not start a private PostgreSQL from {bindir}: {exc}", pytrace=False)


class PrivateRedis:
    """A throwaway redis-server on a free port, keeping nothing on disk."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def redis_server() -> tuple[str, PrivateRedis | None]:
    """A Redis URL that answers, and the private server to stop afterwards (if any)."""
    url = os.environ.get("CLAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if _redis_answers(url):
        return url, None
    binary = shutil.which("redis-server")
    if binary is None and _apt_install("redis-server"):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if binary is None:
        pytest.fail(
            f"Redis is needed and none answers at {url}: install it (Debian: apt-get install "
            "redis-server) or set CLAVE_TEST_REDIS_URL",
            pytrace=False,
        )
    private = PrivateRedis(binary)
    private_url = f"redis://127.0.0.1:{private.port}/0"
    try:
        wait_until(lambda: _redis_answers(private_url), timeout=15)
    except AssertionError:
        private.stop()
        pytest.fail(f"could not start a private redis-server from {binary}", pytrace=False)
    return private_url, private


def haproxy() -> str:
    """The haproxy binary, installed with apt-get if missing and possible."""
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None
    )
    if found is None and _apt_install("haproxy"):
        found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if found is None:
        pytest.fail(
            "haproxy is needed for the split-topology tests: install it (Debian: apt-get install "
            "haproxy) and put it on PATH",
            pytrace=False,
        )
    return found


def chromium() -> str:
    """Debian's chromium, installed with apt-get if missing and possible."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and _apt_install("chromium"):
        found = shutil.which("chromium") or "/usr/bin/chromium"
    if found is None:
        pytest.fail(
            "chromium is needed to render the docs page: install it (Debian: apt-get install "
            "chromium) and put it on PATH",
            pytrace=False,
        )
    return found


def prometheus() -> tuple[str, str]:
    """Debian's prometheus and promtool, installed with apt-get if missing and possible."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if None in found and _apt_install("prometheus", recommends=False):
        found = shutil.which("prometheus"), shutil.which("promtool")
    server, tool = found
    if server is None or tool is None:
        pytest.fail(
            "prometheus and promtool are needed for the metrics tests: install them (Debian: "
            "apt-get install --no-install-recommends prometheus) and put them on PATH",
            pytrace=False,
        )
    return server, tool


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
