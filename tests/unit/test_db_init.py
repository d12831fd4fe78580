"""`clave db init`'s settings: what it refuses before it connects anywhere."""

from __future__ import annotations

import pytest

from clave.bootstrap import FORUM
from clave.platform.db_init import DbInitSettings, DomainDatabase
from clave.platform.settings import Env, SettingsError

ADMIN = "postgresql://clave@db.example:5432/postgres?sslmode=require"
USERS = "postgresql://clave_users@db.example:5432/users"


def load(env: dict[str, str], domains: tuple[str, ...] = FORUM) -> DbInitSettings:
    return DbInitSettings.from_env(Env(env), domains)


def test_each_postgresql_domain_with_its_user_database_and_password() -> None:
    settings = load(
        {
            "CLAVE_DB_ADMIN_URL": ADMIN,
            "CLAVE_DB_ADMIN_PASSWORD": "m@ster",
            "CLAVE_USERS_DB": USERS,
            "CLAVE_USERS_DB_PASSWORD": "p@ss/w:rd",
            "CLAVE_THREADS_DB": "postgres://clave_threads@db.example/threads",
            "CLAVE_THREADS_DB_PASSWORD": "t",
        }
    )
    assert (
        settings.admin_url == "postgresql://clave:m%40ster@db.example:5432/postgres?sslmode=require"
    )
    assert settings.targets == (
        DomainDatabase("users", "clave_users", "users", "p@ss/w:rd"),
        DomainDatabase("threads", "clave_threads", "threads", "t"),
    )
    assert settings.skipped == ("posts",)  # SQLite: nothing to create
    assert "m@ster" not in repr(settings)
    assert "m%40ster" not in repr(settings)
    assert "p@ss" not in repr(settings)
    # No admin password: asyncpg reads PGPASSWORD, as for the services.
    bare = load({"CLAVE_DB_ADMIN_URL": ADMIN, "CLAVE_USERS_DB": USERS + "?x=1"} | _pw("users"))
    assert bare.admin_url == ADMIN


def _pw(*domains: str) -> dict[str, str]:
    return {f"CLAVE_{d.upper()}_DB_PASSWORD": "s3cret" for d in domains}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLAVE_USERS_DB": USERS} | _pw("users"), "CLAVE_DB_ADMIN_URL is required"),
        (
            {"CLAVE_DB_ADMIN_URL": "mysql://root:s3cret@h/x", "CLAVE_USERS_DB": USERS},
            r"must be a postgresql:// URL, got 'mysql://root:\*\*\*@h/x'",
        ),
        (
            {
                "CLAVE_DB_ADMIN_URL": "postgresql://clave:old@h/postgres",
                "CLAVE_DB_ADMIN_PASSWORD": "s3cret",
            },
            "CLAVE_DB_ADMIN_PASSWORD is set and CLAVE_DB_ADMIN_URL has one too",
        ),
        ({"CLAVE_DB_ADMIN_URL": ADMIN}, "nothing to do: no postgresql:// URL among CLAVE_USERS_DB"),
        (
            {"CLAVE_DB_ADMIN_URL": ADMIN, "CLAVE_USERS_DB": USERS},
            "CLAVE_USERS_DB_PASSWORD is required",
        ),
        (
            {"CLAVE_DB_ADMIN_URL": ADMIN, "CLAVE_USERS_DB": "postgresql://db.example/users"}
            | _pw("users"),
            "CLAVE_USERS_DB must name its user",
        ),
        (
            {"CLAVE_DB_ADMIN_URL": ADMIN, "CLAVE_USERS_DB": "postgresql://x%22y@h/users"}
            | _pw("users"),
            """CLAVE_USERS_DB: user 'x"y' is not a plain identifier""",
        ),
        (
            {"CLAVE_DB_ADMIN_URL": ADMIN, "CLAVE_USERS_DB": "postgresql://u@h/my-users"}
            | _pw("users"),
            "CLAVE_USERS_DB: database 'my-users' is not a plain identifier",
        ),
        (
            {
                "CLAVE_DB_ADMIN_URL": ADMIN,
                "CLAVE_USERS_DB": USERS,
                "CLAVE_POSTS_DB": "postgresql://clave_users@db.example/posts",
            }
            | _pw("users", "posts"),
            "CLAVE_USERS_DB and CLAVE_POSTS_DB name the same user clave_users",
        ),
        (
            {
                "CLAVE_DB_ADMIN_URL": ADMIN,
                "CLAVE_USERS_DB": USERS,
                "CLAVE_POSTS_DB": "postgresql://clave_posts@db.example/users",
            }
            | _pw("users", "posts"),
            "CLAVE_USERS_DB and CLAVE_POSTS_DB name the same database users",
        ),
    ],
)
def test_what_it_refuses_is_named_and_no_password_shown(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        load(env)
    assert "s3cret" not in str(info.value)


def test_only_the_domains_asked_for() -> None:
    env = {"CLAVE_DB_ADMIN_URL": ADMIN, "CLAVE_USERS_DB": USERS} | _pw("users")
    assert [t.domain for t in load(env, ("users",)).targets] == ["users"]
    with pytest.raises(SettingsError, match="no postgresql:// URL among CLAVE_POSTS_DB"):
        load(env, ("posts",))
