"""PostgreSQL for the forum domains: `SqlDatabase` (sql.py) on an asyncpg pool, and the
database a URL names created on first start. A module of its own so that a deployment on SQLite
never loads asyncpg."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from clave.platform.errors import StoreError
from clave.platform.settings import DEFAULT_POOL_SIZE
from clave.platform.sql import PLAIN_IDENTIFIER, IntegrityViolation, Migrations, Row

T = TypeVar("T")
log = logging.getLogger(__name__)


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
