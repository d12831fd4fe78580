"""`clave db init`: one PostgreSQL user and one database per forum domain, made by the admin user.

Each forum domain then connects as its own user (`CLAVE_<DOMAIN>_DB` names it, with
`CLAVE_<DOMAIN>_DB_PASSWORD`), owns its database and may connect to no other. Run it as the
admin (on RDS the master user: CREATEROLE and CREATEDB, no superuser) whenever a password is
rotated or a domain is added; every step is idempotent, and two runs at once take turns.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Self
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from clave.platform.errors import StoreError
from clave.platform.settings import PREFIX, Env, SettingsError, database_url
from clave.platform.sql import PLAIN_IDENTIFIER
from clave.platform.urls import redacted, with_password

_POSTGRES = ("postgresql://", "postgres://")
# PostgreSQL's own default (scram_iterations).
SCRAM_ITERATIONS = 4096
_LOCK = "clave:db-init"
# The failures of a connection or a statement, wrapped into StoreError.
_DRIVER_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class DomainDatabase:
    """A forum domain's database and the user it connects as."""

    domain: str
    role: str
    database: str
    password: str = field(repr=False)

    @property
    def setting(self) -> str:
        """The variable that names the database."""
        return f"{PREFIX}{self.domain.upper()}_DB"


@dataclass(frozen=True, slots=True)
class DbInitSettings:
    """`CLAVE_DB_ADMIN_URL` (its password put in) and the forum databases to set up."""

    admin_url: str = field(repr=False)
    targets: tuple[DomainDatabase, ...]
    # Domains asked for whose database is not PostgreSQL: nothing to do for them.
    skipped: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Env, domains: Sequence[str]) -> Self:
        """`CLAVE_DB_ADMIN_URL`, `CLAVE_DB_ADMIN_PASSWORD` (unset: asyncpg reads PGPASSWORD)
        and, for each of `domains`, `CLAVE_<DOMAIN>_DB` with `CLAVE_<DOMAIN>_DB_PASSWORD`."""
        admin_url = env.optional("DB_ADMIN_URL")
        if admin_url is None:
            raise SettingsError(
                f"{PREFIX}DB_ADMIN_URL is required: the admin user's "
                "postgresql://user@host:5432/postgres"
            )
        if not admin_url.startswith(_POSTGRES):
            raise SettingsError(
                f"{PREFIX}DB_ADMIN_URL must be a postgresql:// URL, got {redacted(admin_url)!r}"
            )
        password = env.optional("DB_ADMIN_PASSWORD")
        if password is not None:
            try:
                admin_url = with_password(admin_url, password)
            except ValueError:
                raise SettingsError(
                    f"{PREFIX}DB_ADMIN_PASSWORD is set and {PREFIX}DB_ADMIN_URL has one too"
                ) from None
        targets, skipped = [], []
        for domain in domains:
            url = database_url(env, domain)
            if url.startswith(_POSTGRES):
                targets.append(_target(domain, url))
            else:
                skipped.append(domain)
        if not targets:
            names = ", ".join(f"{PREFIX}{d.upper()}_DB" for d in domains)
            raise SettingsError(f"nothing to do: no postgresql:// URL among {names}")
        _refuse_shared(targets)
        return cls(admin_url, tuple(targets), tuple(skipped))


def _refuse_shared(targets: Sequence[DomainDatabase]) -> None:
    """Two domains with one user or one database would each take it from the other."""
    for what, name_of in (("user", attrgetter("role")), ("database", attrgetter("database"))):
        first: dict[str, DomainDatabase] = {}
        for target in targets:
            other = first.setdefault(name_of(target), target)
            if other is not target:
                raise SettingsError(
                    f"{other.setting} and {target.setting} name the same {what} "
                    f"{name_of(target)}: each domain needs its own"
                )


