"""SQLite verify store: the embedded default, safe under several worker processes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from clave.platform.sqlite import SqliteDatabase
from clave.verify.models import (
    Channel,
    CheckGate,
    CheckOutcome,
    Delivery,
    SealedCode,
    SendAttempt,
    SendStatus,
    StartOutcome,
    Status,
    Verification,
    all_sends_failed,
    decide_check,
    decide_start,
    payment_of,
    reportable,
)
from clave.verify.store.encoding import decode_options, decode_policy
from clave.verify.store.sqlite_attempts import SqliteAttempts
from clave.verify.store.sqlite_events import SqliteEventLog, set_status
from clave.verify.store.sqlite_factors import SqliteFactors
from clave.verify.store.sqlite_schema import MIGRATIONS
from clave.verify.store.sqlite_tenants import SqliteTenants

_VERIFICATION_COLUMNS = (
    "id, service_id, to_addr, channel, locale, code_length, key_id, code_seed, code_digest, "
    "status, check_attempts, max_checks, created_at, updated_at, expires_at, binding"
)


def _sends(conn: sqlite3.Connection, verification_id: str) -> tuple[SendAttempt, ...]:
    rows = conn.execute(
        "SELECT id, channel, status, created_at, updated_at, provider, error, provider_message_id, "
        "options FROM send_attempts WHERE verification_id = ? ORDER BY id",
        (verification_id,),
    ).fetchall()
    return tuple(
        SendAttempt(
            r[0],
            Channel(r[1]),
            SendStatus(r[2]),
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            payment=payment_of(options := decode_options(r[8])),
            sid=options.get("attempt_sid"),
        )
        for r in rows
    )


def _fail_if_all_failed(conn: sqlite3.Connection, vid: str, now: float, *, events: bool) -> None:
    statuses = conn.execute(
        "SELECT status FROM send_attempts WHERE verification_id = ?", (vid,)
    ).fetchall()
    if all_sends_failed(SendStatus(row[0]) for row in statuses):
        set_status(conn, vid, Status.PENDING, Status.FAILED, now, events=events)


def _verification(conn: sqlite3.Connection, row: Any) -> Verification | None:
    if row is None:
        return None
    return Verification(
        id=row[0],
        tenant_id=row[1],
        to=row[2],
        channel=Channel(row[3]),
        locale=row[4],
        code_length=row[5],
        code=SealedCode(key_id=row[6], seed=row[7], digest=row[8]),
        status=Status(row[9]),
        check_attempts=row[10],
        max_checks=row[11],
        created_at=row[12],
        updated_at=row[13],
        expires_at=row[14],
        sends=_sends(conn, row[0]),
        binding=bytes(row[15]),
    )


def _pending_row(conn: sqlite3.Connection, tenant_id: str, to: str) -> Any:
    return conn.execute(
        f"SELECT {_VERIFICATION_COLUMNS} FROM verifications "  # noqa: S608 - constant columns
        "WHERE service_id = ? AND to_addr = ? AND status = 'pending'",
        (tenant_id, to),
    ).fetchone()


def _count_sends(conn: sqlite3.Connection, tenant_id: str, to: str, since: float) -> int:
    row = conn.execute(
        "SELECT count(*) FROM send_attempts "
        "WHERE service_id = ? AND to_addr = ? AND created_at > ?",
        (tenant_id, to, since),
    ).fetchone()
    return int(row[0])


def _insert(conn: sqlite3.Connection, c: Verification) -> None:
    """A new verification row (its send attempts are rows of their own)."""
    conn.execute(
        f"INSERT INTO verifications ({_VERIFICATION_COLUMNS}) "  # noqa: S608
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            c.id,
            c.tenant_id,
            c.to,
            c.channel.value,
            c.locale,
            c.code_length,
            c.code.key_id,
            c.code.seed,
            c.code.digest,
            c.status.value,
            c.check_attempts,
            c.max_checks,
            c.created_at,
            c.updated_at,
            c.expires_at,
            c.binding,
        ),
    )


def _add_attempt(
    conn: sqlite3.Connection,
    target: Verification,
    channel: Channel,
    locale: str | None,
    now: float,
    *,
    deliver: bool,
    options: Mapping[str, str] | None,
) -> None:
    """A send attempt for `target`, and its outbox entry when it is to be delivered (in the
    caller's transaction: a send is never accepted without its entry)."""
    attempt_id = conn.execute(
        "INSERT INTO send_attempts (verification_id, service_id, to_addr, channel, "
        "locale, status, created_at, updated_at, options) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            target.id,
            target.tenant_id,
            target.to,
            channel.value,
            locale,
            (SendStatus.QUEUED if deliver else SendStatus.SKIPPED).value,
            now,
            now,
            json.dumps(dict(options)) if options else None,
        ),
    ).lastrowid
    if deliver:
        conn.execute(
            "INSERT INTO outbox (attempt_id, next_attempt_at) VALUES (?, ?)", (attempt_id, now)
        )


