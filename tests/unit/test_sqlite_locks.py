"""Waiting for SQLite's write lock: clave waits itself (short steps), up to the busy timeout."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from clave.platform.errors import StoreError
from clave.platform.sqlite import SqliteDatabase

SCHEMA = ("CREATE TABLE n (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)",)


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another process's worker, as far as SQLite can tell: a connection holding the lock."""
    taken = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO n (value) VALUES (1)")
        taken.set()
        threading.Event().wait(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    taken.wait()
    return thread


def insert(conn: sqlite3.Connection) -> int:
    conn.execute("INSERT INTO n (value) VALUES (2)")
    return int(conn.execute("SELECT count(*) FROM n").fetchone()[0])


async def test_a_write_waits_for_the_lock_and_then_goes_through(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "n.db", SCHEMA, busy_timeout_ms=5000)
    await db.open()
    try:
        holder = hold_write_lock(tmp_path / "n.db", 0.2)
        # Both rows: the holder's, committed when it let go, then this one.
        assert await db.write(insert) == 2
        holder.join()
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM n").fetchone()[0]) == 2
    finally:
        await db.close()


async def test_a_lock_held_past_the_busy_timeout_is_a_store_error(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "n.db", SCHEMA, busy_timeout_ms=100)
    await db.open()
    try:
        holder = hold_write_lock(tmp_path / "n.db", 1.0)
        with pytest.raises(StoreError, match="locked"):
            await db.write(insert)
        holder.join()
        # Nothing of the refused write stayed, and the connection still works.
        assert await db.write(insert) == 2
    finally:
        await db.close()
