"""The attempts log in SQLite: the AttemptLog half of SqliteVerificationStore, one query over
`send_attempts` joined to their verifications."""

from __future__ import annotations

import sqlite3
from typing import Any

from clave.platform.sqlite import SqliteDatabase
from clave.verify.attempts import AttemptQuery, AttemptRecord
from clave.verify.models import Channel, SendStatus, Status

_SID = "json_extract(a.options, '$.attempt_sid')"  # as indexed (send_attempts_by_sid)
_COUNTRY = "json_extract(a.options, '$.country')"  # as indexed (send_attempts_by_country)
_COLUMNS = (
    f"{_SID}, a.service_id, a.verification_id, a.to_addr, a.channel, a.status, "
    "a.created_at, a.updated_at, v.status"
)


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
        (f"{_COUNTRY} = ?", query.country),
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


def _from(query: AttemptQuery) -> str:
    """The FROM clause: one send by its sid is found through its index (the planner, without
    statistics, would walk the tenant's sends by time instead)."""
    hint = " INDEXED BY send_attempts_by_sid" if query.sid is not None else ""
    return f"FROM send_attempts a{hint} JOIN verifications v ON v.id = a.verification_id"


class SqliteAttempts:
    """AttemptLog on the `send_attempts` and `verifications` tables of an open SqliteDatabase."""

    _reports: SqliteDatabase  # a connection of its own (SqliteVerificationStore)

    async def find_attempts(
        self, query: AttemptQuery, *, offset: int, limit: int
    ) -> list[AttemptRecord]:
        """The sends matching `query`, newest first."""
        where, params = _where(query)
        sql = (
            f"SELECT {_COLUMNS} {_from(query)} WHERE {where} "
            "ORDER BY a.created_at DESC, a.id DESC LIMIT ? OFFSET ?"
        )

        def run(conn: sqlite3.Connection) -> list[AttemptRecord]:
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

        return await self._reports.read(run)

    async def count_attempts(self, query: AttemptQuery) -> tuple[int, int]:
        """(matching sends, converted ones)."""
        where, params = _where(query)
        sql = (
            f"SELECT COUNT(*), COALESCE(SUM(v.status = 'approved'), 0) {_from(query)} WHERE {where}"
        )

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            total, converted = conn.execute(sql, params).fetchone()
            return int(total), int(converted)

        return await self._reports.read(run)
