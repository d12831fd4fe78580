"""SQLite for several worker processes: WAL, one connection on its own thread, BEGIN IMMEDIATE.

Each process owns one connection, used only from one dedicated thread so the event loop never
blocks on a lock held by another worker. Every read-modify-write runs in `write()`, i.e. inside
BEGIN IMMEDIATE: the write lock is taken before the first read, so two workers can never both
read the same state and both act on it.

The thread takes every call waiting for it at once (group commit). Writes that follow each
other share one transaction: one that fails fails alone (the transaction is rolled back and
the writes before it run again in a new one, each in a savepoint of its own, which the common
case, where none fails, does not pay for); the others answer once the shared COMMIT has
succeeded (if it fails, they all fail), so a caller never hears of a write that is not
committed. The results go back to the event loop in one wake-up, and the loop yields the core
to the thread once in a turn in which it queued writes (`_Thread._nudge`). Under load a call
then costs the loop about 2 us instead of the ~20 us of a ThreadPoolExecutor round trip, and a
write about 3 us of SQLite instead of 9 (BEGIN and COMMIT per write): on the check, 4,800 ->
6,900 req/s (one worker).

Waiting for a lock another worker holds is done here, not by SQLite's busy handler: that one
sleeps in steps of milliseconds (1, 2, 5, 10 ... 100 ms), so a worker kept waiting 25 ms for a
lock that was free after 50 us, and two workers checking codes together answered slower than
one (p99 near a second). BEGIN is retried after 50 us, doubling to 2 ms at most, until the
busy timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
        self._thread: _Thread | None = None

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
        if self._thread is not None:
            return
        thread = _Thread(self)
        try:
            # No busy timeout: _patiently waits for the lock (see the module's docstring).
            await thread.call(_OPEN, lambda _: None)
        except BaseException as exc:
            await thread.stop()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open SQLite database {self.path}") from exc
            raise
        self._thread = thread
        await self.read(lambda conn: migrate(conn, self._migrations))

    async def close(self) -> None:
        """Close the connection (after the calls already queued) and stop the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await thread.stop()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` outside a transaction (a consistent single-statement read)."""
        return await self._run(_READ, fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` inside BEGIN IMMEDIATE ... COMMIT; nothing of it stays if it raises.

        The transaction may carry other writes too (group commit): `fn` must never end it
        itself (no COMMIT, ROLLBACK, `conn.commit()`, `executescript`), and no table may have
        a DEFERRABLE constraint (checked at COMMIT, it would fail the other writes with it).
        `fn` may run twice (again, in a new transaction, when a write after it in the same one
        fails): what it does must be in the database only, and the last run's result is the
        one returned.
        """
        return await self._run(_WRITE, fn)

    async def _run(self, kind: int, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            raise StoreError("the database is not open")
        try:
            return await self._thread.call(kind, fn)
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


# Gives up the GIL and the core to a thread that waits for them (os.sched_yield releases the GIL
# around the system call); where there is none, a no-op.
_sched_yield: Callable[[], None] = getattr(os, "sched_yield", lambda: None)
_OPEN, _READ, _WRITE = 0, 1, 2
_STOP = None


@dataclass(slots=True)
class _Call:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    kind: int
    fn: Callable[[sqlite3.Connection], Any]
    result: Any = None
    error: BaseException | None = None
    settled: bool = False  # the outcome is final (a write: committed, or failed)

    def succeed(self, result: Any) -> None:
        self.result, self.settled = result, True

    def fail(self, error: BaseException) -> None:
        if isinstance(error, StopIteration):  # a future refuses it (PEP 479)
            error = RuntimeError(f"StopIteration raised in a SQLite call: {error!r}")
        self.result, self.error, self.settled = None, error, True


class _Thread:
    """The database's thread: runs the calls in the order they came, writes that follow each
    other in one transaction, and hands back the results of all the calls it found waiting
    in one wake-up of each caller's event loop."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._conn: sqlite3.Connection | None = None
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # The loop a yield to this thread is due in (its next turn), if any.
        self._nudging: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(
            target=self._serve, name=f"sqlite {Path(db.path).name}", daemon=True
        )
        self._thread.start()

    async def call(self, kind: int, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` on the thread. A caller that stops waiting does not stop `fn` (as with
        an executor): what it writes is written, only its result is dropped."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put(_Call(loop, future, kind, fn))
        if kind == _WRITE and self._nudging is not loop:
            # (Per loop: one closed before its turn came leaves nothing due on the next.)
            self._nudging = loop
            loop.call_soon(self._nudge)
        return await future

    def _nudge(self) -> None:
        """Yield the core, once in a loop turn in which writes were queued, so the thread they
        woke runs them now. It needs the GIL to; the loop holds it while it runs callbacks and
        lets go when it waits for I/O or when the thread has waited out the switch interval
        (5 ms): under load, batches of a few writes took 4-5 ms. Checks at 5,400/s (70% of
        what saturates a worker), interleaved runs: p50 2.5-3.0 ms against 2.9-3.9, p99
        8.6-10.6 against 8.6-24; throughput unchanged. Reads do not nudge: they hold no lock,
        and GET /api/users lost 4% to the yields."""
        self._nudging = None
        _sched_yield()

    async def stop(self) -> None:
        """Finish the calls already queued, close the connection, end the thread."""
        self._calls.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _serve(self) -> None:
        while True:
            batch = [self._calls.get()]
            while len(batch) < 256:
                try:
                    batch.append(self._calls.get_nowait())
                except queue.Empty:
                    break
            calls = [call for call in batch if call is not None]
            try:
                self._run(calls)
            except BaseException as exc:  # the thread's own steps failed: say so to everyone
                for call in calls:
                    if not call.settled:
                        call.fail(exc)
                self._abandon()
            _deliver(calls)
            if any(call is _STOP for call in batch):
                if self._conn is not None:
                    self._conn.close()
                return

    def _run(self, calls: list[_Call]) -> None:
        """Run `calls` in order, settling each one."""
        pending: list[_Call] = []  # writes done in the open transaction, not yet committed
        careful = False  # a write of the open transaction failed: the rest each in a savepoint
        for call in calls:
            if call.kind == _OPEN:
                if self._conn is None:
                    self._conn = self._db.connect_sync(busy_timeout_ms=0)
                call.succeed(None)
                continue
            conn = self._conn
            if conn is None:
                call.fail(StoreError("the database is not open"))
            elif call.kind == _WRITE and careful:
                pending = self._careful(conn, call, pending)
            elif call.kind == _WRITE:
                pending, careful = self._write(conn, call, pending)
            else:
                _commit(conn, pending)
                pending, careful = [], False
                try:
                    call.succeed(self._db._patiently(call.fn, conn))
                except BaseException as exc:
                    call.fail(exc)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # a read must not leave a transaction open
        if self._conn is not None:
            _commit(self._conn, pending)

    def _write(
        self, conn: sqlite3.Connection, call: _Call, pending: list[_Call]
    ) -> tuple[list[_Call], bool]:
        """Run one write in the open transaction (begun if none is): (the writes now waiting
        for the COMMIT, whether one failed in this transaction).

        Optimistically without a savepoint, which would cost two statements a write and a
        copy of every page it changes (SQLite's statement journal): a write that raises rolls
        the transaction back and fails alone; the writes before it run again in a new one,
        each in a savepoint now, on what the database holds then (another worker may have
        written in between: they are done once, on the state they commit on). The rest of
        that transaction runs careful (`_careful`) too, so a failure costs one rerun at most."""
        if not self._began(conn, call):
            return pending, False
        try:
            call.result = call.fn(conn)
        except BaseException as exc:
            if not conn.in_transaction:
                return _lost(exc, [*pending, call]), False
            conn.execute("ROLLBACK")
            call.fail(exc)
            if not pending:
                return [], False
            try:  # once for all of them: a busy database fails them together, at once
                self._db._patiently(_begin, conn)
            except BaseException as busy:
                return _lost(busy, pending), False
            again: list[_Call] = []
            for each in pending:
                again = self._careful(conn, each, again)
            return again, True
        if not conn.in_transaction:  # SQLite rolled it back under a write that went on
            return _lost(_lost_transaction(), [*pending, call]), False
        return [*pending, call], False

    def _careful(self, conn: sqlite3.Connection, call: _Call, pending: list[_Call]) -> list[_Call]:
        """`_write`, the write in a savepoint: rolled back alone if it raises."""
        if not self._began(conn, call):
            return pending
        conn.execute("SAVEPOINT call")
        try:
            call.result = call.fn(conn)
            conn.execute("RELEASE call")
        except BaseException as exc:
            if conn.in_transaction:
                call.fail(exc)
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
                return pending
            return _lost(exc, [*pending, call])
        return [*pending, call]

    def _began(self, conn: sqlite3.Connection, call: _Call) -> bool:
        """Whether a transaction is open for `call` (begun if none was); `call` fails if it
        cannot be."""
        if conn.in_transaction:
            return True
        try:
            self._db._patiently(_begin, conn)
        except BaseException as exc:
            call.fail(exc)
            return False
        return True

    def _abandon(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _lost_transaction() -> sqlite3.Error:
    """What a write that went on in a transaction SQLite had rolled back fails with, and the
    writes done before it in that transaction."""
    return sqlite3.OperationalError("SQLite rolled back the transaction this write was in")


def _lost(exc: BaseException, calls: list[_Call]) -> list[_Call]:
    """SQLite rolled the whole transaction back (a full disk, an I/O error): every write done
    in it is gone and fails with `exc`; none is left waiting for the COMMIT."""
    for call in calls:
        call.fail(exc)
    return []


def _commit(conn: sqlite3.Connection, pending: list[_Call]) -> None:
    """Commit the open transaction, if any: its writes succeed, or fail together."""
    if not conn.in_transaction:
        if pending:  # (none: a write that lost it failed them already)
            _lost(_lost_transaction(), pending)
        return
    try:
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for call in pending:
            call.fail(exc)
        return
    for call in pending:
        call.succeed(call.result)


def _deliver(calls: list[_Call]) -> None:
    """Hand the results to their callers' loops, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
    for call in calls:
        by_loop.setdefault(call.loop, []).append(call)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(calls: list[_Call]) -> None:
    for call in calls:
        if call.future.done():  # its caller stopped waiting
            continue
        if call.error is None:
            call.future.set_result(call.result)
        else:
            call.future.set_exception(call.error)


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
