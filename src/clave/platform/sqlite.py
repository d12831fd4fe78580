"""SQLite for several worker processes: WAL, one connection on its own thread, BEGIN IMMEDIATE.

Each process owns one connection, used only from one dedicated thread so the event loop never
blocks on a lock held by another worker. Every read-modify-write runs in `write()`, i.e. inside
BEGIN IMMEDIATE: the write lock is taken before the first read, so two workers can never both
read the same state and both act on it.

Waiting for a lock another worker holds is done here, not by SQLite's busy handler: that one
sleeps in steps of milliseconds (1, 2, 5, 10 ... 100 ms), so a worker kept waiting 25 ms for a
lock that was free after 50 us, and two workers checking codes together answered slower than
one (p99 near a second). The operation is retried after 50 us, doubling to 2 ms at most, until
the busy timeout; a retried write starts again from BEGIN (`immediate` leaves nothing behind).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from clave.platform.errors import StoreError
from clave.platform.files import private

T = TypeVar("T")
_SQLITE_BUSY = 5  # the primary result code; extended codes carry it in their low byte
# A schema step: SQL statements separated by `;`, or a function for what SQL alone cannot do
# (re-encoding rows); either runs inside the migration's transaction.
Migration = str | Callable[[sqlite3.Connection], None]


class SqliteDatabase:
    """One SQLite file, opened lazily, with async `read`/`write` that run on its own thread."""

    def __init__(
        self,
        path: Path | str,
        migrations: Sequence[Migration] = (),
        *,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        self.path = str(path)
        self._migrations = tuple(migrations)
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    def connect_sync(self, *, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
        """Open a connection on the calling thread (used by setup commands and the worker)."""
        wait_ms = self._busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=wait_ms / 1000,
        )
        if self.path != ":memory:":
            # Private before the first write: SQLite gives the -wal and -shm files it creates
            # the database file's mode.
            private(Path(self.path))
        conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a process crash (kill -9); only an OS crash or
        # power loss can drop the last transactions.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def setup(self) -> None:
        """Create or upgrade the schema synchronously (once, before worker processes start)."""
        conn = self.connect_sync()
        try:
            migrate(conn, self._migrations)
        finally:
            conn.close()

    async def open(self) -> None:
        """Start the thread, open the connection on it, and bring the schema up to date."""
        if self._conn is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        loop = asyncio.get_running_loop()
        try:
            # No busy timeout: _patiently waits for the lock (see the module's docstring).
            self._conn = await loop.run_in_executor(
                self._executor, lambda: self.connect_sync(busy_timeout_ms=0)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}") from exc
        await self.read(lambda conn: migrate(conn, self._migrations))

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        conn, executor = self._conn, self._executor
        self._conn, self._executor = None, None
        if conn is not None and executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        if executor is not None:
            executor.shutdown(wait=True)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` outside a transaction (a consistent single-statement read)."""
        return await self._run(fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` inside BEGIN IMMEDIATE ... COMMIT, rolled back if it raises."""
        return await self._run(lambda conn: immediate(conn, fn))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None or self._executor is None:
            raise StoreError("the database is not open")
        conn = self._conn
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._patiently, fn, conn
            )
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error: {exc}") from exc

    def _patiently(self, fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
        """`fn(conn)`, run again while the database is locked, until the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay = 0.00005
        while True:
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != _SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)


def immediate(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in a BEGIN IMMEDIATE transaction on a synchronous connection; whatever fails,
    nothing of it stays (a failed COMMIT is rolled back too, so the caller may retry)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Apply the migrations past `PRAGMA user_version`, each in its own transaction."""

    def step(c: sqlite3.Connection) -> None:
        version = c.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(migrations[version:], start=version + 1):
            if callable(script):
                script(c)
            else:
                for statement in script.split(";"):
                    if statement.strip():
                        c.execute(statement)
            c.execute(f"PRAGMA user_version = {number}")

    # One IMMEDIATE transaction: two processes migrating at once serialise, the second sees
    # the new user_version and does nothing.
    immediate(conn, step)
