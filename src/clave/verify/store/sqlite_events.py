"""Closings and their events in SQLite: the EventLog half of SqliteVerificationStore."""

from __future__ import annotations

import sqlite3

from clave.platform.sqlite import SqliteDatabase
from clave.verify.models import Event, Status, can_close, event_type


def set_status(
    conn: sqlite3.Connection, vid: str, old: Status, new: Status, now: float, *, events: bool
) -> bool:
    """Close a verification still in `old` (models.can_close), raising its event."""
    if not can_close(old, new):
        return False
    cursor = conn.execute(
        "UPDATE verifications SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
        (new.value, now, vid, old.value),
    )
    changed = cursor.rowcount == 1
    kind = event_type(new)
    if changed and events and kind is not None:
        # In the same transaction as the change: an event is never lost, nor raised twice.
        conn.execute(
            "INSERT INTO events (verification_id, service_id, type, occurred_at, next_attempt_at) "
            "SELECT id, service_id, ?, ?, ? FROM verifications WHERE id = ?",
            (kind, now, now, vid),
        )
    return changed


class SqliteEventLog:
    """EventLog on the `events` table of an open SqliteDatabase."""

    _db: SqliteDatabase
    _events: bool

    async def expire_due(self, now: float, *, limit: int) -> int:
        """See EventLog.expire_due."""

        # models.is_stale, as a query: pending, and expires_at <= now.
        def due(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM verifications WHERE status = 'pending' AND expires_at <= ? LIMIT 1",
                (now,),
            ).fetchone()
            return row is not None

        if not await self._db.read(due):  # idle workers never take the write lock
            return 0

        def run(conn: sqlite3.Connection) -> int:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM verifications WHERE status = 'pending' AND expires_at <= ? "
                    "LIMIT ?",
                    (now, limit),
                )
            ]
            for vid in ids:
                set_status(conn, vid, Status.PENDING, Status.EXPIRED, now, events=self._events)
            return len(ids)

        return await self._db.write(run)

    async def claim_events(self, now: float, *, lease_until: float, limit: int) -> list[Event]:
        """See EventLog.claim_events."""

        def due(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM events WHERE next_attempt_at <= ? AND lease_until <= ? LIMIT 1",
                (now, now),
            ).fetchone()
            return row is not None

        if not await self._db.read(due):
            return []

        def run(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT id, type, verification_id, service_id, occurred_at, tries FROM events "
                "WHERE next_attempt_at <= ? AND lease_until <= ? "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            for r in rows:
                conn.execute(
                    "UPDATE events SET tries = tries + 1, lease_until = ? WHERE id = ?",
                    (lease_until, r[0]),
                )
            return [Event(r[0], r[1], r[2], r[3], r[4], r[5] + 1) for r in rows]

        return await self._db.write(run)

    async def finish_event(self, event: Event) -> None:
        """See EventLog.finish_event."""
        await self._db.write(
            lambda conn: conn.execute("DELETE FROM events WHERE id = ?", (event.id,))
        )

    async def retry_event(self, event: Event, *, next_attempt_at: float) -> None:
        """See EventLog.retry_event."""
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE events SET next_attempt_at = ?, lease_until = 0 WHERE id = ?",
                (next_attempt_at, event.id),
            )
        )
