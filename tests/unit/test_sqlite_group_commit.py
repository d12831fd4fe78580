"""The SQLite thread's group commit: writes that queue up together share one transaction, yet
each succeeds or fails on its own, and none is reported before it is committed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from clave.platform.errors import StoreError
from clave.platform.sqlite import SqliteDatabase

SCHEMA = (
    "CREATE TABLE n (id INTEGER PRIMARY KEY, value INTEGER NOT NULL UNIQUE);"
    "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent (id) "
    "DEFERRABLE INITIALLY DEFERRED)",
)


def insert(value: int, *, then_fail: bool = False):  # type: ignore[no-untyped-def]
    def run(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO n (value) VALUES (?)", (value,))
        if then_fail:
            raise ValueError(f"refused {value}")
        return value

    return run


def values(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT value FROM n ORDER BY value")]


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = SqliteDatabase(tmp_path / "n.db", SCHEMA)
    await database.open()
    yield database
    await database.close()


async def test_a_failing_write_fails_alone_and_leaves_nothing(db: SqliteDatabase) -> None:
    writes = [db.write(insert(v, then_fail=v % 7 == 3)) for v in range(100)]
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    failed = [v for v, o in zip(range(100), outcomes, strict=True) if isinstance(o, ValueError)]
    assert failed == [v for v in range(100) if v % 7 == 3]
    assert [o for o in outcomes if not isinstance(o, Exception)] == [
        v for v in range(100) if v % 7 != 3
    ]
    # The failed ones' rows were rolled back with them; every other one is there.
    assert await db.read(values) == [v for v in range(100) if v % 7 != 3]


async def test_a_constraint_violation_fails_that_write_only(db: SqliteDatabase) -> None:
    outcomes = await asyncio.gather(
        db.write(insert(1)), db.write(insert(1)), db.write(insert(2)), return_exceptions=True
    )
    assert outcomes[0] == 1
    assert outcomes[2] == 2
    assert isinstance(outcomes[1], StoreError)
    assert isinstance(outcomes[1].__cause__, sqlite3.IntegrityError)
    assert await db.read(values) == [1, 2]


async def test_reads_see_the_writes_queued_before_them(db: SqliteDatabase) -> None:
    calls = [db.write(insert(1)), db.read(values), db.write(insert(2)), db.read(values)]
    outcomes = await asyncio.gather(*calls)
    assert outcomes == [1, [1], 2, [1, 2]]


async def test_a_failed_commit_fails_every_write_it_carried(db: SqliteDatabase) -> None:
    """A deferred foreign key is checked at COMMIT: the shared transaction cannot commit, so
    no write in it may be reported as done, and none of them stays."""

    def orphan(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO child (parent) VALUES (42)")

    outcomes = await asyncio.gather(
        db.write(insert(1)), db.write(orphan), db.write(insert(2)), return_exceptions=True
    )
    assert all(isinstance(o, StoreError) for o in outcomes), outcomes
    assert await db.read(values) == []
    # The connection is usable afterwards.
    assert await db.write(insert(3)) == 3


async def test_a_write_that_loses_the_transaction_fails_the_ones_before_it(
    db: SqliteDatabase,
) -> None:
    """When SQLite rolls the whole transaction back (a full disk, an I/O error), the writes
    done in it before are gone too: they fail rather than being reported."""

    def lose_everything(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    outcomes = await asyncio.gather(
        db.write(insert(1)),
        db.write(lose_everything),
        db.write(insert(2)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], StoreError)
    assert isinstance(outcomes[1], StoreError)
    assert outcomes[2] == 2
    assert await db.read(values) == [2]


async def test_writes_run_again_after_a_failure_are_done_once(db: SqliteDatabase) -> None:
    """A write that fails rolls the shared transaction back; the writes before it run again
    (each in a savepoint now) and count once, with the result of the run that committed."""
    await db.write(insert(0))

    def bump(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE n SET value = value + 1 WHERE id = 1")
        return int(conn.execute("SELECT value FROM n WHERE id = 1").fetchone()[0])

    outcomes = await asyncio.gather(
        db.write(bump),
        db.write(bump),
        db.write(insert(100, then_fail=True)),
        db.write(bump),
        return_exceptions=True,
    )
    assert list(outcomes[:2]) == [1, 2]
    assert isinstance(outcomes[2], ValueError)
    assert outcomes[3] == 3
    assert await db.read(values) == [3]


def traced(db: SqliteDatabase) -> list[str]:
    """The statements the database's connection runs from now on (`untraced` stops it)."""
    assert db._thread is not None
    assert db._thread._conn is not None
    statements: list[str] = []
    db._thread._conn.set_trace_callback(statements.append)
    return statements


def untraced(db: SqliteDatabase) -> None:
    assert db._thread is not None
    assert db._thread._conn is not None
    db._thread._conn.set_trace_callback(None)


async def test_writes_that_all_succeed_pay_for_no_savepoint(db: SqliteDatabase) -> None:
    """The common case: writes queued together share BEGIN and COMMIT and nothing else."""
    await db.write(insert(0))  # opened, migrated
    statements = traced(db)
    try:
        await asyncio.gather(*(db.write(insert(v)) for v in range(1, 21)))
    finally:
        untraced(db)
    assert sum(s.startswith("BEGIN") for s in statements) >= 1
    assert not [s for s in statements if "SAVEPOINT" in s or "RELEASE" in s]
    assert sum(s.startswith("INSERT") for s in statements) == 20
    assert await db.read(values) == list(range(21))


