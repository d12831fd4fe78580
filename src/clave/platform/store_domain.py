"""The life cycle shared by domains that are one store, one service and some clients."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from litestar.types import ControllerRouterHandler

from clave.platform.errors import ExceptionHandler
from clave.platform.lean import LeanRoute
from clave.platform.openapi_errors import ErrorTable, FormTable
from clave.platform.settings import DEFAULT_POOL_SIZE
from clave.platform.sql import Migrations, SqlDatabase, SqliteSql
from clave.platform.urls import redacted

T = TypeVar("T")


class _Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...


class _Client(Protocol):
    async def aclose(self) -> None: ...


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
        # Imported here: asyncpg costs a worker ~3 MiB, which a SQLite deployment never needs.
        from clave.platform.postgres import PostgresSql

        return PostgresSql(url, component, migrations, max_size=pool_size)
    raise ValueError(f"unsupported database URL for {component}: {redacted(url)!r}")


def choose_store(
    url: str,
    data_dir: Path,
    component: str,
    migrations: Migrations,
    memory: Callable[[], T],
    sql: Callable[[SqlDatabase], T],
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> T:
    """The store a `CLAVE_<DOMAIN>_DB` value names: in memory, or SQL on SQLite/PostgreSQL."""
    if url == "memory":
        return memory()
    database = open_database(
        url, data_dir=data_dir, component=component, migrations=migrations, pool_size=pool_size
    )
    return sql(database)


async def prepare_seeded(store: Any, rows: Sequence[Any], *, seed: bool) -> None:
    """Migrate a store (and seed it when asked) once, before worker processes start."""
    await store.open()
    try:
        if seed:
            await store.seed(rows, now=time.time())
    finally:
        await store.close()


class StoreDomain:
    """Opens the store (and seeds it when asked) on start, closes store and clients on stop."""

    name = "domain"

    def __init__(self, store: Any, clients: Sequence[_Client], *, seed: bool) -> None:
        self.store: _Store = store
        self._clients = list(clients)
        self._seed = seed

    async def seed(self) -> None:
        """Insert the domain's sample data (once in the life of its store)."""

    async def open(self) -> None:
        """Connect (migrating the schema) and seed when CLAVE_SEED is on."""
        await self.store.open()
        if self._seed:
            await self.seed()

    async def start(self) -> None:
        """Connect."""
        await self.open()

    async def stop(self) -> None:
        """Close clients and the store."""
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.aclose()
        await self.store.close()

    async def ready(self) -> None:
        """Raise unless the store answers."""
        await self.store.ping()

    def route_handlers(self) -> Sequence[ControllerRouterHandler]:
        """The domain's routes."""
        raise NotImplementedError

    def lean_routes(self) -> Sequence[LeanRoute]:
        """None by default: every route goes through the framework."""
        return ()

    @property
    def openapi_errors(self) -> ErrorTable:
        """None beyond the rules."""
        return {}

    @property
    def openapi_forms(self) -> FormTable:
        """No form bodies."""
        return {}

    @property
    def error_renderers(self) -> Mapping[str, ExceptionHandler]:
        """None of its own: every error renders in the native shape."""
        return {}