def _target(domain: str, url: str) -> DomainDatabase:
    """A domain's user, database and password, from its URL (the password put in already)."""
    setting = f"{PREFIX}{domain.upper()}_DB"
    parts = urlsplit(url)
    role, database = unquote(parts.username or ""), unquote(parts.path.lstrip("/"))
    if not role:
        raise SettingsError(f"{setting} must name its user: postgresql://user@host/{database}")
    for what, name in (("user", role), ("database", database)):
        if not PLAIN_IDENTIFIER.fullmatch(name):
            raise SettingsError(
                f"{setting}: {what} {name!r} is not a plain identifier "
                "(a letter or _, then letters, digits or _; at most 63)"
            )
    if parts.password is None:
        raise SettingsError(
            f"{setting}_PASSWORD is required: the password clave db init gives user {role}"
        )
    return DomainDatabase(domain, role, database, unquote(parts.password))


async def init_databases(settings: DbInitSettings, report: Callable[[str], None]) -> None:
    """Create or update each target's user and database; `report` gets a line per domain."""
    for domain in settings.skipped:
        report(f"{domain}: {PREFIX}{domain.upper()}_DB is not PostgreSQL: nothing to do")
    conn = await _connect(settings.admin_url, "the admin user")
    try:
        # Two runs at once (two one-off tasks) take turns: each step reads, then writes.
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", _LOCK)
        admin: str = await conn.fetchval("SELECT current_user")
        superuser: bool = await conn.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        for target in settings.targets:
            if target.role == admin:
                raise SettingsError(
                    f"{target.setting}: its user {target.role} is the admin user; give each "
                    "domain a user of its own"
                )
            try:
                report(await _init_one(conn, settings.admin_url, target, superuser))
            except _DRIVER_ERRORS as exc:
                raise StoreError(f"{target.domain}: {exc}") from exc
    except _DRIVER_ERRORS as exc:
        raise StoreError(f"clave db init: {exc}") from exc
    finally:
        await conn.close()


