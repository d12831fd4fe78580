"""Composition of the verify domain: settings -> stores, hasher, providers, tenants; built
once, here, for the app (`verify_domain`) and for the commands that manage tenants
(`open_admin`)."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from litestar.types import ControllerRouterHandler

from clave.platform.errors import ExceptionHandler
from clave.platform.lean import LeanRoute
from clave.platform.metrics import Metrics, Timed
from clave.platform.openapi_errors import ErrorTable, FormTable
from clave.platform.settings import PlatformSettings, SettingsError
from clave.verify import api, twilio_api
from clave.verify.client_ips import ClientIps
from clave.verify.codes import CodeHasher
from clave.verify.delivery.aws import SesEmailProvider, SnsSmsProvider
from clave.verify.delivery.base import Provider, ProviderRouter
from clave.verify.delivery.dispatcher import Dispatcher
from clave.verify.delivery.events import EventNotifier
from clave.verify.delivery.inbox import (
    InboxProvider,
    InboxStore,
    MemoryInboxStore,
    SqliteInboxStore,
)
from clave.verify.delivery.settings import ProviderSettings
from clave.verify.delivery.smtp import SmtpProvider
from clave.verify.delivery.twilio import TwilioMessagingProvider, TwilioVoiceProvider
from clave.verify.delivery.webhook import SignedWebhook, WebhookProvider
from clave.verify.errors import TenantNameTaken
from clave.verify.factors import Factors
from clave.verify.fraud import FraudGuard
from clave.verify.limits import RateLimiter
from clave.verify.line_types import LineTypes, NumberMetadata, TwilioLookup
from clave.verify.models import Channel, Policy
from clave.verify.reporting import AttemptsLog
from clave.verify.safe_list import SafeNumbers
from clave.verify.sealing import SecretBox, hkdf_sha256
from clave.verify.service import VerifyService
from clave.verify.settings import StoreSettings, VerifySettings, parse_hmac_keys
from clave.verify.store.base import VerifyBackend
from clave.verify.store.counters import CounterStore, MemoryCounters, SqliteCounters
from clave.verify.store.memory import MemoryVerificationStore
from clave.verify.store.sqlite import SqliteVerificationStore
from clave.verify.telemetry import NO_TELEMETRY, PrometheusTelemetry, VerifyTelemetry
from clave.verify.tenants import DEFAULT_TENANT, Tenants
from clave.verify.twilio_api import twilio_error_handler

log = logging.getLogger("clave.verify")

KEY_FILE = "verify-hmac-keys"


def load_or_create_key_file(path: Path) -> tuple[tuple[str, bytes], ...]:
    """The HMAC keys in `path`, creating it with one random key the first time.

    Creation is race-free across worker processes: the file is written under a temporary name
    and hard-linked into place, which fails if another process got there first.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Random, so two instances that each generated a key never share an id: a code sealed
        # under another instance's key is then "no longer configured", not silently wrong.
        key_id = "k_" + secrets.token_hex(4)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# clave code HMAC keys, newest first: id:base64secret. Keep secret.\n")
            handle.write(f"{key_id}:{secret}\n")
        try:
            os.link(tmp, path)
            log.warning("generated HMAC key file %s; set CLAVE_HMAC_KEYS in production", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return parse_hmac_keys(path.read_text(), source=str(path))


def code_hasher(settings: VerifySettings, data_dir: Path) -> CodeHasher:
    """The hasher over CLAVE_HMAC_KEYS, or over the key file generated in the data directory."""
    keys = settings.hmac_keys or load_or_create_key_file(data_dir / KEY_FILE)
    return CodeHasher(dict(keys), active_key_id=keys[0][0])


def secret_box(settings: VerifySettings, data_dir: Path) -> SecretBox:
    """The box sealing factor secrets: under CLAVE_ENCRYPTION_KEYS' newest key; without them,
    under keys derived from the code HMAC keys (HKDF-SHA256, one per HMAC key, `hkdf-<id>`),
    so every instance that shares the HMAC keys opens the same secrets. Set
    CLAVE_ENCRYPTION_KEYS in production, then run `clave factors rekey`: from then on an HMAC
    key may rotate away without taking a factor's secret with it."""
    hmac_keys = settings.hmac_keys or load_or_create_key_file(data_dir / KEY_FILE)
    derived = tuple((f"hkdf-{key_id}", _derived(secret)) for key_id, secret in hmac_keys)
    # The derived keys stay readable beside CLAVE_ENCRYPTION_KEYS: secrets sealed before it
    # was set still open, and `clave factors rekey` moves them under it.
    keys = (*(settings.encryption_keys or ()), *derived)
    return SecretBox(dict(keys), active_key_id=keys[0][0])


def _derived(secret: bytes) -> bytes:
    return hkdf_sha256(secret, info=b"clave factor secrets")


def build_store(settings: StoreSettings, data_dir: Path, *, events: bool) -> VerifyBackend:
    """The store CLAVE_VERIFY_STORE names; with `events`, it records the events closings raise."""
    if settings.kind == "memory":
        return MemoryVerificationStore(events=events)
    if settings.kind == "redis" and settings.url is not None:
        # Imported here: redis-py costs a worker ~8 MiB, which a SQLite deployment never needs.
        from clave.verify.store.redis import RedisVerificationStore

        return RedisVerificationStore(settings.url, prefix=settings.redis_prefix, events=events)
    return SqliteVerificationStore(settings.database(data_dir), events=events)


def build_counters(settings: StoreSettings, data_dir: Path) -> CounterStore:
    """Rate-limit counters on the same kind of store as the verifications (SQLite: a file of
    their own beside the verifications' database)."""
    if settings.kind == "memory":
        return MemoryCounters()
    if settings.kind == "redis" and settings.url is not None:
        from clave.verify.store.redis_counters import RedisCounters  # (as in build_store)

        return RedisCounters(settings.url, prefix=settings.redis_prefix)
    return SqliteCounters(settings.beside(data_dir, "limits.db"))


def build_inbox(settings: VerifySettings, data_dir: Path) -> InboxStore | None:
    """The dev inbox, when CLAVE_DEV_INBOX is on."""
    if not settings.providers.dev_inbox:
        return None
    if settings.store.kind == "memory":
        return MemoryInboxStore()
    # A local development aid: a file in the data directory even when the verifications
    # themselves live in Redis.
    return SqliteInboxStore(data_dir / "inbox.db")


def create_schemas(*stores: object) -> None:
    """Create the SQLite schemas synchronously, once, before worker processes start (each
    would otherwise race to create them); Redis and memory need none."""
    for store in stores:
        if isinstance(store, SqliteVerificationStore | SqliteInboxStore):
            store.setup()


def route_providers(
    providers: Sequence[Provider], order: Mapping[Channel, Sequence[str] | None]
) -> dict[Channel, list[Provider]]:
    """Per channel, the providers to try: the configured order (CLAVE_<CHANNEL>_PROVIDERS) or,
    when unset, every provider serving the channel in the order they were built."""
    routes: dict[Channel, list[Provider]] = {}
    for channel in Channel:
        serving = [p for p in providers if channel in p.channels]
        wanted = order.get(channel)
        if wanted is None:
            routes[channel] = serving
            continue
        by_name = {p.name: p for p in serving}
        missing = [name for name in wanted if name not in by_name]
        if missing:
            raise SettingsError(
                f"CLAVE_{channel.value.upper()}_PROVIDERS names {missing}, which are not "
                f"configured for {channel} (configured: {sorted(by_name) or 'none'})"
            )
        routes[channel] = [by_name[name] for name in wanted]
    return routes


def build_providers(settings: ProviderSettings, inbox: InboxStore | None) -> ProviderRouter:
    """Every configured provider (the dev inbox's into `inbox`), routed per channel."""
    providers: list[Provider] = []
    if settings.twilio is not None:
        providers.append(TwilioMessagingProvider(settings.twilio))
        if settings.twilio.call_from or settings.twilio.sms_from:
            providers.append(TwilioVoiceProvider(settings.twilio))
    if settings.aws is not None and settings.sns:
        providers.append(SnsSmsProvider(settings.aws, sender_id=settings.sns_sender_id))
    if settings.smtp is not None and settings.email_from:
        providers.append(SmtpProvider(settings.smtp, settings.email_from))
    if settings.aws is not None and settings.ses_from:
        providers.append(SesEmailProvider(settings.aws, source=settings.ses_from))
    if settings.webhook is not None:
        hook = SignedWebhook(settings.webhook.url, settings.webhook.secret)
        providers.append(WebhookProvider(hook, settings.webhook_channels))
    if inbox is not None:
        providers.append(InboxProvider(inbox))
    routes = route_providers(providers, settings.routes)
    for channel, serving in routes.items():
        names = [provider.name for provider in serving]
        if "inbox" in names and len(names) > 1:
            # As a fallback, the inbox would catch a real person's code when the real
            # provider refuses it, and show it to whoever reads the inbox.
            raise SettingsError(
                f"CLAVE_DEV_INBOX=true beside a real provider for {channel.value} "
                f"({', '.join(n for n in names if n != 'inbox')}): the dev inbox is for "
                f"development only; turn it off, or set CLAVE_{channel.value.upper()}_"
                "PROVIDERS to one of them"
            )
    return ProviderRouter(routes)


def build_tenants(
    store: VerifyBackend, settings: VerifySettings, clock: Callable[[], float]
) -> Tenants:
    """Tenants and their keys, each tenant's policy held to the deployment's guess budget."""
    budget = settings.limits.failed_checks_per_destination
    return Tenants(
        store,
        clock,
        cache_seconds=settings.key_cache_seconds,
        guess_budget=(budget.count, budget.window),
    )


async def ensure_default_tenant(tenants: Tenants, policy: Policy) -> None:
    """Make sure the default tenant exists (with `policy` when it is created)."""
    try:
        await tenants.ensure_tenant(DEFAULT_TENANT, policy)
    except TenantNameTaken:
        # Another worker created it between our read and write; its row is the same.
        await tenants.ensure_tenant(DEFAULT_TENANT, policy)


@dataclass(frozen=True, slots=True)
class VerifyAdmin:
    """What the commands that manage tenants use: no providers, no dispatcher."""

    settings: VerifySettings
    tenants: Tenants
    guard: FraudGuard
    safe_numbers: SafeNumbers
    factors: Factors


@contextlib.asynccontextmanager
async def open_admin(
    settings: VerifySettings, platform: PlatformSettings, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[VerifyAdmin]:
    """Verify's stores, schemas created and connected, the default tenant there: for
    `prepare` and the `clave apikey | service | fraud` commands."""
    data_dir = platform.data_dir
    # As the serving processes will, so that `clave serve` stops in its master, once, rather
    # than in every worker: a missing key file is generated, a bad one refused, and providers
    # built (and dropped) to refuse an order naming one not configured.
    code_hasher(settings, data_dir)
    inbox = build_inbox(settings, data_dir)
    for provider in build_providers(settings.providers, inbox).all():
        await provider.close()
    store = build_store(settings.store, data_dir, events=settings.events is not None)
    counters = build_counters(settings.store, data_dir)
    create_schemas(store, inbox)
    tenants = build_tenants(store, settings, clock)
    await store.open()
    try:
        await counters.open()
        try:
            await ensure_default_tenant(tenants, settings.default_policy)
            guard = FraudGuard(counters, settings.guard, clock, safe_list=store)
            factors = Factors(
                store,
                secret_box(settings, data_dir),
                counters,
                clock,
                failed_limit=settings.limits.failed_totp,
            )
            yield VerifyAdmin(settings, tenants, guard, SafeNumbers(store, clock), factors)
        finally:
            await counters.close()
    finally:
        await store.close()


@dataclass(eq=False)
class VerifyDomain:
    """The verify domain, as `verify_domain` composed it; nothing connects until `start()`."""

    settings: VerifySettings
    store: VerifyBackend
    counters: CounterStore
    inbox: InboxStore | None
    providers: ProviderRouter
    dispatcher: Dispatcher
    notifier: EventNotifier | None
    guard: FraudGuard
    verify: VerifyService
    factors: Factors
    tenants: Tenants
    client_ips: ClientIps
    safe_numbers: SafeNumbers
    line_types: LineTypes = field(default_factory=NumberMetadata)
    name: str = field(default="verify", init=False)

    async def start(self) -> None:
        """Connect, make sure the default tenant exists, and start delivering."""
        await self.store.open()
        await self.counters.open()
        if self.inbox is not None:
            await self.inbox.open()
        await ensure_default_tenant(self.tenants, self.settings.default_policy)
        unserved = [c.value for c in Channel if not self.providers.available(c)]
        if unserved:
            log.info("no provider for channel(s) %s: sends there are refused", ", ".join(unserved))
        if self.settings.providers.dev_inbox:
            log.warning("dev inbox is on: every message, code included, shows at /dev/inbox")
        self.dispatcher.start()
        self.guard.start()
        if self.notifier is not None:
            self.notifier.start()

    async def stop(self) -> None:
        """Stop delivering and disconnect."""
        with contextlib.suppress(Exception):
            await self.dispatcher.stop()
        await self.guard.stop()
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                await self.notifier.stop()
        for provider in self.providers.all():
            await provider.close()
        await self.line_types.close()
        if self.inbox is not None:
            await self.inbox.close()
        await self.counters.close()
        await self.store.close()

    async def ready(self) -> None:
        """Raise unless the store answers."""
        await self.store.ping()

    def route_handlers(self) -> Sequence[ControllerRouterHandler]:
        """The verify routes."""
        return api.routers(
            self.verify,
            self.tenants,
            self.settings,
            client_ips=self.client_ips,
            inbox=self.inbox,
            safe_numbers=self.safe_numbers,
            attempts=AttemptsLog(self.store),
            factors=self.factors,
        )

    def lean_routes(self) -> Sequence[LeanRoute]:
        """The native send and check, answered without the framework's per-request work."""
        context = api.verify_context(self.verify, self.tenants, self.settings, self.client_ips)
        return api.lean_routes(context)

    @property
    def openapi_errors(self) -> ErrorTable:
        """The statuses its routes answer beyond the rules (for /openapi.json)."""
        return {**api.OPENAPI_ERRORS, **twilio_api.OPENAPI_ERRORS}

    @property
    def openapi_forms(self) -> FormTable:
        """The Twilio-compatible API's form bodies."""
        return twilio_api.OPENAPI_FORMS

    @property
    def error_renderers(self) -> Mapping[str, ExceptionHandler]:
        """The Twilio-compatible API's errors, Twilio's shape, unknown paths under it too."""
        return {"/v2/": twilio_error_handler}


def verify_domain(
    settings: VerifySettings,
    platform: PlatformSettings,
    *,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
) -> VerifyDomain:
    """The verify domain, composed from settings: the one place it is built."""
    try:
        return _compose(settings, platform, clock, metrics)
    except ValueError as exc:  # an unreadable key file
        raise SettingsError(str(exc)) from exc


def _compose(
    settings: VerifySettings,
    platform: PlatformSettings,
    clock: Callable[[], float],
    metrics: Metrics | None,
) -> VerifyDomain:
    data_dir = platform.data_dir
    hasher = code_hasher(settings, data_dir)
    store = build_store(settings.store, data_dir, events=settings.events is not None)
    telemetry: VerifyTelemetry = NO_TELEMETRY
    if metrics is not None:
        telemetry = PrometheusTelemetry(metrics)
        # Every store operation timed, whichever port calls it (one proxy for them all).
        store = cast(VerifyBackend, Timed(store, metrics.store_duration, settings.store.kind))
    inbox = build_inbox(settings, data_dir)
    providers = build_providers(settings.providers, inbox)
    dispatcher = Dispatcher(store, hasher, providers, clock, settings.outbox, telemetry)
    notifier = None
    if settings.events is not None:
        hook = SignedWebhook(settings.events.url, settings.events.secret)
        notifier = EventNotifier(store, hook, clock, settings.outbox, telemetry)
    counters = build_counters(settings.store, data_dir)
    guard = FraudGuard(counters, settings.guard, clock, safe_list=store)
    twilio = settings.providers.twilio
    line_types: LineTypes = (
        TwilioLookup(
            twilio.account_sid,
            twilio.auth_token,
            base_url=twilio.lookup_url,
            timeout=min(twilio.timeout, 5.0),
            clock=clock,
        )
        if twilio is not None
        else NumberMetadata()
    )
    factors = Factors(
        store,
        secret_box(settings, data_dir),
        counters,
        clock,
        failed_limit=settings.limits.failed_totp,
    )
    verify = VerifyService(
        store,
        hasher,
        providers,
        clock,
        on_queued=dispatcher.notify,
        limiter=RateLimiter(counters, settings.limits),
        guard=guard,
        test_destinations=settings.test_destinations,
        line_types=line_types,
        telemetry=telemetry,
    )
    return VerifyDomain(
        settings=settings,
        store=store,
        counters=counters,
        inbox=inbox,
        providers=providers,
        dispatcher=dispatcher,
        notifier=notifier,
        guard=guard,
        verify=verify,
        factors=factors,
        tenants=build_tenants(store, settings, clock),
        client_ips=ClientIps(settings.limit_peer_ip, platform.proxy_hops),
        safe_numbers=SafeNumbers(store, clock),
        line_types=line_types,
    )
