"""The attempts log in SQLite: the AttemptLog half of SqliteVerificationStore, one query over
`send_attempts` joined to their verifications."""

from __future__ import annotations

import sqlite3
from typing import Any

from clave.platform.contacts import region_of
from clave.platform.sqlite import SqliteDatabase
from clave.verify.attempts import AttemptQuery, AttemptRecord
from clave.verify.models import Channel, SendStatus, Status

_SID = "json_extract(a.options, '$.attempt_sid')"  # as indexed (send_attempts_by_sid)
_COLUMNS = (
    f"{_SID}, a.service_id, a.verification_id, a.to_addr, a.channel, a.status, "
    "a.created_at, a.updated_at, v.status"
)
_FROM = "FROM send_attempts a JOIN verifications v ON v.id = a.verification_id"


def _where(query: AttemptQuery) -> tuple[str, list[Any]]:
    """The WHERE clause of `query` and its parameters."""
    tenants = sorted(query.tenant_ids)
    clauses = [f"a.service_id IN ({','.join('?' * len(tenants))})", f"{_SID} IS NOT NULL"]
    params: list[Any] = list(tenants)
    for clause, value in (
        ("a.created_at > ?", query.created_after),
        ("a.created_at < ?", query.created_before),
        ("a.to_addr = ?", query.to),
        ("a.channel = ?", query.channel.value if query.channel else None),
        ("a.verification_id = ?", query.verification_id),
        (f"{_SID} = ?", query.sid),
        ("clave_region(a.to_addr) = ?", query.country),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if query.destination_prefix is not None:
        clauses.append("substr(a.to_addr, 1, ?) = ?")
        params += [len(query.destination_prefix), query.destination_prefix]
    if query.converted is not None:
        clauses.append("v.status = 'approved'" if query.converted else "v.status != 'approved'")
    return " AND ".join(clauses), params


def _prepare(conn: sqlite3.Connection, query: AttemptQuery) -> None:
    if query.country is not None:  # the destination's country: libphonenumber's, as elsewhere
        conn.create_function("clave_region", 1, region_of, deterministic=True)


class SqliteAttempts:
    """AttemptLog on the `send_attempts` and `verifications` tables of an open SqliteDatabase."""

    _db: SqliteDatabase

    async def find_attempts(
        self, query: AttemptQuery, *, offset: int, limit: int
    ) -> list[AttemptRecord]:
        """The sends matching `query`, newest first."""
        where, params = _where(query)
        sql = (
            f"SELECT {_COLUMNS} {_FROM} WHERE {where} "
            "ORDER BY a.created_at DESC, a.id DESC LIMIT ? OFFSET ?"
        )

        def run(conn: sqlite3.Connection) -> list[AttemptRecord]:
            _prepare(conn, query)
            return [
                AttemptRecord(
                    sid=r[0],
                    tenant_id=r[1],
                    verification_id=r[2],
                    to=r[3],
                    channel=Channel(r[4]),
                    status=SendStatus(r[5]),
                    created_at=r[6],
                    updated_at=r[7],
                    converted=r[8] == Status.APPROVED.value,
                )
                for r in conn.execute(sql, (*params, limit, offset))
            ]

        return await self._db.read(run)

    async def count_attempts(self, query: AttemptQuery) -> tuple[int, int]:
        """(matching sends, converted ones)."""
        where, params = _where(query)
        sql = f"SELECT COUNT(*), COALESCE(SUM(v.status = 'approved'), 0) {_FROM} WHERE {where}"

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            _prepare(conn, query)
            total, converted = conn.execute(sql, params).fetchone()
            return int(total), int(converted)

        return await self._db.read(run)