async def _connect(url: str, who: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except _DRIVER_ERRORS as exc:
        raise StoreError(f"cannot connect to {redacted(url)} as {who}: {exc}") from exc


async def _init_one(
    conn: asyncpg.Connection, admin_url: str, target: DomainDatabase, superuser: bool
) -> str:
    role = await _ensure_role(conn, target)
    if not superuser:
        # PostgreSQL 16 lets a CREATEROLE admin (RDS's master user) give a role a database only
        # once it may SET ROLE to it; a superuser may anyway. Granted again: only a notice.
        await conn.execute(f"GRANT {quote_ident(target.role)} TO CURRENT_USER")
    database = await _ensure_database(conn, admin_url, target)
    # Owners keep CONNECT; nobody else (another domain's user) may connect.
    await conn.execute(f"REVOKE CONNECT ON DATABASE {quote_ident(target.database)} FROM PUBLIC")
    return f"{target.domain}: {role}; {database}; only its owner may connect"


async def _ensure_role(conn: asyncpg.Connection, target: DomainDatabase) -> str:
    """Create the domain's user, or set its password (a rotated secret applies on re-run)."""
    # Only a verifier reaches the server (as psql's \password sends): the password is in no
    # statement, so in no server log and no pg_stat_statements. CREATE ROLE takes no parameters.
    secret = _literal(scram_verifier(target.password))
    quoted = quote_ident(target.role)
    found = await _role(conn, target.role)
    if found is None:
        try:
            await conn.execute(
                f"CREATE ROLE {quoted} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"PASSWORD {secret}"
            )
            return f"user {target.role} created"
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            found = await _role(conn, target.role)  # made meanwhile, by another tool
    if found is not None and (found["rolsuper"] or found["rolcreaterole"]):
        raise SettingsError(
            f"{target.setting}: its user {target.role} is an administrator (SUPERUSER or "
            "CREATEROLE); clave db init will not change its password: give the domain a user "
            "of its own"
        )
    await conn.execute(f"ALTER ROLE {quoted} WITH LOGIN PASSWORD {secret}")
    return f"user {target.role} exists, password set"


async def _role(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = $1", name
    )


async def _ensure_database(conn: asyncpg.Connection, admin_url: str, target: DomainDatabase) -> str:
    """Create the domain's database owned by its user, or hand an existing one over to it."""
    owner = await _owner(conn, target.database)
    if owner is None:
        try:
            await conn.execute(
                f"CREATE DATABASE {quote_ident(target.database)} OWNER {quote_ident(target.role)}"
            )
            return f"database {target.database} created"
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            owner = await _owner(conn, target.database)  # made meanwhile, by another tool
    if owner == target.role:
        return f"database {target.database} is its own already"
    await _hand_over(admin_url, target)
    return f"database {target.database} handed over from {owner}"


async def _owner(conn: asyncpg.Connection, database: str) -> str | None:
    owner: str | None = await conn.fetchval(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
    )
    return owner


async def _hand_over(admin_url: str, target: DomainDatabase) -> None:
    """A database made before (by the admin, with its tables, as clave once did): its user
    becomes its owner and the owner of what the admin owns in it, so the service can migrate."""
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{target.database}"))
    conn = await _connect(url, "the admin user")
    role = quote_ident(target.role)
    try:
        async with conn.transaction():
            mine = "(SELECT oid FROM pg_roles WHERE rolname = current_user)"
            databases = await conn.fetch(
                f"SELECT datname FROM pg_database WHERE datdba = {mine} AND datname <> $1",  # noqa: S608
                target.database,
            )
            tablespaces = await conn.fetch(
                f"SELECT spcname FROM pg_tablespace WHERE spcowner = {mine}"  # noqa: S608
            )
            await conn.execute(f"ALTER DATABASE {quote_ident(target.database)} OWNER TO {role}")
            # Only in the database connected to, but for shared objects everywhere: REASSIGN
            # also gives away every other database and tablespace the admin owns. They are
            # given back before anything commits.
            try:
                await conn.execute(f"REASSIGN OWNED BY CURRENT_USER TO {role}")
            except asyncpg.DependentObjectsStillExistError as exc:
                raise StoreError(
                    f"{target.domain}: cannot hand database {target.database} over ({exc}): "
                    "run clave db init as an admin user other than the server's bootstrap "
                    f"superuser, or give the database's tables to {target.role} by hand"
                ) from exc
            for row in databases:
                await conn.execute(f"ALTER DATABASE {quote_ident(row[0])} OWNER TO CURRENT_USER")
            for row in tablespaces:
                await conn.execute(f"ALTER TABLESPACE {quote_ident(row[0])} OWNER TO CURRENT_USER")
    finally:
        await conn.close()


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted (any name: another database's, in a hand-over)."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A string literal for text without backslashes (a verifier: base64, `$` and `:`), so
    the same under either standard_conforming_strings."""
    if "\\" in text:
        raise ValueError("no backslashes in a literal written here")
    return "'" + text.replace("'", "''") + "'"


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL would store for `password` (RFC 5802, 7677)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", _saslprep(password).encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    encoded = (base64.b64encode(part).decode() for part in (salt, stored_key, server_key))
    salt_text, stored_text, server_text = encoded
    return f"SCRAM-SHA-256${iterations}:{salt_text}${stored_text}:{server_text}"


_PROHIBITED = (
    stringprep.in_table_a1,
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def _saslprep(password: str) -> str:
    """SASLprep (RFC 4013) as PostgreSQL applies it to a password (src/common/saslprep.c):
    ASCII as it is; otherwise mapped and NFKC-normalised, and a password SASLprep prohibits
    is used as it is."""
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if any(check(c) for c in prepared for check in _PROHIBITED):
        return password
    if any(stringprep.in_table_d1(c) for c in prepared) and (
        any(stringprep.in_table_d2(c) for c in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        return password
    return prepared
