"""The SQLite schema of verify, as migrations applied in order (`PRAGMA user_version`)."""

from __future__ import annotations

import sqlite3

from clave.platform.sqlite import Migration
from clave.verify.store.encoding import LEGACY_FIELDS, encode_policy, legacy_policy


def _policy_column(conn: sqlite3.Connection) -> None:
    """Give each tenant its policy in one encoded `policy` column. The old columns stay (and
    are still written) for one release: see store/encoding.py."""
    conn.execute("ALTER TABLE services ADD COLUMN policy TEXT NOT NULL DEFAULT '{}'")
    columns = ", ".join(LEGACY_FIELDS)
    rows = conn.execute(f"SELECT id, {columns} FROM services").fetchall()  # noqa: S608
    for row in rows:
        policy = legacy_policy(dict(zip(LEGACY_FIELDS, row[1:], strict=True)))
        conn.execute(
            "UPDATE services SET policy = ? WHERE id = ?", (encode_policy(policy).decode(), row[0])
        )


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
    """
    ALTER TABLE services ADD COLUMN updated_at REAL
    """,
    """
    CREATE TABLE safe_numbers (
        owner TEXT NOT NULL,
        number TEXT NOT NULL,
        sid TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (owner, number)
    )
    """,
    # Every send gets a sid of its own (the attempts log's), random as new sends get theirs;
    # the log reads a tenant's sends by time, and one send by its sid.
    """
    UPDATE send_attempts SET options = json_set(
        COALESCE(options, '{}'), '$.attempt_sid', 'VL' || lower(hex(randomblob(16)))
    ) WHERE json_extract(COALESCE(options, '{}'), '$.attempt_sid') IS NULL;
    CREATE INDEX send_attempts_by_service ON send_attempts (service_id, created_at);
    CREATE INDEX send_attempts_by_sid ON send_attempts (json_extract(options, '$.attempt_sid'))
    """,
    # Authenticator-app factors: the secret only sealed (AES-256-GCM, verify/sealing.py).
    """
    CREATE TABLE factors (
        id TEXT PRIMARY KEY,
        service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
        entity TEXT NOT NULL,
        friendly_name TEXT NOT NULL,
        status TEXT NOT NULL,
        key_id TEXT NOT NULL,
        nonce BLOB NOT NULL,
        secret BLOB NOT NULL,
        time_step INTEGER NOT NULL,
        code_length INTEGER NOT NULL,
        skew INTEGER NOT NULL,
        last_step INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX factors_by_entity ON factors (service_id, entity, created_at)
    """,
)