class SqliteVerificationStore(SqliteTenants, SqliteEventLog, SqliteAttempts, SqliteFactors):
    """Verify's tables in one SQLite file (`verify.db` under CLAVE_DATA_DIR by default)."""

    def __init__(self, path: Path | str, *, events: bool = False) -> None:
        self._events = events
        self._db = SqliteDatabase(path, MIGRATIONS)
        # The attempts log's queries may read many rows: on a connection and a thread of their
        # own (WAL lets them read beside the writer), so a report never holds up a send or a
        # check. An in-memory database has one connection only.
        self._reports = self._db if str(path) == ":memory:" else SqliteDatabase(path)
        self._outbox_idle = True

    def setup(self) -> None:
        """Create or upgrade the schema synchronously (before workers start)."""
        self._db.setup()

    async def open(self) -> None:
        """Open the connections; the schema is brought up to date."""
        await self._db.open()
        if self._reports is not self._db:
            await self._reports.open()

    async def close(self) -> None:
        """Close the connections."""
        if self._reports is not self._db:
            await self._reports.close()
        await self._db.close()

    async def ping(self) -> None:
        """A trivial query."""
        await self._db.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def start(
        self,
        candidate: Verification,
        *,
        channel: Channel,
        locale: str | None,
        now: float,
        window: float,
        max_sends: int,
        deliver: bool = True,
        options: Mapping[str, str] | None = None,
    ) -> StartOutcome:
        """See VerificationStore.start."""

        def run(conn: sqlite3.Connection) -> StartOutcome:
            existing = _verification(conn, _pending_row(conn, candidate.tenant_id, candidate.to))
            count, oldest = conn.execute(
                "SELECT count(*), min(created_at) FROM send_attempts "
                "WHERE service_id = ? AND to_addr = ? AND created_at > ?",
                (candidate.tenant_id, candidate.to, now - window),
            ).fetchone()
            decision = decide_start(
                existing, candidate, sends_in_window=count, max_sends=max_sends, now=now
            )
            if existing is not None and decision.close_existing is not None:
                set_status(
                    conn,
                    existing.id,
                    Status.PENDING,
                    decision.close_existing,
                    now,
                    events=self._events,
                )
                existing = None
            if decision.limited:
                return StartOutcome(existing or candidate, False, count, oldest + window)
            if existing is None:
                target = candidate
                _insert(conn, candidate)
            else:
                target = existing
                conn.execute(
                    "UPDATE verifications SET channel = ?, updated_at = ? WHERE id = ?",
                    (channel.value, now, existing.id),
                )
            _add_attempt(conn, target, channel, locale, now, deliver=deliver, options=options)
            current = self._get_sync(conn, target.tenant_id, target.id)
            assert current is not None
            return StartOutcome(current, existing is None, count + 1)

        return await self._db.write(run)

    @staticmethod
    def _get_sync(conn: sqlite3.Connection, tenant_id: str, vid: str) -> Verification | None:
        row = conn.execute(
            f"SELECT {_VERIFICATION_COLUMNS} FROM verifications "  # noqa: S608
            "WHERE id = ? AND service_id = ?",
            (vid, tenant_id),
        ).fetchone()
        return _verification(conn, row)

    async def get(self, tenant_id: str, verification_id: str) -> Verification | None:
        """A verification of the tenant."""
        return await self._db.read(lambda conn: self._get_sync(conn, tenant_id, verification_id))

    async def find_pending(self, tenant_id: str, to: str) -> Verification | None:
        """The pending verification for a destination."""
        return await self._db.read(
            lambda conn: _verification(conn, _pending_row(conn, tenant_id, to))
        )

    async def latest_sent(self, tenant_id: str, to: str, since: float) -> Verification | None:
        """The verification of the latest send to a destination after `since`."""

        def run(conn: sqlite3.Connection) -> Verification | None:
            row = conn.execute(
                "SELECT verification_id FROM send_attempts "
                "WHERE service_id = ? AND to_addr = ? AND created_at > ? "
                "ORDER BY created_at DESC, id DESC LIMIT 1",
                (tenant_id, to, since),
            ).fetchone()
            return None if row is None else self._get_sync(conn, tenant_id, row[0])

        return await self._db.read(run)

    async def count_sends(self, tenant_id: str, to: str, since: float) -> int:
        """Send attempts to a destination since a time."""

        return await self._db.read(lambda conn: _count_sends(conn, tenant_id, to, since))

    async def count_check(
        self,
        tenant_id: str,
        *,
        now: float,
        window: float,
        verification_id: str | None = None,
        to: str | None = None,
    ) -> CheckOutcome:
        """See VerificationStore.count_check."""

        def run(conn: sqlite3.Connection) -> CheckOutcome:
            if verification_id is not None:
                found = self._get_sync(conn, tenant_id, verification_id)
            else:
                found = _verification(conn, _pending_row(conn, tenant_id, to or ""))
            gate, close = decide_check(found, now)
            if found is None or gate is CheckGate.NOT_FOUND:
                if found is not None and close is not None:
                    set_status(conn, found.id, found.status, close, now, events=self._events)
                return CheckOutcome(CheckGate.NOT_FOUND)
            sends = _count_sends(conn, tenant_id, found.to, now - window)
            if gate is CheckGate.LOCKED:
                return CheckOutcome(CheckGate.LOCKED, found, sends)
            # Counted inside the same IMMEDIATE transaction as the read: no other worker can
            # read the old count in between, so concurrent checks each consume an attempt.
            conn.execute(
                "UPDATE verifications SET check_attempts = check_attempts + 1, updated_at = ? "
                "WHERE id = ?",
                (now, found.id),
            )
            counted = replace(found, check_attempts=found.check_attempts + 1, updated_at=now)
            return CheckOutcome(CheckGate.COUNTED, counted, sends)

        return await self._db.write(run)

    async def transition(
        self, verification_id: str, *, from_status: Status, to_status: Status, now: float
    ) -> bool:
        """Change the status only if it is still `from_status`."""
        return await self._db.write(
            lambda conn: set_status(
                conn, verification_id, from_status, to_status, now, events=self._events
            )
        )

    async def claim_deliveries(
        self, now: float, *, lease_until: float, limit: int
    ) -> list[Delivery]:
        """Lease due outbox entries."""

        def due(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM outbox WHERE next_attempt_at <= ? AND lease_until <= ? LIMIT 1",
                (now, now),
            ).fetchone()
            return row is not None

        # While idle, a plain read first, so polling workers never take the write lock; while
        # busy (the last claim found work) go straight to the claiming transaction.
        if self._outbox_idle and not await self._db.read(due):
            return []

        def run(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT o.id, o.attempt_id, o.tries, a.channel, a.to_addr, a.locale, "
                "a.verification_id, a.service_id, s.policy, a.options "
                "FROM outbox o JOIN send_attempts a ON a.id = o.attempt_id "
                "JOIN services s ON s.id = a.service_id "
                "WHERE o.next_attempt_at <= ? AND o.lease_until <= ? "
                "ORDER BY o.next_attempt_at, o.id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            claimed = []
            for oid, aid, tries, channel, to, locale, vid, sid, policy, options in rows:
                conn.execute(
                    "UPDATE outbox SET tries = tries + 1, lease_until = ? WHERE id = ?",
                    (lease_until, oid),
                )
                verification = self._get_sync(conn, sid, vid)
                assert verification is not None
                claimed.append(
                    Delivery(
                        outbox_id=oid,
                        attempt_id=aid,
                        tries=tries + 1,
                        channel=Channel(channel),
                        to=to,
                        locale=locale,
                        verification=verification,
                        friendly_name=decode_policy(policy).friendly_name,
                        options=decode_options(options),
                    )
                )
            return claimed

        claimed = await self._db.write(run)
        self._outbox_idle = not claimed
        return claimed

    async def finish_delivery(
        self,
        delivery: Delivery,
        *,
        status: SendStatus,
        provider: str | None,
        error: str | None,
        now: float,
        provider_message_id: str | None = None,
    ) -> None:
        """Record the attempt's outcome and drop the outbox entry."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM outbox WHERE id = ?", (delivery.outbox_id,))
            conn.execute(
                "UPDATE send_attempts SET status = ?, provider = ?, error = ?, updated_at = ?, "
                "provider_message_id = ? WHERE id = ?",
                (status.value, provider, error, now, provider_message_id, delivery.attempt_id),
            )
            _fail_if_all_failed(conn, delivery.verification.id, now, events=self._events)

        await self._db.write(run)

    async def report_delivery(
        self,
        provider: str,
        provider_message_id: str,
        status: SendStatus,
        *,
        error: str | None,
        now: float,
    ) -> bool | None:
        """See VerificationStore.report_delivery."""

        def run(conn: sqlite3.Connection) -> bool | None:
            row = conn.execute(
                "SELECT id, verification_id, status FROM send_attempts "
                "WHERE provider = ? AND provider_message_id = ?",
                (provider, provider_message_id),
            ).fetchone()
            if row is None:
                return None
            if not reportable(SendStatus(row[2]), status):
                return False
            conn.execute(
                "UPDATE send_attempts SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                (status.value, error, now, row[0]),
            )
            _fail_if_all_failed(conn, row[1], now, events=self._events)
            return True

        return await self._db.write(run)

    async def retry_delivery(
        self, delivery: Delivery, *, next_attempt_at: float, error: str
    ) -> None:
        """Release the lease and schedule the next try."""
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE outbox SET next_attempt_at = ?, lease_until = 0, last_error = ? "
                "WHERE id = ?",
                (next_attempt_at, error, delivery.outbox_id),
            )
        )

    async def pending_deliveries(self) -> int:
        """Entries waiting in the outbox."""
        return await self._db.read(
            lambda conn: int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
        )

    async def oldest_pending_at(self) -> float | None:
        """When the oldest waiting send was queued (its attempt's creation)."""
        sql = "SELECT min(a.created_at) FROM outbox o JOIN send_attempts a ON a.id = o.attempt_id"
        found = await self._db.read(lambda conn: conn.execute(sql).fetchone()[0])
        return float(found) if found is not None else None
