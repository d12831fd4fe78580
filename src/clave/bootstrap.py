"""The one composition root: settings -> domains -> app. Nothing connects at import time.

All four domains in one process is the monolith; one domain per process is a component of the
split topology.
A domain that calls another gets the callee's client: in-process (httpx's ASGI transport into
this same app) when the callee is mounted here, over HTTP to `CLAVE_<CALLEE>_URL` when not.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from clave.platform import tracing
from clave.platform.app import build_app
from clave.platform.client import AppRef, ServiceClient, http_client
from clave.platform.client_ip import is_loopback
from clave.platform.domain import Domain
from clave.platform.files import secure_data_dir
from clave.platform.lean import LeanApp
from clave.platform.logs import configure_logging
from clave.platform.metrics import Metrics
from clave.platform.settings import (
    Env,
    PlatformSettings,
    SettingsError,
    database_pool_size,
    database_url,
)
from clave.posts.bootstrap import PostsDomain
from clave.posts.bootstrap import build_store as posts_store
from clave.posts.bootstrap import prepare_store as prepare_posts
from clave.threads.bootstrap import ThreadsDomain
from clave.threads.bootstrap import build_store as threads_store
from clave.threads.bootstrap import prepare_store as prepare_threads
from clave.threads.client import ThreadsClient
from clave.users.bootstrap import UsersDomain
from clave.users.bootstrap import build_store as users_store
from clave.users.bootstrap import prepare_store as prepare_users
from clave.users.client import UsersClient
from clave.users.settings import UsersSettings
from clave.verify.bootstrap import open_admin, verify_domain
from clave.verify.client import VerifyClient
from clave.verify.errors import TenantNotFound
from clave.verify.models import Channel, Policy
from clave.verify.settings import VerifySettings
from clave.verify.tenants import Tenants

DOMAINS = ("verify", "users", "threads", "posts")
FORUM = ("users", "threads", "posts")
# The verify tenant the users domain sends its codes as, and where its key is kept when clave
# provisions it itself (monolith, `clave up`); CLAVE_VERIFY_KEY overrides.
USERS_TENANT = "users"
USERS_KEY_FILE = "users-verify-key"
# The channels the users tenant starts with: anyone may sign up, so the costly and abused
# ones (a call, WhatsApp) are the operator's choice (`clave service update users --channels`).
USERS_CHANNELS = frozenset({Channel.SMS, Channel.EMAIL})


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How domains reach each other when they run in other processes."""

    urls: Mapping[str, str | None]
    verify_key: str | None
    timeout: float
    retries: int


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a clave process."""

    platform: PlatformSettings
    verify: VerifySettings
    users: UsersSettings
    # Each forum domain's database URL, its CLAVE_<DOMAIN>_DB_PASSWORD put in (so never shown).
    databases: Mapping[str, str] = field(repr=False)
    # Connections each worker may open to each PostgreSQL database (CLAVE_DB_POOL_SIZE).
    db_pool_size: int
    seed: bool
    clients: ClientSettings
    domains: tuple[str, ...]  # the domains this process serves (CLAVE_SERVICES)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate `CLAVE_*` once; SettingsError names the bad variable."""
        env = Env(environ)
        domains = env.items("SERVICES", DOMAINS)
        unknown = [name for name in domains if name not in DOMAINS]
        if unknown or not domains:
            raise SettingsError(
                f"CLAVE_SERVICES must list domains among {', '.join(DOMAINS)}, got {domains}"
            )
        urls = {name: env.optional(f"{name.upper()}_URL") for name in DOMAINS}
        for name, url in urls.items():
            if url and not url.startswith(("http://", "https://")):
                raise SettingsError(f"CLAVE_{name.upper()}_URL must be an http(s) URL, got {url!r}")
        platform, verify = PlatformSettings.from_env(env), VerifySettings.from_env(env)
        if "verify" in domains and verify.hmac_keys is None:
            _refuse_generated_keys_when_shared(platform, verify)
        return cls(
            platform=platform,
            verify=verify,
            users=UsersSettings.from_env(env),
            databases={name: database_url(env, name) for name in FORUM},
            db_pool_size=database_pool_size(env),
            seed=env.flag("SEED", False),
            clients=ClientSettings(
                urls=urls,
                verify_key=env.optional("VERIFY_KEY"),
                timeout=env.number("CLIENT_TIMEOUT", 5.0, low=0.1, high=120),
                retries=env.integer("CLIENT_RETRIES", 2, low=0, high=10),
            ),
            domains=tuple(domains),
        )


def _refuse_generated_keys_when_shared(platform: PlatformSettings, verify: VerifySettings) -> None:
    """A generated HMAC key lives in one data directory: another instance sharing the store,
    or a container that restarts, would not have it. Only a lone local instance may use one."""
    if verify.store.kind == "redis":
        why = "the verify store is shared (CLAVE_VERIFY_STORE is Redis)"
    elif not is_loopback(platform.host):
        why = f"clave listens beyond this machine (CLAVE_HOST={platform.host})"
    else:
        return
    raise SettingsError(
        f"CLAVE_HMAC_KEYS is required: {why}, so every instance must seal and check codes "
        "with the same keys; generate one with: echo k1:$(openssl rand -base64 32)"
    )


def _users_verify_key(settings: Settings) -> str:
    if settings.clients.verify_key:
        return settings.clients.verify_key
    path = settings.platform.data_dir / USERS_KEY_FILE
    if not path.exists():
        raise SettingsError(
            "CLAVE_VERIFY_KEY is required for the users service: create one with "
            f"`clave apikey create --service {USERS_TENANT}` where verify runs"
        )
    return path.read_text().strip()


