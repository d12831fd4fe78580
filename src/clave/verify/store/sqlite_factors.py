"""Authenticator-app factors in SQLite: the FactorStore half of SqliteVerificationStore."""

from __future__ import annotations

import sqlite3
from typing import Any

from clave.platform.sqlite import SqliteDatabase
from clave.verify.factor_models import Challenge, Entity, Factor, FactorStatus, Sealed
from clave.verify.totp import TotpSettings

_COLUMNS = (
    "id, service_id, entity, friendly_name, status, key_id, nonce, secret, time_step, "
    "code_length, skew, last_step, created_at, updated_at"
)


_CHALLENGE_COLUMNS = "sid, service_id, identity, factor_id, status, created_at, updated_at"


def _factor(row: Any) -> Factor:
    return Factor(
        id=row[0],
        tenant_id=row[1],
        entity=row[2],
        friendly_name=row[3],
        status=FactorStatus(row[4]),
        secret=Sealed(row[5], bytes(row[6]), bytes(row[7])),
        totp=TotpSettings(time_step=row[8], code_length=row[9], skew=row[10]),
        last_step=row[11],
        created_at=row[12],
        updated_at=row[13],
    )


def _event(conn: sqlite3.Connection, kind: str, factor_id: str, tenant_id: str, now: float) -> None:
    conn.execute(
        "INSERT INTO events (verification_id, service_id, type, occurred_at, next_attempt_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (factor_id, tenant_id, kind, now, now),
    )


