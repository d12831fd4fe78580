"""The verify store URL, parsed once, and what the composition builds from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from clave.bootstrap import Settings, build_domains
from clave.platform.settings import Env, SettingsError
from clave.verify.bootstrap import build_counters, build_store, open_admin
from clave.verify.settings import StoreSettings
from clave.verify.store.counters import MemoryCounters, SqliteCounters
from clave.verify.store.memory import MemoryVerificationStore
from clave.verify.store.redis import RedisVerificationStore
from clave.verify.store.redis_counters import RedisCounters
from clave.verify.store.sqlite import SqliteVerificationStore


def store(value: str | None = None, **extra: str) -> StoreSettings:
    env = {"CLAVE_VERIFY_STORE": value} if value is not None else {}
    return StoreSettings.from_env(Env(env | extra))


def test_each_form_parses_to_its_kind(tmp_path: Path) -> None:
    assert store() == StoreSettings("sqlite")
    assert store("sqlite") == StoreSettings("sqlite")
    assert store(f"sqlite:///{tmp_path}/v.db") == StoreSettings("sqlite", path=tmp_path / "v.db")
    assert store("sqlite:///relative/v.db").path == Path("relative/v.db")
    assert store("memory") == StoreSettings("memory")
    redis = store("redis://cache:6379/1", CLAVE_REDIS_PREFIX="x:")
    assert (redis.kind, redis.url, redis.redis_prefix) == ("redis", "redis://cache:6379/1", "x:")
    assert store("rediss://cache:6379/0").kind == "redis"


@pytest.mark.parametrize("value", ["mysql://x", "sqlite:///", "redis", "sqlite:/x.db", "Memory"])
def test_a_bad_store_stops_startup_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="CLAVE_VERIFY_STORE must be sqlite, sqlite:///path"):
        store(value)


def test_the_redis_url_never_shows() -> None:
    settings = store("redis://cache:6379/0", CLAVE_REDIS_PASSWORD="s3cret")
    assert settings.url == "redis://:s3cret@cache:6379/0"
    assert "s3cret" not in repr(settings)
    with pytest.raises(SettingsError) as refused:
        store("valkey://:s3cret@cache:6379/0")
    assert "s3cret" not in str(refused.value)


def test_each_kind_builds_its_backends(tmp_path: Path) -> None:
    kinds = {
        "memory": (MemoryVerificationStore, MemoryCounters),
        "sqlite": (SqliteVerificationStore, SqliteCounters),
        "redis://127.0.0.1:9/0": (RedisVerificationStore, RedisCounters),
    }
    for value, (store_type, counters_type) in kinds.items():
        settings = store(value)
        assert isinstance(build_store(settings, tmp_path, events=False), store_type)
        assert isinstance(build_counters(settings, tmp_path), counters_type)


async def test_counters_live_beside_the_store_a_sqlite_path_names(tmp_path: Path) -> None:
    data_dir, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    settings = store(f"sqlite:///{elsewhere}/verify.db")
    verifications = build_store(settings, data_dir, events=False)
    counters = build_counters(settings, data_dir)
    for backend in (verifications, counters):
        await backend.open()
        await backend.close()
    assert sorted(p.name for p in elsewhere.glob("*.db")) == ["limits.db", "verify.db"]
    assert not data_dir.exists()


async def test_by_default_both_live_in_the_data_directory(tmp_path: Path) -> None:
    settings = store()
    for backend in (
        build_store(settings, tmp_path, events=False),
        build_counters(settings, tmp_path),
    ):
        await backend.open()
        await backend.close()
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["limits.db", "verify.db"]


async def test_the_admin_refuses_what_the_serving_processes_would(tmp_path: Path) -> None:
    # `clave serve` prepares through it in its master: a bad provider order stops it there.
    settings = Settings.load({"CLAVE_DATA_DIR": str(tmp_path), "CLAVE_SMS_PROVIDERS": "twilio"})
    with pytest.raises(SettingsError, match="CLAVE_SMS_PROVIDERS names"):
        async with open_admin(settings.verify, settings.platform):
            pass
    fine = Settings.load({"CLAVE_DATA_DIR": str(tmp_path), "CLAVE_DEV_INBOX": "true"})
    async with open_admin(fine.verify, fine.platform) as admin:
        assert [s.name for s in await admin.tenants.list_tenants()] == ["default"]
    assert {"verify.db", "limits.db", "inbox.db", "verify-hmac-keys"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_each_forum_store_gets_the_pool_size(tmp_path: Path) -> None:
    """CLAVE_DB_POOL_SIZE reaches every domain's PostgreSQL pool (nothing connects here)."""
    settings = Settings.load(
        {
            "CLAVE_SERVICES": "users,threads,posts",
            "CLAVE_DATA_DIR": str(tmp_path),
            "CLAVE_VERIFY_URL": "http://127.0.0.1:9",
            "CLAVE_VERIFY_KEY": "ck_" + "a" * 40,
            "CLAVE_DB_POOL_SIZE": "3",
        }
        | {f"CLAVE_{d}_DB": f"postgresql://u@h/{d.lower()}" for d in ("USERS", "THREADS", "POSTS")}
    )
    for domain in build_domains(settings):
        assert domain.store._db._max_size == 3  # type: ignore[attr-defined]