async def test_a_failure_costs_one_rerun_at_most(db: SqliteDatabase) -> None:
    """However many writes fail in one transaction, every write runs at most twice and a
    failing one once."""
    await db.write(insert(-1))
    runs: dict[int, int] = {}

    def counted(value: int, *, fail: bool) -> object:
        def run(conn: sqlite3.Connection) -> int:
            runs[value] = runs.get(value, 0) + 1
            return insert(value, then_fail=fail)(conn)  # type: ignore[no-any-return]

        return run

    statements = traced(db)
    try:
        outcomes = await asyncio.gather(
            *(db.write(counted(v, fail=v % 2 == 1)) for v in range(200)),  # type: ignore[arg-type]
            return_exceptions=True,
        )
    finally:
        untraced(db)
    assert [v for v, o in enumerate(outcomes) if isinstance(o, ValueError)] == list(
        range(1, 200, 2)
    )
    assert max(runs.values()) <= 2
    assert all(runs[v] == 1 for v in range(1, 200, 2))
    # Every transaction begun ends, committed or rolled back; the failing write's own rows
    # were rolled back with it.
    ended = sum(s in ("COMMIT", "ROLLBACK") for s in statements)
    assert sum(s.startswith("BEGIN") for s in statements) == ended
    assert await db.read(values) == [-1, *range(0, 200, 2)]


async def test_a_write_that_goes_on_after_its_transaction_was_lost_is_not_done(
    db: SqliteDatabase,
) -> None:
    """A write that swallows what made SQLite roll the transaction back and returns: neither
    it nor the writes before it in that transaction are reported done."""

    def swallow(conn: sqlite3.Connection) -> str:
        conn.execute("ROLLBACK")  # as SQLite does on a full disk, caught and ignored
        return "ok"

    outcomes = await asyncio.gather(
        db.write(insert(1)), db.write(swallow), db.write(insert(3)), return_exceptions=True
    )
    assert isinstance(outcomes[0], StoreError)
    assert isinstance(outcomes[1], StoreError)
    assert outcomes[2] == 3
    assert await db.read(values) == [3]


async def test_writes_queued_in_a_loop_turn_yield_to_the_thread_once(
    db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop gives the core to the database's thread once in a turn in which it queued
    writes (so they run before the GIL's switch interval runs out); reads never yield."""
    from clave.platform import sqlite as module

    yields: list[int] = []
    monkeypatch.setattr(module, "_sched_yield", lambda: yields.append(1))
    await db.read(values)
    assert yields == []
    await asyncio.gather(*(db.write(insert(v)) for v in range(10)))
    assert yields == [1]
    await db.write(insert(10))  # a later turn: due again
    assert yields == [1, 1]
    # A loop closed before its turn came (a yield due there never ran) leaves none due here.
    assert db._thread is not None
    closed = asyncio.new_event_loop()
    closed.close()
    db._thread._nudging = closed
    await db.write(insert(11))
    assert yields == [1, 1, 1]
    assert await db.read(values) == list(range(12))


async def test_a_caller_that_stops_waiting_does_not_undo_its_write(db: SqliteDatabase) -> None:
    task = asyncio.ensure_future(db.write(insert(5)))
    await asyncio.sleep(0)
    task.cancel()
    assert await db.read(values) == [5]


async def test_calls_after_close_are_refused(tmp_path: Path) -> None:
    database = SqliteDatabase(tmp_path / "c.db", SCHEMA)
    await database.open()
    await database.write(insert(1))
    await database.close()
    with pytest.raises(StoreError, match="not open"):
        await database.read(values)
    # Reopened, it has what was committed.
    await database.open()
    try:
        assert await database.read(values) == [1]
    finally:
        await database.close()


async def test_a_call_raising_stop_iteration_hangs_no_one(db: SqliteDatabase) -> None:
    """A future refuses StopIteration: the call fails with a RuntimeError instead, and the
    calls handed back with it are answered."""

    def first_row_of_nothing(conn: sqlite3.Connection) -> int:
        return int(next(iter(conn.execute("SELECT value FROM n WHERE value < 0")))[0])

    outcomes = await asyncio.wait_for(
        asyncio.gather(
            db.write(insert(1)),
            db.write(first_row_of_nothing),
            db.write(insert(2)),
            db.read(values),
            return_exceptions=True,
        ),
        timeout=5,
    )
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], RuntimeError)
    assert outcomes[2] == 2
    assert outcomes[3] == [1, 2]


async def test_a_database_that_cannot_be_opened_leaves_no_thread(tmp_path: Path) -> None:
    import threading

    (tmp_path / "file").write_text("not a directory")
    database = SqliteDatabase(tmp_path / "file" / "unopenable.db", SCHEMA)
    with pytest.raises(OSError, match="file"):
        await database.open()
    assert not [t for t in threading.enumerate() if "unopenable" in t.name]


def test_no_schema_defers_a_constraint_to_commit() -> None:
    """A constraint checked at COMMIT would fail every write sharing the transaction."""
    source = Path(__file__).parents[2] / "src" / "clave"
    offenders = [
        str(path.relative_to(source))
        for path in source.rglob("*.py")
        if path.name != "sqlite.py" and "deferrable" in path.read_text().lower()
    ]
    assert offenders == []
