"""`clave db init` against a real PostgreSQL: a user and a database per forum domain, made by
the bootstrap superuser, by another superuser and by a CREATEROLE admin that is no superuser
(RDS's master user). The local server trusts every connection, so what a password is can only
be read from pg_authid (as a superuser); CONNECT is checked under trust auth too."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from clave.bootstrap import FORUM, Settings, build_domains
from clave.cli import main
from clave.platform.db_init import DbInitSettings, init_databases, scram_verifier
from clave.platform.errors import StoreError
from clave.platform.postgres import PostgresSql
from clave.platform.settings import Env, SettingsError, database_pool_size, database_url

ADMINS = ("bootstrap", "superuser", "createrole")


class Server:
    """The test's PostgreSQL, names unique to one test, and what they name dropped after it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"clave_t{secrets.token_hex(4)}_"
        self.superuser = self.at("postgres")

    def at(self, database: str, user: str | None = None) -> str:
        """The server's URL for `database`, as `user` (default: the bootstrap superuser)."""
        parts = urlsplit(self.url)
        netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}"))

    def name(self, what: str) -> str:
        return self.prefix + what

    async def admin(self, kind: str) -> str:
        """The admin URL of a bootstrap superuser, another superuser or a CREATEROLE user."""
        if kind == "bootstrap":
            return self.superuser
        attributes = "SUPERUSER" if kind == "superuser" else "CREATEROLE CREATEDB"
        await self.run(f"CREATE ROLE {self.name('admin')} LOGIN {attributes}")
        return self.at("postgres", self.name("admin"))

    def env(self, admin: str, passwords: dict[str, str]) -> dict[str, str]:
        """The variables of `clave db init`: each domain's user and database named after it."""
        env = {"CLAVE_DB_ADMIN_URL": admin}
        for domain, password in passwords.items():
            env[f"CLAVE_{domain.upper()}_DB"] = self.at(self.name(domain), self.name(domain))
            env[f"CLAVE_{domain.upper()}_DB_PASSWORD"] = password
        return env

    async def run(
        self, *statements: str, database: str = "postgres", user: str | None = None
    ) -> None:
        conn = await asyncpg.connect(self.at(database, user))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def fetch(
        self, sql: str, *args: object, database: str = "postgres"
    ) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.at(database))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def catalog(self) -> list[tuple[object, ...]]:
        """This test's roles and databases as the catalog holds them (passwords aside)."""
        roles = await self.fetch(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles "
            "WHERE starts_with(rolname, $1) ORDER BY 1",
            self.prefix,
        )
        databases = await self.fetch(
            "SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database "
            "WHERE starts_with(datname, $1) ORDER BY 1",
            self.prefix,
        )
        return [tuple(r) for r in [*roles, *databases]]

    async def password_is(self, role: str, password: str) -> bool:
        """Whether the verifier pg_authid holds for `role` is one of `password`."""
        [row] = await self.fetch("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
        stored = row[0]
        iterations, _, rest = stored.removeprefix("SCRAM-SHA-256$").partition(":")
        salt = base64.b64decode(rest.partition("$")[0])
        return bool(scram_verifier(password, salt=salt, iterations=int(iterations)) == stored)

    async def connects(self, database: str, user: str) -> bool:
        """Whether `user` may connect to `database` (CONNECT is checked under trust auth)."""
        try:
            conn = await asyncpg.connect(self.at(database, user))
        except asyncpg.InsufficientPrivilegeError:
            return False
        await conn.close()
        return True

    async def drop(self) -> None:
        for [name] in await self.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", self.prefix
        ):
            await self.run(f'DROP DATABASE "{name}" WITH (FORCE)')
        # The admin last: it granted the others.
        for [name] in await self.fetch(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) "
            "ORDER BY rolname = $2, rolname",
            self.prefix,
            self.name("admin"),
        ):
            await self.run(f'DROP ROLE "{name}"')


@pytest.fixture
async def server(postgres_url: str) -> AsyncIterator[Server]:
    found = Server(postgres_url)
    try:
        yield found
    finally:
        await found.drop()


async def init(env: dict[str, str], domains: tuple[str, ...] = FORUM) -> list[str]:
    lines: list[str] = []
    await init_databases(DbInitSettings.from_env(Env(env), domains), lines.append)
    return lines


