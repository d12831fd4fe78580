"""A domain's PostgreSQL database is created on first start, so no set-up step is needed."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from clave.platform.errors import StoreError
from clave.platform.postgres import PostgresSql, create_database

MIGRATIONS = {"postgres": ["CREATE TABLE item (id INTEGER PRIMARY KEY)"], "sqlite": []}


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _databases(url: str) -> set[str]:
    conn = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()


async def _drop(url: str, name: str) -> None:
    conn = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()


async def test_a_missing_database_is_created_and_migrated(postgres_url: str) -> None:
    name = f"clave_new_{secrets.token_hex(4)}"
    url = _with_database(postgres_url, name)
    assert name not in await _databases(postgres_url)
    first, second = PostgresSql(url, "thing", MIGRATIONS), PostgresSql(url, "thing", MIGRATIONS)
    try:
        await first.open()
        await second.open()  # already there: opens, migrates nothing twice
        assert name in await _databases(postgres_url)
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT version FROM clave_schema") == 1
            assert await conn.fetchval("SELECT count(*) FROM item") == 0
        finally:
            await conn.close()
    finally:
        await first.close()
        await second.close()
        await _drop(postgres_url, name)


async def test_racing_creators_both_succeed(postgres_url: str) -> None:
    name = f"clave_race_{secrets.token_hex(4)}"
    url = _with_database(postgres_url, name)
    try:
        await create_database(url)
        await create_database(url)  # the loser of a race finds it there
        assert name in await _databases(postgres_url)
    finally:
        await _drop(postgres_url, name)


@pytest.mark.parametrize("name", ['x"; DROP DATABASE test; --', "1abc", ""])
async def test_only_plain_names_are_created(postgres_url: str, name: str) -> None:
    with pytest.raises(StoreError, match="not a plain identifier"):
        await create_database(_with_database(postgres_url, name))
