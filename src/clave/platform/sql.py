"""One SQL interface over SQLite (embedded) and PostgreSQL (production).

A forum store is written once, in SQL with `$1`-style parameters that both databases accept
(SQLite receives them as `?1`). Only the schema differs per dialect. Two hand-kept copies of
the same queries would drift; one copy run against both backends by the same contract suite
cannot. This module holds the interface, its SQLite side and the stores' shared base;
postgres.py the PostgreSQL side, loaded only for a postgresql:// URL (store_domain.open_database
chooses).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from clave.platform.errors import StoreError
from clave.platform.sqlite import SqliteDatabase

Row = dict[str, Any]
T = TypeVar("T")
Migrations = Mapping[str, Sequence[str]]  # dialect -> ordered migration scripts

_PARAM = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=512)
def _sqlite_query(sql: str) -> str:
    """PostgreSQL's numbered parameters ($1) as SQLite's (?1). Kept: the stores' statements
    are a few constants, and rewriting one took 1.7 us of every query (30 ns from here)."""
    return _PARAM.sub(r"?\1", sql)


class IntegrityViolation(Exception):
    """A unique or foreign-key constraint refused a write."""


class SqlDatabase(Protocol):
    """The few operations a store needs, the same on every backend."""

    dialect: str

    async def open(self) -> None:
        """Connect and bring the schema up to date."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Every row of a query."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""
        ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def executemany(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run statements in one transaction."""
        ...


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class SqliteSql:
    """SqlDatabase on a SQLite file (WAL, its own thread; see platform.sqlite)."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, migrations: Migrations) -> None:
        self._db = SqliteDatabase(path, migrations["sqlite"])

    async def open(self) -> None:
        """Open and migrate."""
        await self._db.open()

    async def close(self) -> None:
        """Close."""
        await self._db.close()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Every row."""
        query = _sqlite_query(sql)
        return await self._guard(self._db.read(lambda conn: _rows(conn.execute(query, args))))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row."""
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> int:
        """One statement in its own transaction."""
        query = _sqlite_query(sql)
        return await self._guard(self._db.write(lambda conn: conn.execute(query, args).rowcount))

    async def executemany(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Statements in one IMMEDIATE transaction."""
        prepared = [(_sqlite_query(sql), tuple(args)) for sql, args in statements]

        def run(conn: sqlite3.Connection) -> None:
            for query, args in prepared:
                conn.execute(query, args)

        await self._guard(self._db.write(run))

    @staticmethod
    async def _guard(awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise IntegrityViolation(str(exc.__cause__)) from exc
            raise


# A database or role name clave creates: written into SQL (which takes no parameters there), so
# nothing that would need quoting beyond the double quotes it gets.
PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def sync_identity(db: SqlDatabase, table: str) -> list[tuple[str, Sequence[Any]]]:
    """After rows were inserted with explicit ids, move PostgreSQL's identity sequence past
    them (SQLite's AUTOINCREMENT keeps its own high-water mark)."""
    if db.dialect != "postgres":
        return []
    # `table` is a constant of the calling store, never input.
    sequence = f"pg_get_serial_sequence('{table}', 'id')"
    return [(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))", ())]  # noqa: S608


class SqlStore:
    """What every SQL store shares: its database's life cycle, and seeding sample rows once."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def open(self) -> None:
        """Connect and migrate."""
        await self._db.open()

    async def close(self) -> None:
        """Disconnect."""
        await self._db.close()

    async def ping(self) -> None:
        """A trivial query."""
        await self._db.fetchrow("SELECT 1 AS ok")

    async def _seed_once(
        self, component: str, table: str, insert: str, rows: Sequence[Sequence[Any]]
    ) -> bool:
        """Insert `rows` (ids included) with `insert`, once in the life of the database: a
        marker row makes a second call, or a concurrent one, a no-op."""
        marker = await self._db.fetchrow(
            "SELECT component FROM seeded WHERE component = $1", component
        )
        if marker:
            return False
        statements: list[tuple[str, Sequence[Any]]] = [
            ("INSERT INTO seeded (component) VALUES ($1)", (component,))
        ]
        statements += [(insert, row) for row in rows]
        statements += sync_identity(self._db, table)
        try:
            await self._db.executemany(statements)
        except IntegrityViolation:
            return False  # seeded concurrently by another process
        return True
