"""Tenants and their API keys in SQLite: the TenantStore half of SqliteVerificationStore."""

from __future__ import annotations

import sqlite3
from typing import Any

from clave.platform.sqlite import SqliteDatabase
from clave.verify.errors import ServiceNameTaken
from clave.verify.models import ApiKey, Service
from clave.verify.store.encoding import decode_policy, encode_policy

_SERVICE_COLUMNS = "id, name, policy, created_at, accounts"
_KEY_COLUMNS = "id, service_id, key_hash, created_at, name, expires_at, revoked_at, last_used_at"


def _service(row: Any) -> Service:
    return Service(
        id=row[0],
        name=row[1],
        policy=decode_policy(row[2]),
        created_at=row[3],
        accounts=frozenset(a for a in row[4].split(",") if a),
    )


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row[0],
        service_id=row[1],
        key_hash=bytes(row[2]),
        created_at=row[3],
        name=row[4],
        expires_at=row[5],
        revoked_at=row[6],
        last_used_at=row[7],
    )


class SqliteTenants:
    """TenantStore on the `services` and `api_keys` tables of an open SqliteDatabase."""

    _db: SqliteDatabase

    async def put_service(self, service: Service) -> None:
        """Insert or update by id."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO services ({_SERVICE_COLUMNS}) VALUES (?,?,?,?,?) "  # noqa: S608
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                "policy = excluded.policy, accounts = excluded.accounts",
                (
                    service.id,
                    service.name,
                    encode_policy(service.policy).decode(),
                    service.created_at,
                    ",".join(sorted(service.accounts)),
                ),
            )

        try:
            await self._db.write(run)
        except Exception as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise ServiceNameTaken(f"service name {service.name!r} is taken") from exc
            raise

    async def get_service(self, service_id: str) -> Service | None:
        """A service by id."""
        return await self._one_service("id", service_id)

    async def get_service_by_name(self, name: str) -> Service | None:
        """A service by name."""
        return await self._one_service("name", name)

    async def _one_service(self, column: str, value: str) -> Service | None:
        sql = f"SELECT {_SERVICE_COLUMNS} FROM services WHERE {column} = ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> Service | None:
            row = conn.execute(sql, (value,)).fetchone()
            return _service(row) if row else None

        return await self._db.read(run)

    async def list_services(self) -> list[Service]:
        """Every service, by name."""
        sql = f"SELECT {_SERVICE_COLUMNS} FROM services ORDER BY name"  # noqa: S608
        return await self._db.read(lambda conn: [_service(r) for r in conn.execute(sql)])

    async def add_api_key(self, key: ApiKey) -> None:
        """Store the key."""
        await self._db.write(
            lambda conn: conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",  # noqa: S608
                (
                    key.id,
                    key.service_id,
                    key.key_hash,
                    key.created_at,
                    key.name,
                    key.expires_at,
                    key.revoked_at,
                    key.last_used_at,
                ),
            )
        )

    async def list_api_keys(self, service_id: str | None = None) -> list[ApiKey]:
        """See TenantStore.list_api_keys."""
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys"  # noqa: S608
        if service_id is not None:
            sql += " WHERE service_id = ?"
        sql += " ORDER BY created_at, id"
        args = (service_id,) if service_id is not None else ()
        return await self._db.read(lambda conn: [_key(r) for r in conn.execute(sql, args)])

    async def revoke_api_key(self, key_id: str, *, now: float) -> bool:
        """See TenantStore.revoke_api_key."""

        def run(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (now, key_id),
                ).rowcount
                == 1
            )

        return await self._db.write(run)

    async def touch_api_key(self, key_id: str, *, now: float) -> None:
        """See TenantStore.touch_api_key."""
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id)
            )
        )

    async def delete_service(self, service_id: str) -> bool:
        """Delete a service; its keys and verifications go with it (ON DELETE CASCADE)."""

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM services WHERE id = ?", (service_id,)).rowcount > 0

        return await self._db.write(run)

    async def key_for_hash(self, key_hash: bytes) -> tuple[ApiKey, Service] | None:
        """See TenantStore.key_for_hash; one query."""
        key_columns = ", ".join("k." + c.strip() for c in _KEY_COLUMNS.split(","))
        service_columns = ", ".join("s." + c.strip() for c in _SERVICE_COLUMNS.split(","))
        sql = (
            f"SELECT {key_columns}, {service_columns} "  # noqa: S608
            "FROM api_keys k JOIN services s ON s.id = k.service_id WHERE k.key_hash = ?"
        )
        width = len(_KEY_COLUMNS.split(","))

        def run(conn: sqlite3.Connection) -> tuple[ApiKey, Service] | None:
            row = conn.execute(sql, (key_hash,)).fetchone()
            return (_key(row[:width]), _service(row[width:])) if row else None

        return await self._db.read(run)