def build_domains(
    settings: Settings,
    app: AppRef | None = None,
    *,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
) -> list[Domain]:
    """The domains named in settings, built but not started."""
    mounted = set(settings.domains)
    data_dir, pool_size = settings.platform.data_dir, settings.db_pool_size
    ref = app or AppRef()

    def http(name: str) -> httpx.AsyncClient:
        url = settings.clients.urls.get(name)
        if name not in mounted and not url:
            raise SettingsError(f"CLAVE_{name.upper()}_URL is required: {name} is not served here")
        return http_client(
            base_url=url, app=ref if name in mounted else None, timeout=settings.clients.timeout
        )

    def client(name: str, headers: dict[str, str] | None = None) -> ServiceClient:
        return ServiceClient(name, http(name), retries=settings.clients.retries, headers=headers)

    def users_client() -> UsersClient:
        return UsersClient(http("users"), retries=settings.clients.retries)

    domains: list[Domain] = []
    for name in settings.domains:
        if name == "verify":
            domains.append(
                verify_domain(settings.verify, settings.platform, clock=clock, metrics=metrics)
            )
        elif name == "users":
            auth = {"Authorization": f"Bearer {_users_verify_key(settings)}"}
            domains.append(
                UsersDomain(
                    users_store(settings.databases["users"], data_dir, pool_size=pool_size),
                    VerifyClient(client("verify", auth)),
                    settings.users,
                    seed=settings.seed,
                    proxy_hops=settings.platform.proxy_hops,
                    clock=clock,
                )
            )
        elif name == "threads":
            domains.append(
                ThreadsDomain(
                    threads_store(settings.databases["threads"], data_dir, pool_size=pool_size),
                    users_client(),
                    seed=settings.seed,
                    clock=clock,
                )
            )
        else:
            domains.append(
                PostsDomain(
                    posts_store(settings.databases["posts"], data_dir, pool_size=pool_size),
                    users_client(),
                    ThreadsClient(client("threads")),
                    seed=settings.seed,
                    clock=clock,
                )
            )
    return domains


def _write_secret(path: Path, text: str) -> None:
    """Create `path` (mode 0600) unless it exists; race-free across processes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def users_policy(default: Policy) -> Policy:
    """The users tenant's first policy: the default tenant's, on its channels among
    USERS_CHANNELS."""
    channels = default.channels & USERS_CHANNELS
    if not channels:
        raise SettingsError(
            "CLAVE_CHANNELS allows neither sms nor email, the channels the users tenant starts "
            f"with: create it first with `clave service create {USERS_TENANT} --channels ...`"
        )
    return replace(default, channels=channels)


async def _users_tenant(tenants: Tenants, default: Policy) -> None:
    """Create the users tenant when missing; an existing one keeps its policy (the operator's
    to change), so a restart never widens or narrows it back."""
    try:
        await tenants.get_tenant(USERS_TENANT)
    except TenantNotFound:
        await tenants.create_tenant(USERS_TENANT, users_policy(default))


async def prepare_async(settings: Settings, domains: tuple[str, ...] | None = None) -> None:
    """`prepare` from inside a running event loop."""
    domains = domains or settings.domains
    secure_data_dir(settings.platform.data_dir)
    if "verify" in domains:
        async with open_admin(settings.verify, settings.platform) as verify:
            key_file = settings.platform.data_dir / USERS_KEY_FILE
            tenants: Tenants = verify.tenants
            if settings.clients.verify_key:
                # A deployment's shared secret: the users component sends with it, so verify
                # (wherever it runs) accepts it for the users tenant.
                await _users_tenant(tenants, settings.verify.default_policy)
                # A rotated secret revokes the one installed before.
                await tenants.install_api_key(
                    USERS_TENANT, settings.clients.verify_key, name="CLAVE_VERIFY_KEY"
                )
            elif "users" in domains and not key_file.exists():
                await _users_tenant(tenants, settings.verify.default_policy)
                key = await tenants.create_api_key(USERS_TENANT, name=f"{USERS_KEY_FILE} file")
                _write_secret(key_file, key)
            await tenants.adopt_v2_tenants()
            # The bound holds for every tenant, also after the deployment's budget changed.
            broken = await tenants.over_the_guess_bound()
            if broken:
                raise SettingsError(
                    "CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION breaks the guess bound of "
                    + "; ".join(broken)
                    + " (give those services longer codes or their own "
                    "failed_checks_per_destination with `clave service update`)"
                )
    preparers = {"users": prepare_users, "threads": prepare_threads, "posts": prepare_posts}
    for name in FORUM:
        if name in domains:
            await preparers[name](
                settings.databases[name], settings.platform.data_dir, seed=settings.seed
            )


def prepare(settings: Settings, domains: tuple[str, ...] | None = None) -> None:
    """Create schemas, seed data and provision the users' verify key for `domains` (default:
    this process's), once, before any worker process starts (`clave serve` runs it in its
    master, `clave up` for every domain before any component starts)."""
    asyncio.run(prepare_async(settings, domains))


def create_app() -> LeanApp:
    """ASGI app factory for a worker process (granian calls it in each worker)."""
    settings = Settings.load()
    configure_logging(settings.platform.log_level, settings.platform.log_format)
    ref = AppRef()
    # Traces when an OTLP endpoint is configured; named after what this process serves.
    tracing.configure("monolith" if len(settings.domains) > 1 else settings.domains[0])
    metrics = Metrics()  # this worker's instruments (PROMETHEUS_MULTIPROC_DIR: shared)
    app = build_app(settings.platform, build_domains(settings, ref, metrics=metrics), metrics)
    ref.app = app
    return app