async def test_the_verifier_is_the_one_postgresql_computes(server: Server) -> None:
    """Against verifiers the server made itself from the same salt: ASCII, SASLprep's mapping
    and normalisation, and passwords SASLprep prohibits (used as they are)."""
    role = server.name("scram")
    await server.run(f"CREATE ROLE {role}")
    for password in ("s3cret", "p@ss/w:rd'\\", "pässwörd", "ﬁx\u00a0it", "a\u00adb", "x\u0007y"):
        conn = await asyncpg.connect(server.superuser)
        try:
            statement = await conn.fetchval(
                f"SELECT format('ALTER ROLE {role} PASSWORD %L', $1::text)", password
            )
            await conn.execute(statement)
        finally:
            await conn.close()
        assert await server.password_is(role, password)
        assert not await server.password_is(role, password + "x")


@pytest.mark.parametrize("kind", ADMINS)
async def test_each_domain_gets_its_own_user_and_database(server: Server, kind: str) -> None:
    passwords = {domain: secrets.token_urlsafe(24) for domain in FORUM}
    env = server.env(await server.admin(kind), passwords)
    lines = await init(env)
    assert lines == [
        f"{domain}: user {server.name(domain)} created; database {server.name(domain)} "
        "created; only its owner may connect"
        for domain in FORUM
    ]
    for domain in FORUM:
        role = server.name(domain)
        [row] = await server.fetch(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
            "WHERE rolname = $1",
            role,
        )
        assert tuple(row) == (True, False, False, False)
        [owner] = await server.fetch(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", role
        )
        assert owner[0] == role
        assert await server.password_is(role, passwords[domain])
        for other in FORUM:
            # One domain's user cannot connect to another's database.
            assert await server.connects(server.name(other), role) == (other == domain)
    before = await server.catalog()

    again = await init(env)  # changes nothing, says so
    assert again == [
        f"{domain}: user {server.name(domain)} exists, password set; database "
        f"{server.name(domain)} is its own already; only its owner may connect"
        for domain in FORUM
    ]
    assert await server.catalog() == before
    for domain in FORUM:
        assert await server.password_is(server.name(domain), passwords[domain])


async def test_a_rotated_password_is_applied(server: Server) -> None:
    admin, role = await server.admin("createrole"), server.name("users")
    await init(server.env(admin, {"users": "first-secret"}), ("users",))
    assert await server.password_is(role, "first-secret")
    await init(server.env(admin, {"users": "second-secret"}), ("users",))
    assert await server.password_is(role, "second-secret")
    assert not await server.password_is(role, "first-secret")


@pytest.mark.parametrize("kind", ["superuser", "createrole"])
async def test_an_older_database_is_handed_over(server: Server, kind: str) -> None:
    """A database the admin made, with its tables (clave connected as the master user once):
    the domain's user gets it and what is in it, and nothing else of the admin's."""
    admin_url = await server.admin(kind)
    admin, role, database = server.name("admin"), server.name("users"), server.name("users")
    other = server.name("other")
    await server.run(f"CREATE DATABASE {database}", f"CREATE DATABASE {other}", user=admin)
    await server.run(
        "CREATE TABLE item (id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY)",
        database=database,
        user=admin,
    )

    lines = await init(server.env(admin_url, {"users": "s3cret"}), ("users",))

    assert lines == [
        f"users: user {role} created; database {database} handed over from {admin}; "
        "only its owner may connect"
    ]
    owners = await server.fetch(
        "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname IN ($1, $2)",
        database,
        other,
    )
    # REASSIGN OWNED gave away every database of the admin's; the others were given back.
    assert dict(owners) == {database: role, other: admin}
    [table] = await server.fetch(
        "SELECT tableowner FROM pg_tables WHERE tablename = 'item'", database=database
    )
    assert table[0] == role
    await server.run(
        "ALTER TABLE item ADD COLUMN name TEXT",
        "INSERT INTO item (name) VALUES ('x')",
        database=database,
        user=role,
    )
    # The second run finds it done.
    again = await init(server.env(admin_url, {"users": "s3cret"}), ("users",))
    assert "is its own already" in again[0]


async def test_the_bootstrap_superuser_cannot_hand_a_database_over(server: Server) -> None:
    """REASSIGN OWNED refuses the bootstrap superuser (it owns the system catalogs): the
    hand-over stops, undone, with what to do."""
    database = server.name("users")
    await server.run(f"CREATE DATABASE {database}")
    await server.run("CREATE TABLE item (id INTEGER)", database=database)
    with pytest.raises(StoreError, match="bootstrap superuser"):
        await init(server.env(server.superuser, {"users": "s3cret"}), ("users",))
    [owner] = await server.fetch(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
    )
    assert owner[0] == urlsplit(server.superuser).username


