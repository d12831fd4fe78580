"""The SQLite schema of verify, as migrations applied in order (`PRAGMA user_version`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from clave.platform.sqlite import Migration
from clave.verify.models import Channel, Policy
from clave.verify.store.encoding import encode_policy

# The policy columns before Policy had one encoding (store/encoding.py).
_LEGACY_POLICY_COLUMNS = (
    "friendly_name",
    "code_length",
    "code_ttl",
    "max_checks",
    "max_sends",
    "send_window",
    "channels",
    "countries",
    "limits",
    "flags",
)


def _legacy_policy(row: Any) -> Policy:
    """A policy as the columns `_LEGACY_POLICY_COLUMNS` held it (only for the migration)."""
    pairs = (item.split("=", 1) for item in row[8].split(",") if "=" in item)
    return Policy(
        friendly_name=row[0],
        code_length=row[1],
        code_ttl=row[2],
        max_checks=row[3],
        max_sends=row[4],
        send_window=row[5],
        channels=frozenset(Channel(c) for c in row[6].split(",") if c),
        countries=frozenset(c for c in row[7].split(",") if c),
        limits=tuple(sorted((k, v) for k, v in pairs)),
        flags=frozenset(f for f in row[9].split(",") if f),
    )


def _policy_column(conn: sqlite3.Connection) -> None:
    """Move each tenant's policy from its columns into one `policy` column (encoded once)."""
    if sqlite3.sqlite_version_info < (3, 35, 0):
        raise sqlite3.NotSupportedError(
            f"clave needs SQLite >= 3.35 (DROP COLUMN); this Python has {sqlite3.sqlite_version}"
        )
    conn.execute("ALTER TABLE services ADD COLUMN policy TEXT NOT NULL DEFAULT '{}'")
    columns = ", ".join(_LEGACY_POLICY_COLUMNS)
    rows = conn.execute(f"SELECT id, {columns} FROM services").fetchall()  # noqa: S608
    for row in rows:
        policy = encode_policy(_legacy_policy(row[1:])).decode()
        conn.execute("UPDATE services SET policy = ? WHERE id = ?", (policy, row[0]))
    for column in _LEGACY_POLICY_COLUMNS:
        conn.execute(f"ALTER TABLE services DROP COLUMN {column}")


MIGRATIONS: tuple[Migration, ...] = (
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
    _policy_column,
)
