"""Tenants, their API keys and the safe list in SQLite: the TenantStore and SafeList half of
SqliteVerificationStore."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from clave.platform.sqlite import SqliteDatabase
from clave.verify.errors import TenantNameTaken
from clave.verify.models import ApiKey, SafeNumber, Tenant
from clave.verify.store.encoding import (
    LEGACY_FIELDS,
    current_policy,
    encode_policy,
    legacy_fields,
)

_TENANT_COLUMNS = "id, name, policy, created_at, accounts, updated_at, " + ", ".join(LEGACY_FIELDS)
_KEY_COLUMNS = "id, service_id, key_hash, created_at, name, expires_at, revoked_at, last_used_at"


def _tenant(row: Any) -> Tenant:
    return Tenant(
        id=row[0],
        name=row[1],
        policy=current_policy(row[2], dict(zip(LEGACY_FIELDS, row[6:], strict=True))),
        created_at=row[3],
        accounts=frozenset(a for a in row[4].split(",") if a),
        updated_at=row[5],
    )


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row[0],
        tenant_id=row[1],
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

    async def put_tenant(self, tenant: Tenant) -> None:
        """Insert or update by id."""

        def run(conn: sqlite3.Connection) -> None:
            legacy = legacy_fields(tenant.policy)
            marks = ",".join("?" * (6 + len(LEGACY_FIELDS)))
            changed = ("policy", "updated_at", *LEGACY_FIELDS)
            updates = ", ".join(f"{c} = excluded.{c}" for c in changed)
            conn.execute(
                f"INSERT INTO services ({_TENANT_COLUMNS}) VALUES ({marks}) "  # noqa: S608
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                f"accounts = excluded.accounts, {updates}",
                (
                    tenant.id,
                    tenant.name,
                    encode_policy(tenant.policy).decode(),
                    tenant.created_at,
                    ",".join(sorted(tenant.accounts)),
                    tenant.updated_at,
                    *(legacy[c] for c in LEGACY_FIELDS),
                ),
            )

        try:
            await self._db.write(run)
        except Exception as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise TenantNameTaken(f"service name {tenant.name!r} is taken") from exc
            raise

    async def change_tenant(
        self, tenant_id: str, change: Callable[[Tenant], Tenant]
    ) -> Tenant | None:
        """Read, change and write in one write transaction (SQLite has one writer)."""
        select = f"SELECT {_TENANT_COLUMNS} FROM services WHERE id = ?"  # noqa: S608
        sets = ", ".join(f"{c} = ?" for c in ("policy", "accounts", "updated_at", *LEGACY_FIELDS))
        update = f"UPDATE services SET {sets} WHERE id = ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> Tenant | None:
            row = conn.execute(select, (tenant_id,)).fetchone()
            if row is None:
                return None
            found = _tenant(row)
            changed = change(found)
            legacy = legacy_fields(changed.policy)
            conn.execute(
                update,
                (
                    encode_policy(changed.policy).decode(),
                    ",".join(sorted(changed.accounts)),
                    changed.updated_at,
                    *(legacy[c] for c in LEGACY_FIELDS),
                    tenant_id,
                ),
            )
            return replace(
                found,
                policy=changed.policy,
                accounts=changed.accounts,
                updated_at=changed.updated_at,
            )

        return await self._db.write(run)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        return await self._one_tenant("id", tenant_id)

    async def get_tenant_by_name(self, name: str) -> Tenant | None:
        """A tenant by name."""
        return await self._one_tenant("name", name)

    async def _one_tenant(self, column: str, value: str) -> Tenant | None:
        sql = f"SELECT {_TENANT_COLUMNS} FROM services WHERE {column} = ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> Tenant | None:
            row = conn.execute(sql, (value,)).fetchone()
            return _tenant(row) if row else None

        return await self._db.read(run)

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        sql = f"SELECT {_TENANT_COLUMNS} FROM services ORDER BY name"  # noqa: S608
        return await self._db.read(lambda conn: [_tenant(r) for r in conn.execute(sql)])

    async def add_api_key(self, key: ApiKey) -> None:
        """Store the key."""
        await self._db.write(
            lambda conn: conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",  # noqa: S608
                (
                    key.id,
                    key.tenant_id,
                    key.key_hash,
                    key.created_at,
                    key.name,
                    key.expires_at,
                    key.revoked_at,
                    key.last_used_at,
                ),
            )
        )

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """See TenantStore.list_api_keys."""
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys"  # noqa: S608
        if tenant_id is not None:
            sql += " WHERE service_id = ?"
        sql += " ORDER BY created_at, id"
        args = (tenant_id,) if tenant_id is not None else ()
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

    async def delete_tenant(self, tenant_id: str) -> bool:
        """Delete a tenant; its keys and verifications go with it (ON DELETE CASCADE)."""

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM services WHERE id = ?", (tenant_id,)).rowcount > 0

        return await self._db.write(run)

    async def key_for_hash(self, key_hash: bytes) -> tuple[ApiKey, Tenant] | None:
        """See TenantStore.key_for_hash; one query."""
        key_columns = ", ".join("k." + c.strip() for c in _KEY_COLUMNS.split(","))
        tenant_columns = ", ".join("s." + c.strip() for c in _TENANT_COLUMNS.split(","))
        sql = (
            f"SELECT {key_columns}, {tenant_columns} "  # noqa: S608
            "FROM api_keys k JOIN services s ON s.id = k.service_id WHERE k.key_hash = ?"
        )
        width = len(_KEY_COLUMNS.split(","))

        def run(conn: sqlite3.Connection) -> tuple[ApiKey, Tenant] | None:
            row = conn.execute(sql, (key_hash,)).fetchone()
            return (_key(row[:width]), _tenant(row[width:])) if row else None

        return await self._db.read(run)

    async def add_safe_number(self, entry: SafeNumber) -> SafeNumber:
        """See SafeList.add_safe_number."""

        def run(conn: sqlite3.Connection) -> SafeNumber:
            conn.execute(
                "INSERT OR IGNORE INTO safe_numbers (owner, number, sid, created_at) "
                "VALUES (?, ?, ?, ?)",
                (entry.owner, entry.number, entry.sid, entry.created_at),
            )
            return _safe_number(
                conn.execute(
                    f"SELECT {_SAFE_COLUMNS} FROM safe_numbers WHERE owner = ? AND number = ?",  # noqa: S608
                    (entry.owner, entry.number),
                ).fetchone()
            )

        return await self._db.write(run)

    async def get_safe_number(self, owner: str, number: str) -> SafeNumber | None:
        """See SafeList.get_safe_number."""
        row = await self._db.read(
            lambda conn: conn.execute(
                f"SELECT {_SAFE_COLUMNS} FROM safe_numbers WHERE owner = ? AND number = ?",  # noqa: S608
                (owner, number),
            ).fetchone()
        )
        return None if row is None else _safe_number(row)

    async def remove_safe_number(self, owner: str, number: str) -> bool:
        """See SafeList.remove_safe_number."""
        removed = await self._db.write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM safe_numbers WHERE owner = ? AND number = ?", (owner, number)
                ).rowcount
            )
        )
        return bool(removed)

    async def list_safe_numbers(self, owner: str) -> list[SafeNumber]:
        """See SafeList.list_safe_numbers."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                f"SELECT {_SAFE_COLUMNS} FROM safe_numbers WHERE owner = ? ORDER BY number",  # noqa: S608
                (owner,),
            ).fetchall()
        )
        return [_safe_number(row) for row in rows]

    async def is_safe(self, owners: Collection[str], number: str) -> bool:
        """See SafeList.is_safe."""
        owners = list(owners)
        if not owners:
            return False
        marks = ",".join("?" * len(owners))
        row = await self._db.read(
            lambda conn: conn.execute(
                f"SELECT 1 FROM safe_numbers WHERE number = ? AND owner IN ({marks})",  # noqa: S608
                (number, *owners),
            ).fetchone()
        )
        return row is not None


_SAFE_COLUMNS = "sid, owner, number, created_at"


def _safe_number(row: Any) -> SafeNumber:
    return SafeNumber(sid=row[0], owner=row[1], number=row[2], created_at=row[3])
