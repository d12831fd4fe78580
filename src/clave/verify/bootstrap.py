"""Composition root of the verify domain: store, hasher, providers, services, dispatcher."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from litestar.types import ControllerRouterHandler

from clave.platform.errors import ExceptionHandler
from clave.platform.settings import PlatformSettings, SettingsError
from clave.verify import api
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
from clave.verify.delivery.smtp import SmtpProvider
from clave.verify.delivery.twilio import TwilioMessagingProvider, TwilioVoiceProvider
from clave.verify.delivery.webhook import SignedWebhook, WebhookProvider
from clave.verify.fraud import FraudGuard
from clave.verify.limits import (
    CounterStore,
    MemoryCounters,
    RateLimiter,
    RedisCounters,
    SqliteCounters,
)
from clave.verify.models import Channel
from clave.verify.service import VerifyService
from clave.verify.settings import VerifySettings, parse_hmac_keys
from clave.verify.store.base import VerificationStore
from clave.verify.store.memory import MemoryVerificationStore
from clave.verify.store.redis import RedisVerificationStore
from clave.verify.store.sqlite import SqliteVerificationStore
from clave.verify.tenants import DEFAULT_SERVICE, TenantService
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


def build_store(settings: VerifySettings, data_dir: Path) -> VerificationStore:
    """The store named by CLAVE_VERIFY_STORE; it records events when they have somewhere to go."""
    events = settings.events_url is not None
    if settings.store == "memory":
        return MemoryVerificationStore(events=events)
    if settings.store.startswith("sqlite:///"):
        return SqliteVerificationStore(settings.store.removeprefix("sqlite:///"), events=events)
    if settings.store.startswith(("redis://", "rediss://")):
        return RedisVerificationStore(settings.store, prefix=settings.redis_prefix, events=events)
    return SqliteVerificationStore(data_dir / "verify.db", events=events)


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


def build_counters(settings: VerifySettings, data_dir: Path) -> CounterStore:
    """Rate-limit counters on the same kind of store as the verifications."""
    if settings.store == "memory":
        return MemoryCounters()
    if settings.store.startswith(("redis://", "rediss://")):
        return RedisCounters(settings.store, prefix=settings.redis_prefix)
    return SqliteCounters(data_dir / "limits.db")


class VerifyDomain:
    """The verify domain, built from settings; nothing connects until `start()`."""

    name = "verify"

    def __init__(
        self,
        settings: VerifySettings,
        platform: PlatformSettings,
        *,
        clock: Callable[[], float] = time.time,
        store: VerificationStore | None = None,
        inbox: InboxStore | None = None,
        extra_providers: Sequence[Provider] = (),
    ) -> None:
        self.settings = settings
        self.proxy_hops = platform.proxy_hops
        keys = settings.hmac_keys or load_or_create_key_file(platform.data_dir / KEY_FILE)
        self.hasher = CodeHasher(dict(keys), active_key_id=keys[0][0])
        self.store = store or build_store(settings, platform.data_dir)
        self.inbox: InboxStore | None = None
        providers: list[Provider] = list(extra_providers)
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
        if settings.webhook_url and settings.webhook_secret:
            hook = SignedWebhook(settings.webhook_url, settings.webhook_secret)
            providers.append(WebhookProvider(hook, settings.webhook_channels))
        if settings.dev_inbox:
            # The dev inbox is a local development aid: a file beside the data even when the
            # verifications themselves live in Redis.
            self.inbox = inbox or (
                MemoryInboxStore()
                if settings.store == "memory"
                else SqliteInboxStore(platform.data_dir / "inbox.db")
            )
            providers.append(InboxProvider(self.inbox))
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
        self.providers = ProviderRouter(routes)
        self.dispatcher = Dispatcher(
            self.store, self.hasher, self.providers, clock, settings.outbox
        )
        self.notifier = (
            EventNotifier(
                self.store,
                SignedWebhook(settings.events_url, settings.events_secret),
                clock,
                settings.outbox,
            )
            if settings.events_url and settings.events_secret
            else None
        )
        self.counters = build_counters(settings, platform.data_dir)
        self.guard = FraudGuard(self.counters, settings.guard, clock)
        self.verify = VerifyService(
            self.store,
            self.hasher,
            self.providers,
            clock,
            on_queued=self.dispatcher.notify,
            limiter=RateLimiter(self.counters, settings.limits),
            guard=self.guard,
            test_destinations=settings.test_destinations,
        )
        budget = settings.limits.failed_checks_per_destination
        self.tenants = TenantService(
            self.store,
            clock,
            cache_seconds=settings.key_cache_seconds,
            guess_budget=(budget.count, budget.window),
        )

    def prepare(self) -> None:
        """Create schemas synchronously, once, before worker processes start."""
        for target in (self.store, self.inbox):
            setup = getattr(target, "setup", None)
            if setup is not None:
                setup()

    async def open(self) -> None:
        """Connect the stores and make sure the default service exists with its policy."""
        await self.store.open()
        await self.counters.open()
        if self.inbox is not None:
            await self.inbox.open()
        try:
            await self.tenants.ensure_service(DEFAULT_SERVICE, self.settings.default_policy)
        except ValueError:
            # Another worker created it between our read and write; its row is the same.
            await self.tenants.ensure_service(DEFAULT_SERVICE, self.settings.default_policy)

    async def close(self) -> None:
        """Disconnect everything."""
        for provider in self.providers.all():
            await provider.close()
        if self.inbox is not None:
            await self.inbox.close()
        await self.counters.close()
        await self.store.close()

    async def start(self) -> None:
        """Connect and start delivering."""
        await self.open()
        unserved = [c.value for c in Channel if not self.providers.available(c)]
        if unserved:
            log.info("no provider for channel(s) %s: sends there are refused", ", ".join(unserved))
        if self.settings.dev_inbox:
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
        await self.close()

    async def ready(self) -> None:
        """Raise unless the store answers."""
        await self.store.ping()

    def route_handlers(self) -> Sequence[ControllerRouterHandler]:
        """The verify routes."""
        return api.routers(self)

    @property
    def error_renderers(self) -> Mapping[str, ExceptionHandler]:
        """The Twilio-compatible API's errors, Twilio's shape, unknown paths under it too."""
        return {"/v2/": twilio_error_handler}


def verify_domain(platform: PlatformSettings, env_settings: VerifySettings) -> VerifyDomain:
    """Build the domain, turning a bad key file into a settings error."""
    try:
        return VerifyDomain(env_settings, platform)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