class SqliteFactors:
    """FactorStore on the `factors` table of an open SqliteDatabase."""

    _db: SqliteDatabase
    _events: bool

    async def add_factor(self, factor: Factor) -> None:
        """Store a new factor."""
        f = factor
        row = (
            f.id,
            f.tenant_id,
            f.entity,
            f.friendly_name,
            f.status.value,
            f.secret.key_id,
            f.secret.nonce,
            f.secret.ciphertext,
            f.totp.time_step,
            f.totp.code_length,
            f.totp.skew,
            f.last_step,
            f.created_at,
            f.updated_at,
        )
        sql = f"INSERT INTO factors ({_COLUMNS}) VALUES ({','.join('?' * len(row))})"  # noqa: S608
        await self._db.write(lambda conn: conn.execute(sql, row))

    async def get_factor(self, tenant_id: str, factor_id: str) -> Factor | None:
        """A factor of the tenant."""
        sql = f"SELECT {_COLUMNS} FROM factors WHERE id = ? AND service_id = ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> Factor | None:
            row = conn.execute(sql, (factor_id, tenant_id)).fetchone()
            return _factor(row) if row else None

        return await self._db.read(run)

    async def list_factors(self, tenant_id: str, entity: str) -> list[Factor]:
        """The entity's factors, oldest first."""
        sql = (
            f"SELECT {_COLUMNS} FROM factors WHERE service_id = ? AND entity = ? "  # noqa: S608
            "ORDER BY created_at, id"
        )
        return await self._db.read(
            lambda conn: [_factor(r) for r in conn.execute(sql, (tenant_id, entity))]
        )

    async def delete_factor(self, tenant_id: str, factor_id: str) -> bool:
        """Delete a factor of the tenant."""
        sql = "DELETE FROM factors WHERE id = ? AND service_id = ?"
        return bool(
            await self._db.write(lambda conn: conn.execute(sql, (factor_id, tenant_id)).rowcount)
        )

    async def accept_step(
        self, tenant_id: str, factor_id: str, step: int, *, now: float, event: str
    ) -> Factor | None:
        """One conditional UPDATE: only a newer step moves the factor."""
        events = self._events

        def run(conn: sqlite3.Connection) -> Factor | None:
            changed = conn.execute(
                "UPDATE factors SET last_step = ?, status = ?, updated_at = ? "
                "WHERE id = ? AND service_id = ? AND last_step < ?",
                (step, FactorStatus.VERIFIED.value, now, factor_id, tenant_id, step),
            ).rowcount
            if not changed:
                return None
            if events:  # in the same transaction as the change
                _event(conn, event, factor_id, tenant_id, now)
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM factors WHERE id = ?",  # noqa: S608
                (factor_id,),
            ).fetchone()
            return _factor(row)

        return await self._db.write(run)

    async def record_factor_event(
        self, tenant_id: str, factor_id: str, event: str, *, now: float
    ) -> None:
        """Record `event` about the factor."""
        if self._events:
            await self._db.write(lambda conn: _event(conn, event, factor_id, tenant_id, now))

    async def all_factors(self) -> list[Factor]:
        """Every factor."""
        sql = f"SELECT {_COLUMNS} FROM factors ORDER BY created_at, id"  # noqa: S608
        return await self._db.read(lambda conn: [_factor(r) for r in conn.execute(sql)])

    async def replace_secret(self, factor: Factor, secret: Sealed) -> bool:
        """Swap the sealed secret if it is still the one read."""
        old = factor.secret
        sql = (
            "UPDATE factors SET key_id = ?, nonce = ?, secret = ? "
            "WHERE id = ? AND key_id = ? AND nonce = ? AND secret = ?"
        )
        params = (
            secret.key_id,
            secret.nonce,
            secret.ciphertext,
            factor.id,
            old.key_id,
            old.nonce,
            old.ciphertext,
        )
        return bool(await self._db.write(lambda conn: conn.execute(sql, params).rowcount))

    async def add_entity(self, entity: Entity) -> Entity:
        """Insert unless the identity has one; the one stored."""
        e = entity

        def run(conn: sqlite3.Connection) -> Entity:
            conn.execute(
                "INSERT INTO entities (sid, service_id, identity, created_at) VALUES (?,?,?,?) "
                "ON CONFLICT (service_id, identity) DO NOTHING",
                (e.sid, e.tenant_id, e.identity, e.created_at),
            )
            row = conn.execute(
                "SELECT sid, service_id, identity, created_at FROM entities "
                "WHERE service_id = ? AND identity = ?",
                (e.tenant_id, e.identity),
            ).fetchone()
            return Entity(*row)

        return await self._db.write(run)

    async def get_entity(self, tenant_id: str, identity: str) -> Entity | None:
        """The tenant's entity of that identity."""
        sql = (
            "SELECT sid, service_id, identity, created_at FROM entities "
            "WHERE service_id = ? AND identity = ?"
        )

        def run(conn: sqlite3.Connection) -> Entity | None:
            row = conn.execute(sql, (tenant_id, identity)).fetchone()
            return Entity(*row) if row else None

        return await self._db.read(run)

    async def list_entities(self, tenant_id: str) -> list[Entity]:
        """The tenant's entities, oldest first."""
        sql = (
            "SELECT sid, service_id, identity, created_at FROM entities "
            "WHERE service_id = ? ORDER BY created_at, sid"
        )
        return await self._db.read(
            lambda conn: [Entity(*r) for r in conn.execute(sql, (tenant_id,))]
        )

    async def delete_entity(self, tenant_id: str, identity: str) -> bool:
        """The entity, its factors and its challenges, in one transaction."""

        def run(conn: sqlite3.Connection) -> bool:
            key = (tenant_id, identity)
            gone = conn.execute(
                "DELETE FROM entities WHERE service_id = ? AND identity = ?", key
            ).rowcount
            if gone:
                conn.execute("DELETE FROM factors WHERE service_id = ? AND entity = ?", key)
                conn.execute("DELETE FROM challenges WHERE service_id = ? AND identity = ?", key)
            return bool(gone)

        return await self._db.write(run)

    async def add_challenge(self, challenge: Challenge) -> None:
        """Keep the challenge."""
        c = challenge
        row = (c.sid, c.tenant_id, c.identity, c.factor_id, c.status, c.created_at, c.updated_at)
        await self._db.write(
            lambda conn: conn.execute(
                f"INSERT INTO challenges ({_CHALLENGE_COLUMNS}) VALUES (?,?,?,?,?,?,?)",  # noqa: S608
                row,
            )
        )

    async def get_challenge(self, tenant_id: str, sid: str) -> Challenge | None:
        """A challenge of the tenant."""
        sql = f"SELECT {_CHALLENGE_COLUMNS} FROM challenges WHERE sid = ? AND service_id = ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> Challenge | None:
            row = conn.execute(sql, (sid, tenant_id)).fetchone()
            return Challenge(*row) if row else None

        return await self._db.read(run)

    async def list_challenges(self, tenant_id: str, identity: str) -> list[Challenge]:
        """The entity's challenges, newest first."""
        sql = (
            f"SELECT {_CHALLENGE_COLUMNS} FROM challenges "  # noqa: S608
            "WHERE service_id = ? AND identity = ? ORDER BY created_at DESC, sid DESC"
        )
        return await self._db.read(
            lambda conn: [Challenge(*r) for r in conn.execute(sql, (tenant_id, identity))]
        )
