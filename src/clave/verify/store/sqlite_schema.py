"""The SQLite schema of verify, as migrations applied in order (`PRAGMA user_version`)."""

from __future__ import annotations

import json
import sqlite3

from clave.platform.contacts import region_of
from clave.platform.sqlite import Migration
from clave.verify.attempts import seeded_attempt_sid
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


def _attempt_sids(conn: sqlite3.Connection) -> None:
    """Give every send a sid of its own (the attempts log's): the one the Twilio API showed for
    it until now, from its verification's seed, so no sid an application kept changes; and
    its destination's country. The log reads a tenant's sends by time, one send by its sid,
    and by country."""
    rows = conn.execute(
        "SELECT a.id, a.options, a.verification_id, a.to_addr, v.code_seed FROM send_attempts a "
        "JOIN verifications v ON v.id = a.verification_id ORDER BY a.verification_id, a.id"
    ).fetchall()
    number, previous = 0, None
    for attempt_id, options, verification_id, to, seed in rows:
        # The n-th send of its verification, from 0, as the API counted them.
        number = number + 1 if verification_id == previous else 0
        previous = verification_id
        found = json.loads(options) if options else {}
        found["attempt_sid"] = seeded_attempt_sid(bytes(seed), number)
        country = region_of(to)
        if country is not None:
            found["country"] = country
        conn.execute(
            "UPDATE send_attempts SET options = ? WHERE id = ?", (json.dumps(found), attempt_id)
        )
    conn.execute("CREATE INDEX send_attempts_by_service ON send_attempts (service_id, created_at)")
    by_sid = "json_extract(options, '$.attempt_sid')"
    conn.execute(f"CREATE INDEX send_attempts_by_sid ON send_attempts ({by_sid})")
    by_country = "service_id, json_extract(options, '$.country'), created_at"
    conn.execute(f"CREATE INDEX send_attempts_by_country ON send_attempts ({by_country})")


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
    _attempt_sids,
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
    # The Twilio API's Entities and Challenges of authenticator-app factors.
    """
    CREATE TABLE entities (
        sid TEXT PRIMARY KEY,
        service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
        identity TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (service_id, identity)
    );
    CREATE TABLE challenges (
        sid TEXT PRIMARY KEY,
        service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
        identity TEXT NOT NULL,
        factor_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX challenges_by_entity ON challenges (service_id, identity, created_at)
    """,
)