async def test_two_runs_at_once_both_succeed(server: Server) -> None:
    env = server.env(await server.admin("createrole"), {d: "s3cret" for d in FORUM})
    first, second = await asyncio.gather(init(env), init(env))
    assert sorted([first[0].split(";")[0], second[0].split(";")[0]]) == [
        f"users: user {server.name('users')} created",
        f"users: user {server.name('users')} exists, password set",
    ]
    assert len(await server.catalog()) == 1 + 2 * len(FORUM)  # the admin, users, databases


async def test_the_users_component_migrates_as_its_own_user(server: Server, tmp_path: Path) -> None:
    admin = await server.admin("createrole")
    password = "p@ss/w:rd%"  # quoted into the URL
    env = server.env(admin, {"users": password})
    await init(env, ("users",))
    settings = Settings.load(
        {
            **env,
            "CLAVE_SERVICES": "users",
            "CLAVE_DATA_DIR": str(tmp_path),
            "CLAVE_VERIFY_URL": "http://127.0.0.1:9",
            "CLAVE_VERIFY_KEY": "ck_" + "a" * 40,
            "CLAVE_DB_POOL_SIZE": "2",
        }
    )
    assert password not in repr(settings)
    [users] = build_domains(settings)
    await users.start()
    try:
        await users.ready()
    finally:
        await users.stop()
    role = server.name("users")
    tables = await server.fetch(
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'",
        database=role,
    )
    assert {name for name, _ in tables} >= {"clave_schema", "users"}
    assert {owner for _, owner in tables} == {role}


async def test_a_pool_holds_at_most_db_pool_size_connections(server: Server) -> None:
    env = server.env(await server.admin("createrole"), {"users": "s3cret"})
    await init(env, ("users",))
    pool_size = database_pool_size(Env({"CLAVE_DB_POOL_SIZE": "2"}))
    db = PostgresSql(database_url(Env(env), "users"), "pool", {"postgres": []}, max_size=pool_size)
    await db.open()
    role = server.name("users")
    seen = []

    async def count() -> None:
        for _ in range(10):
            rows = await server.fetch(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role
            )
            seen.append(rows[0][0])
            await asyncio.sleep(0.05)

    try:
        await asyncio.gather(count(), *(db.fetch("SELECT pg_sleep(0.3)") for _ in range(5)))
    finally:
        await db.close()
    assert max(seen) == 2


def test_the_command_prints_a_line_per_domain_and_never_a_password(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "Secret-" + secrets.token_hex(8)
    env = server.env(server.superuser, {"users": password, "threads": password + "2"})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLAVE_POSTS_DB", "sqlite")
    assert main(["db", "init"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "posts: CLAVE_POSTS_DB is not PostgreSQL: nothing to do",
        f"users: user {server.name('users')} created; database {server.name('users')} created; "
        "only its owner may connect",
        f"threads: user {server.name('threads')} created; database {server.name('threads')} "
        "created; only its owner may connect",
    ]

    monkeypatch.setenv("CLAVE_DB_ADMIN_URL", server.at("postgres", "nobody_here"))
    assert main(["db", "init", "--domains", "users"]) == 1
    failed = capsys.readouterr()
    assert "cannot connect to" in failed.err
    assert "as the admin user" in failed.err
    for text in (out.out, out.err, failed.out, failed.err):
        assert password not in text


async def test_a_domain_user_without_its_database_is_told_to_run_init(server: Server) -> None:
    env = server.env(await server.admin("createrole"), {"users": "s3cret"})
    await init(env, ("users",))
    url = urlunsplit(
        urlsplit(database_url(Env(env), "users"))._replace(path="/" + server.name("nodb"))
    )
    db = PostgresSql(url, "users", {"postgres": []})
    with pytest.raises(StoreError, match="create it with `clave db init`"):
        await db.open()


async def test_an_administrator_is_never_made_a_domain_user(server: Server) -> None:
    """Pointing a domain at the admin (as clave once connected) or at another administrator
    must not change that user's password."""
    admin = await server.admin("createrole")
    as_admin = server.env(admin, {"users": "s3cret"})
    as_admin["CLAVE_USERS_DB"] = server.at(server.name("users"), server.name("admin"))
    with pytest.raises(SettingsError, match="is the admin user"):
        await init(as_admin, ("users",))
    await server.run(f"CREATE ROLE {server.name('boss')} LOGIN CREATEROLE")
    as_boss = server.env(server.superuser, {"users": "s3cret"})
    as_boss["CLAVE_USERS_DB"] = server.at(server.name("users"), server.name("boss"))
    with pytest.raises(SettingsError, match="is an administrator"):
        await init(as_boss, ("users",))
    [row] = await server.fetch(
        "SELECT rolpassword FROM pg_authid WHERE rolname = $1", server.name("boss")
    )
    assert row[0] is None
