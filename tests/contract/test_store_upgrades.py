"""Stores written by an earlier clave open under this one with nothing lost, and the two run
side by side (a rolling deploy, a rollback): tenants whose policy was stored field by field read
back with the same policy; this clave still writes those fields, and a change an earlier clave
makes to them afterwards wins (store/encoding.py)."""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from clave.platform.sqlite import migrate
from clave.verify.attempts import AttemptQuery, seeded_attempt_sid
from clave.verify.models import Channel, Policy, Tenant
from clave.verify.store.encoding import encode_policy
from clave.verify.store.redis import RedisVerificationStore
from clave.verify.store.sqlite import SqliteVerificationStore
from clave.verify.store.sqlite_schema import MIGRATIONS
from tests.contract.conftest import drop_prefix

POLICY = Policy(
    friendly_name="Acme, Inc.",
    code_length=8,
    code_ttl=300,
    max_checks=3,
    max_sends=4,
    send_window=900,
    channels=frozenset({Channel.SMS, Channel.EMAIL}),
    countries=frozenset({"ES", "US"}),
    limits=(("sends_per_ip", "5/60"), ("sends_per_service", "100/3600")),
    flags=frozenset({"psd2", "custom_code"}),
)
LEGACY = {
    "friendly_name": "Acme, Inc.",
    "code_length": "8",
    "code_ttl": "300",
    "max_checks": "3",
    "max_sends": "4",
    "send_window": "900",
    "channels": "email,sms",
    "countries": "ES,US",
    "limits": "sends_per_ip=5/60,sends_per_service=100/3600",
    "flags": "custom_code,psd2",
}


async def test_sqlite_moves_policy_columns_into_one_encoding(tmp_path: Path) -> None:
    path = tmp_path / "verify.db"
    conn = sqlite3.connect(path, isolation_level=None)
    before = next(i for i, m in enumerate(MIGRATIONS) if callable(m))
    migrate(conn, MIGRATIONS[:before])
    conn.execute(
        "INSERT INTO services (id, name, created_at, accounts, "
        + ", ".join(LEGACY)
        + ") VALUES (?, ?, ?, ?, "
        + ", ".join("?" * len(LEGACY))
        + ")",
        ("VAold", "acme", 1.5, "ACx", *LEGACY.values()),
    )
    conn.execute(
        "INSERT INTO api_keys (id, service_id, key_hash, created_at) VALUES (?, ?, ?, ?)",
        ("SKold", "VAold", b"h" * 32, 2.0),
    )
    conn.close()

    store = SqliteVerificationStore(path)
    await store.open()
    try:
        found = await store.get_tenant("VAold")
        assert found is not None
        assert found.policy == POLICY
        assert (found.name, found.created_at, found.accounts) == ("acme", 1.5, frozenset({"ACx"}))
        keyed = await store.key_for_hash(b"h" * 32)
        assert keyed is not None
        assert keyed[1] == found  # the key kept its tenant through the migration
    finally:
        await store.close()
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(services)")}
    # Expand only: a column added (updated_at), none dropped.
    assert columns == {"id", "name", "created_at", "accounts", "policy", "updated_at", *LEGACY}


async def test_sqlite_keeps_an_earlier_clave_reading_and_writing(tmp_path: Path) -> None:
    store = SqliteVerificationStore(tmp_path / "verify.db")
    await store.open()
    try:
        await store.put_tenant(Tenant("VAnew", "acme", POLICY, 1.5))
        # What an earlier clave reads (a rollback): the old columns hold the policy.
        old = sqlite3.connect(tmp_path / "verify.db")
        row = old.execute(f"SELECT {', '.join(LEGACY)} FROM services").fetchone()
        assert dict(zip(LEGACY, map(str, row), strict=True)) == LEGACY
        # An earlier clave changes the policy its way: this one reads the change.
        old.execute("UPDATE services SET code_length = 9, flags = '' WHERE id = 'VAnew'")
        old.commit()
        old.close()
        found = await store.get_tenant("VAnew")
        assert found is not None
        assert found.policy == replace(POLICY, code_length=9, flags=frozenset())
    finally:
        await store.close()


