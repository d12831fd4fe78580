"""One SQL interface over SQLite (embedded) and PostgreSQL (production).

A forum store is written once, in SQL with `$1`-style parameters that both databases accept
(SQLite receives them as `?1`). Only the schema differs per dialect. Two hand-kept copies of
the same queries would drift; one copy run against both backends by the same contract suite
cannot.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from clave.platform.errors import StoreError
from clave.platform.settings import DEFAULT_POOL_SIZE
from clave.platform.sqlite import SqliteDatabase
from clave.platform.urls import redacted

Row = dict[str, Any]
T = TypeVar("T")
Migrations = Mapping[str, Sequence[str]]  # dialect -> ordered migration scripts

_PARAM = re.compile(r"\$(\d+)")
log = logging.getLogger(__name__)


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
        query = _PARAM.sub(r"?\1", sql)
        return await self._guard(self._db.read(lambda conn: _rows(conn.execute(query, args))))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row."""
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> int:
        """One statement in its own transaction."""
        query = _PARAM.sub(r"?\1", sql)
        return await self._guard(self._db.write(lambda conn: conn.execute(query, args).rowcount))

    async def executemany(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Statements in one IMMEDIATE transaction."""
        prepared = [(_PARAM.sub(r"?\1", sql), tuple(args)) for sql, args in statements]

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


async def create_database(url: str) -> None:
    """Create the database a PostgreSQL URL names, connecting to `postgres` on the same server
    as the same user (needs CREATEDB). A database per domain then needs no set-up step: a new
    server, a compose volume or an RDS instance gets them on first start. Workers starting
    together may race; the loser finds it there."""
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if not PLAIN_IDENTIFIER.fullmatch(name):
        raise StoreError(f"will not create PostgreSQL database {name!r}: not a plain identifier")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        log.info("created PostgreSQL database %s", name)
    except asyncpg.DuplicateDatabaseError:
        pass
    except asyncpg.InsufficientPrivilegeError as exc:
        # A domain's own user (NOCREATEDB): its database is the admin's to make.
        raise StoreError(
            f"cannot create PostgreSQL database {name}: its user may not; create it with "
            "`clave db init` as the admin user"
        ) from exc
    finally:
        await conn.close()


class PostgresSql:
    """SqlDatabase on PostgreSQL through an asyncpg pool."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        component: str,
        migrations: Migrations,
        *,
        max_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self._url = url
        self._component = component
        self._migrations = tuple(migrations["postgres"])
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the pool and migrate under an advisory lock (workers start together)."""
        if self._pool is not None:
            return
        try:
            try:
                self._pool = await self._connect()
            except asyncpg.InvalidCatalogNameError:
                await create_database(self._url)
                self._pool = await self._connect()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL for {self._component}: {exc}") from exc
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", "clave:" + self._component
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS clave_schema "
                "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            current = await conn.fetchval(
                "SELECT version FROM clave_schema WHERE component = $1", self._component
            )
            version = current or 0
            for number, script in enumerate(self._migrations[version:], start=version + 1):
                await conn.execute(script)
                await conn.execute(
                    "INSERT INTO clave_schema (component, version) VALUES ($1, $2) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    self._component,
                    number,
                )

    async def _connect(self) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self._url, min_size=1, max_size=self._max_size, timeout=10, command_timeout=30
        )

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.wait_for(pool.close(), 10)

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the database is not open")
        return self._pool

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Every row."""
        return await self._guard(self._fetch(sql, args))

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Row]:
        return [dict(r) for r in await self._ready().fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row."""
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> int:
        """One statement; its row count from the command tag."""
        status = str(await self._guard(self._ready().execute(sql, *args)))
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Statements in one transaction."""

        async def run() -> None:
            async with self._ready().acquire() as conn, conn.transaction():
                for sql, args in statements:
                    await conn.execute(sql, *args)

        await self._guard(run())

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityViolation(str(exc)) from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise StoreError(f"PostgreSQL error ({self._component}): {exc}") from exc


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


def open_database(
    url: str,
    *,
    data_dir: Path,
    component: str,
    migrations: Migrations,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> SqlDatabase:
    """The database a `CLAVE_<DOMAIN>_DB` value names: sqlite, sqlite:///path or postgresql://...
    (`pool_size` connections at most: CLAVE_DB_POOL_SIZE)."""
    if url == "sqlite":
        return SqliteSql(data_dir / f"{component}.db", migrations)
    if url.startswith("sqlite:///"):
        return SqliteSql(url.removeprefix("sqlite:///"), migrations)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresSql(url, component, migrations, max_size=pool_size)
    raise ValueError(f"unsupported database URL for {component}: {redacted(url)!r}")


def valid_database_url(url: str) -> bool:
    """Whether `open_database` accepts `url` (or `memory`, handled by the domain)."""
    return url in ("sqlite", "memory") or url.startswith(
        ("sqlite:///", "postgresql://", "postgres://")
    )
