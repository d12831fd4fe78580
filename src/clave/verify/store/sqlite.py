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
    EVENT_TYPES,
    REPORTABLE,
    ApiKey,
    Channel,
    CheckGate,
    CheckOutcome,
    Delivery,
    Event,
    Policy,
    SealedCode,
    SendAttempt,
    SendStatus,
    Service,
    StartOutcome,
    Status,
    Verification,
    payment_of,
)

MIGRATIONS = (
    """
    CREATE TABLE services (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        friendly_name TEXT NOT NULL,
        code_length INTEGER NOT NULL,
        code_ttl INTEGER NOT NULL,
        max_checks INTEGER NOT NULL,
        max_sends INTEGER NOT NULL,
        send_window INTEGER NOT NULL,
        channels TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
        key_hash BLOB NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );
    CREATE TABLE verifications (
        id TEXT PRIMARY KEY,
        service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
        to_addr TEXT NOT NULL,
        channel TEXT NOT NULL,
        locale TEXT,
        code_length INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        code_seed BLOB NOT NULL,
        code_digest BLOB NOT NULL,
        status TEXT NOT NULL,
        check_attempts INTEGER NOT NULL,
        max_checks INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX verifications_one_pending
        ON verifications (service_id, to_addr) WHERE status = 'pending';
    CREATE TABLE send_attempts (
        id INTEGER PRIMARY KEY,
        verification_id TEXT NOT NULL REFERENCES verifications(id) ON DELETE CASCADE,
        service_id TEXT NOT NULL,
        to_addr TEXT NOT NULL,
        channel TEXT NOT NULL,
        locale TEXT,
        status TEXT NOT NULL,
        provider TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX send_attempts_by_destination ON send_attempts (service_id, to_addr, created_at);
    CREATE INDEX send_attempts_by_verification ON send_attempts (verification_id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        attempt_id INTEGER NOT NULL UNIQUE REFERENCES send_attempts(id) ON DELETE CASCADE,
        tries INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at)
    """,
    """
    ALTER TABLE send_attempts ADD COLUMN provider_message_id TEXT;
    CREATE INDEX send_attempts_by_provider_id ON send_attempts (provider, provider_message_id)
    """,
    """
    ALTER TABLE services ADD COLUMN countries TEXT NOT NULL DEFAULT ''
    """,
    """
    ALTER TABLE send_attempts ADD COLUMN options TEXT
    """,
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        verification_id TEXT NOT NULL,
        service_id TEXT NOT NULL,
        type TEXT NOT NULL,
        occurred_at REAL NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX events_due ON events (next_attempt_at);
    CREATE INDEX verifications_pending_expiry ON verifications (expires_at) WHERE status = 'pending'
    """,
    """
    ALTER TABLE services ADD COLUMN limits TEXT NOT NULL DEFAULT ''
    """,
    """
    ALTER TABLE services ADD COLUMN flags TEXT NOT NULL DEFAULT ''
    """,
    """
    ALTER TABLE verifications ADD COLUMN binding BLOB NOT NULL DEFAULT x''
    """,
    """
    ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE api_keys ADD COLUMN expires_at REAL;
    ALTER TABLE api_keys ADD COLUMN revoked_at REAL;
    ALTER TABLE api_keys ADD COLUMN last_used_at REAL;
    CREATE INDEX api_keys_by_service ON api_keys (service_id);
    ALTER TABLE services ADD COLUMN accounts TEXT NOT NULL DEFAULT ''
    """,
)

_VERIFICATION_COLUMNS = (
    "id, service_id, to_addr, channel, locale, code_length, key_id, code_seed, code_digest, "
    "status, check_attempts, max_checks, created_at, updated_at, expires_at, binding"
)
_SERVICE_COLUMNS = (
    "id, name, friendly_name, code_length, code_ttl, max_checks, max_sends, send_window, "
    "channels, created_at, countries, limits, flags, accounts"
)
_KEY_COLUMNS = "id, service_id, key_hash, created_at, name, expires_at, revoked_at, last_used_at"


def _limits(text: str) -> tuple[tuple[str, str], ...]:
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return tuple(sorted((k, v) for k, v in pairs))


def _service(row: Any) -> Service:
    policy = Policy(
        friendly_name=row[2],
        code_length=row[3],
        code_ttl=row[4],
        max_checks=row[5],
        max_sends=row[6],
        send_window=row[7],
        channels=frozenset(Channel(c) for c in row[8].split(",") if c),
        countries=frozenset(c for c in row[10].split(",") if c),
        limits=_limits(row[11]),
        flags=frozenset(f for f in row[12].split(",") if f),
    )
    return Service(
        id=row[0],
        name=row[1],
        policy=policy,
        created_at=row[9],
        accounts=frozenset(a for a in row[13].split(",") if a),
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
            payment=payment_of(json.loads(r[8])) if r[8] else None,
        )
        for r in rows
    )


def _fail_if_all_failed(conn: sqlite3.Connection, vid: str, now: float, *, events: bool) -> None:
    left = conn.execute(
        "SELECT count(*) FROM send_attempts WHERE verification_id = ? AND status NOT IN (?, ?)",
        (vid, SendStatus.FAILED.value, SendStatus.UNDELIVERED.value),
    ).fetchone()[0]
    if left == 0:
        _set_status(conn, vid, Status.PENDING, Status.FAILED, now, events=events)


def _verification(conn: sqlite3.Connection, row: Any) -> Verification | None:
    if row is None:
        return None
    return Verification(
        id=row[0],
        service_id=row[1],
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


def _pending_row(conn: sqlite3.Connection, service_id: str, to: str) -> Any:
    return conn.execute(
        f"SELECT {_VERIFICATION_COLUMNS} FROM verifications "  # noqa: S608 - constant columns
        "WHERE service_id = ? AND to_addr = ? AND status = 'pending'",
        (service_id, to),
    ).fetchone()


def _count_sends(conn: sqlite3.Connection, service_id: str, to: str, since: float) -> int:
    row = conn.execute(
        "SELECT count(*) FROM send_attempts "
        "WHERE service_id = ? AND to_addr = ? AND created_at > ?",
        (service_id, to, since),
    ).fetchone()
    return int(row[0])


def _set_status(
    conn: sqlite3.Connection, vid: str, old: Status, new: Status, now: float, *, events: bool
) -> bool:
    cursor = conn.execute(
        "UPDATE verifications SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
        (new.value, now, vid, old.value),
    )
    changed = cursor.rowcount == 1
    if changed and events and new in EVENT_TYPES:
        # In the same transaction as the change: an event is never lost, nor raised twice.
        conn.execute(
            "INSERT INTO events (verification_id, service_id, type, occurred_at, next_attempt_at) "
            "SELECT id, service_id, ?, ?, ? FROM verifications WHERE id = ?",
            (EVENT_TYPES[new], now, now, vid),
        )
    return changed


class SqliteVerificationStore:
    """Verify's tables in one SQLite file (`verify.db` under CLAVE_DATA_DIR by default)."""

    def __init__(self, path: Path | str, *, events: bool = False) -> None:
        self._events = events
        self._db = SqliteDatabase(path, MIGRATIONS)
        self._outbox_idle = True

    def setup(self) -> None:
        """Create or upgrade the schema synchronously (before workers start)."""
        self._db.setup()

    async def open(self) -> None:
        """Open the connection; the schema is brought up to date."""
        await self._db.open()

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()

    async def ping(self) -> None:
        """A trivial query."""
        await self._db.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def put_service(self, service: Service) -> None:
        """Insert or update by id."""
        p = service.policy
        channels = ",".join(sorted(c.value for c in p.channels))

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO services ({_SERVICE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "  # noqa: S608
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                "friendly_name = excluded.friendly_name, code_length = excluded.code_length, "
                "code_ttl = excluded.code_ttl, max_checks = excluded.max_checks, "
                "max_sends = excluded.max_sends, send_window = excluded.send_window, "
                "channels = excluded.channels, countries = excluded.countries, "
                "limits = excluded.limits, flags = excluded.flags, accounts = excluded.accounts",
                (
                    service.id,
                    service.name,
                    p.friendly_name,
                    p.code_length,
                    p.code_ttl,
                    p.max_checks,
                    p.max_sends,
                    p.send_window,
                    channels,
                    service.created_at,
                    ",".join(sorted(p.countries)),
                    ",".join(f"{k}={v}" for k, v in p.limits),
                    ",".join(sorted(p.flags)),
                    ",".join(sorted(service.accounts)),
                ),
            )

        try:
            await self._db.write(run)
        except Exception as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise ValueError(f"service name {service.name!r} is taken") from exc
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
            existing = _verification(conn, _pending_row(conn, candidate.service_id, candidate.to))
            if existing is not None and now >= existing.expires_at:
                _set_status(
                    conn, existing.id, Status.PENDING, Status.EXPIRED, now, events=self._events
                )
                existing = None
            count, oldest = conn.execute(
                "SELECT count(*), min(created_at) FROM send_attempts "
                "WHERE service_id = ? AND to_addr = ? AND created_at > ?",
                (candidate.service_id, candidate.to, now - window),
            ).fetchone()
            if count >= max_sends:
                return StartOutcome(existing or candidate, False, count, oldest + window)
            if existing is not None and existing.binding != candidate.binding:
                # What the code would mean changed: the old code dies, a new one starts.
                _set_status(
                    conn, existing.id, Status.PENDING, Status.CANCELED, now, events=self._events
                )
                existing = None
            if existing is None:
                target = candidate
                c = candidate
                conn.execute(
                    f"INSERT INTO verifications ({_VERIFICATION_COLUMNS}) "  # noqa: S608
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        c.id,
                        c.service_id,
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
            else:
                target = existing
                conn.execute(
                    "UPDATE verifications SET channel = ?, updated_at = ? WHERE id = ?",
                    (channel.value, now, existing.id),
                )
            attempt_id = conn.execute(
                "INSERT INTO send_attempts (verification_id, service_id, to_addr, channel, "
                "locale, status, created_at, updated_at, options) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    target.id,
                    target.service_id,
                    target.to,
                    channel.value,
                    locale,
                    "queued" if deliver else "skipped",
                    now,
                    now,
                    json.dumps(dict(options)) if options else None,
                ),
            ).lastrowid
            if deliver:
                conn.execute(
                    "INSERT INTO outbox (attempt_id, next_attempt_at) VALUES (?, ?)",
                    (attempt_id, now),
                )
            current = self._get_sync(conn, target.service_id, target.id)
            assert current is not None
            return StartOutcome(current, existing is None, count + 1)

        return await self._db.write(run)

    @staticmethod
    def _get_sync(conn: sqlite3.Connection, service_id: str, vid: str) -> Verification | None:
        row = conn.execute(
            f"SELECT {_VERIFICATION_COLUMNS} FROM verifications "  # noqa: S608
            "WHERE id = ? AND service_id = ?",
            (vid, service_id),
        ).fetchone()
        return _verification(conn, row)

    async def get(self, service_id: str, verification_id: str) -> Verification | None:
        """A verification of the service."""
        return await self._db.read(lambda conn: self._get_sync(conn, service_id, verification_id))

    async def find_pending(self, service_id: str, to: str) -> Verification | None:
        """The pending verification for a destination."""
        return await self._db.read(
            lambda conn: _verification(conn, _pending_row(conn, service_id, to))
        )

    async def count_sends(self, service_id: str, to: str, since: float) -> int:
        """Send attempts to a destination since a time."""

        return await self._db.read(lambda conn: _count_sends(conn, service_id, to, since))

    async def count_check(
        self,
        service_id: str,
        *,
        now: float,
        window: float,
        verification_id: str | None = None,
        to: str | None = None,
    ) -> CheckOutcome:
        """See VerificationStore.count_check."""

        def run(conn: sqlite3.Connection) -> CheckOutcome:
            if verification_id is not None:
                found = self._get_sync(conn, service_id, verification_id)
            else:
                found = _verification(conn, _pending_row(conn, service_id, to or ""))
            if found is None:
                return CheckOutcome(CheckGate.NOT_FOUND)
            sends = _count_sends(conn, service_id, found.to, now - window)
            if found.status is Status.MAX_ATTEMPTS_REACHED:
                return CheckOutcome(CheckGate.LOCKED, found, sends)
            if found.status is not Status.PENDING:
                return CheckOutcome(CheckGate.NOT_FOUND)
            if now >= found.expires_at:
                _set_status(
                    conn, found.id, Status.PENDING, Status.EXPIRED, now, events=self._events
                )
                return CheckOutcome(CheckGate.NOT_FOUND)
            if found.check_attempts >= found.max_checks:
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
            lambda conn: _set_status(
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
                "a.verification_id, a.service_id, s.friendly_name, a.options "
                "FROM outbox o JOIN send_attempts a ON a.id = o.attempt_id "
                "JOIN services s ON s.id = a.service_id "
                "WHERE o.next_attempt_at <= ? AND o.lease_until <= ? "
                "ORDER BY o.next_attempt_at, o.id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            claimed = []
            for oid, aid, tries, channel, to, locale, vid, sid, friendly, options in rows:
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
                        friendly_name=friendly,
                        options=json.loads(options) if options else {},
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
            if status not in REPORTABLE.get(SendStatus(row[2]), set()):
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

    async def expire_due(self, now: float, *, limit: int) -> int:
        """See VerificationStore.expire_due."""

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
                _set_status(conn, vid, Status.PENDING, Status.EXPIRED, now, events=self._events)
            return len(ids)

        return await self._db.write(run)

    async def claim_events(self, now: float, *, lease_until: float, limit: int) -> list[Event]:
        """See VerificationStore.claim_events."""

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
        """See VerificationStore.finish_event."""
        await self._db.write(
            lambda conn: conn.execute("DELETE FROM events WHERE id = ?", (event.id,))
        )

    async def retry_event(self, event: Event, *, next_attempt_at: float) -> None:
        """See VerificationStore.retry_event."""
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE events SET next_attempt_at = ?, lease_until = 0 WHERE id = ?",
                (next_attempt_at, event.id),
            )
        )

    async def pending_deliveries(self) -> int:
        """Entries waiting in the outbox."""
        return await self._db.read(
            lambda conn: int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
        )