@pytest.mark.e2e
async def test_redis_reads_tenants_stored_field_by_field(redis_url: str) -> None:
    prefix = f"t{secrets.token_hex(4)}:"
    client = aioredis.Redis.from_url(redis_url)
    await client.hset(
        prefix + "svc:VAold", mapping={"name": "acme", "created_at": "1.5", "accounts": "ACx"}
    )
    # A fresh dict typed as redis-py's mapping (a dict[str, str] is not one: keys are invariant).
    await client.hset(prefix + "svc:VAold", mapping={k: v for k, v in LEGACY.items()})
    await client.hset(prefix + "svc-names", "acme", "VAold")
    await client.aclose()
    store = RedisVerificationStore(redis_url, prefix=prefix)
    await store.open()
    try:
        found = await store.get_tenant("VAold")
        assert found is not None
        assert found.policy == POLICY
        assert (found.name, found.created_at, found.accounts) == ("acme", 1.5, frozenset({"ACx"}))
        assert await store.get_tenant_by_name("acme") == found
    finally:
        await store.close()
        await drop_prefix(redis_url, prefix)


@pytest.mark.e2e
async def test_redis_keeps_an_earlier_clave_reading_and_writing(redis_url: str) -> None:
    prefix = f"t{secrets.token_hex(4)}:"
    store = RedisVerificationStore(redis_url, prefix=prefix)
    await store.open()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await store.put_tenant(Tenant("VAnew", "acme", POLICY, 1.5))
        stored = await client.hgetall(prefix + "svc:VAnew")
        assert {k: stored[k] for k in LEGACY} == LEGACY  # what an earlier clave reads
        await client.hset(prefix + "svc:VAnew", mapping={"code_length": "9", "flags": ""})
        found = await store.get_tenant("VAnew")
        assert found is not None
        assert found.policy == replace(POLICY, code_length=9, flags=frozenset())
    finally:
        await client.aclose()
        await store.close()
        await drop_prefix(redis_url, prefix)


async def test_an_earlier_claves_change_keeps_what_only_the_encoding_holds(
    tmp_path: Path,
) -> None:
    """A field Policy gained since (the messaging configurations) is not in the old columns:
    when an earlier clave changes those, its values win and the newer field stays."""
    store = SqliteVerificationStore(tmp_path / "verify.db")
    await store.open()
    try:
        messaging = (("GB", "MG" + "ab" * 16, 1.0, 2.0),)
        tenant = Tenant("VA" + "1" * 32, "acme", replace(POLICY, messaging=messaging), 1.5)
        await store.put_tenant(tenant)
        with sqlite3.connect(tmp_path / "verify.db") as conn:  # an earlier clave's update
            conn.execute("UPDATE services SET friendly_name = 'Acme Books' WHERE name = 'acme'")
        found = await store.get_tenant(tenant.id)
        assert found is not None
        assert found.policy.friendly_name == "Acme Books"
        assert found.policy.messaging == messaging
    finally:
        await store.close()


async def test_sqlite_gives_every_earlier_send_a_sid_of_its_own(tmp_path: Path) -> None:
    """Sends stored before sends had sids get random ones, and the attempts log finds them."""
    path = tmp_path / "verify.db"
    conn = sqlite3.connect(path, isolation_level=None)
    before = next(
        i for i, m in enumerate(MIGRATIONS) if getattr(m, "__name__", "") == "_attempt_sids"
    )
    migrate(conn, MIGRATIONS[:before])
    conn.execute(
        "INSERT INTO services (id, name, created_at, policy, "
        + ", ".join(LEGACY)
        + ") VALUES ('VAold', 'acme', 1.0, ?, "
        + ", ".join("?" * len(LEGACY))
        + ")",
        (encode_policy(POLICY).decode(), *LEGACY.values()),
    )
    conn.execute(
        "INSERT INTO verifications (id, service_id, to_addr, channel, code_length, key_id, "
        "code_seed, code_digest, status, check_attempts, max_checks, created_at, updated_at, "
        "expires_at) VALUES ('VEold', 'VAold', '+14155552671', 'sms', 6, 'k1', x'00', x'00', "
        "'approved', 1, 5, 1.0, 2.0, 601.0)"
    )
    for options in (None, '{"friendly_name": "Acme"}'):
        conn.execute(
            "INSERT INTO send_attempts (verification_id, service_id, to_addr, channel, status, "
            "created_at, updated_at, options) VALUES ('VEold', 'VAold', '+14155552671', 'sms', "
            "'delivered', 1.0, 1.5, ?)",
            (options,),
        )
    conn.close()
    store = SqliteVerificationStore(path)
    await store.open()
    try:
        found = await store.find_attempts(AttemptQuery(frozenset({"VAold"})), offset=0, limit=9)
        assert len(found) == 2
        # The sids the Twilio API showed for them before: from the verification's seed.
        assert {r.sid for r in found} == {seeded_attempt_sid(b"\x00", n) for n in (0, 1)}
        assert all(r.converted for r in found)
        verification = await store.get("VAold", "VEold")
        assert verification is not None
        assert {s.sid for s in verification.sends} == {r.sid for r in found}
        assert {s.payment for s in verification.sends} == {None}
    finally:
        await store.close()
