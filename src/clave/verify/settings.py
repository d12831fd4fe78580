"""Verify's settings, read once from `CLAVE_*` variables."""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clave.platform.contacts import normalize_email, normalize_phone
from clave.platform.settings import Env, SettingsError
from clave.verify.codes import MIN_KEY_BYTES
from clave.verify.delivery.aws import AwsConfig
from clave.verify.delivery.dispatcher import OutboxPolicy
from clave.verify.delivery.smtp import SmtpConfig
from clave.verify.delivery.twilio import TwilioConfig
from clave.verify.fraud import BlockedPrefix, GuardMode, GuardSettings
from clave.verify.limits import Limit, Limits
from clave.verify.models import Channel, Policy

_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def parse_hmac_keys(text: str, *, source: str) -> tuple[tuple[str, bytes], ...]:
    """Parse `id:base64secret[,id:base64secret...]`, newest first; never echoes a secret."""
    keys: list[tuple[str, bytes]] = []
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    for entry in (item.strip() for line in lines for item in line.split(",")):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise SettingsError(
                f"{source}: each key must be 'id:base64secret' (id of A-Z a-z 0-9 _ . -)"
            )
        try:
            secret = base64.b64decode(
                encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True
            )
        except (binascii.Error, ValueError):
            raise SettingsError(f"{source}: key {key_id!r} is not valid base64") from None
        if len(secret) < MIN_KEY_BYTES:
            raise SettingsError(
                f"{source}: key {key_id!r} must decode to at least {MIN_KEY_BYTES} bytes"
            )
        if any(existing == key_id for existing, _ in keys):
            raise SettingsError(f"{source}: key id {key_id!r} appears twice")
        keys.append((key_id, secret))
    if not keys:
        raise SettingsError(f"{source}: no keys found")
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class VerifySettings:
    """Everything the verify domain reads from the environment."""

    store: str
    hmac_keys: tuple[tuple[str, bytes], ...] | None
    dev_inbox: bool
    smtp: SmtpConfig | None
    email_from: str | None
    compat_channel: Channel
    compat_anonymous: bool
    default_policy: Policy
    outbox: OutboxPolicy
    key_cache_seconds: float
    redis_prefix: str
    twilio: TwilioConfig | None
    aws: AwsConfig | None
    sns: bool
    sns_sender_id: str | None
    ses_from: str | None
    webhook_url: str | None
    webhook_secret: str | None
    webhook_channels: frozenset[Channel]
    # Per channel, the providers to try in order; None: every configured one, default order.
    routes: dict[Channel, tuple[str, ...] | None]
    limits: Limits
    limit_peer_ip: bool
    proxy_hops: int
    guard: GuardSettings
    # (service name, normalised destination) -> fixed code; nothing is ever sent to them.
    test_destinations: dict[tuple[str, str], str]
    events_url: str | None
    events_secret: str | None

    @classmethod
    def from_env(cls, env: Env) -> VerifySettings:
        """Build and validate."""
        store = env.text("VERIFY_STORE", "sqlite")
        if not (
            store in ("sqlite", "memory")
            or store.startswith(("sqlite:///", "redis://", "rediss://"))
        ):
            raise SettingsError(
                "CLAVE_VERIFY_STORE must be sqlite, sqlite:///path, redis://host:6379/0 or "
                f"memory, got {store!r}"
            )
        raw_keys = env.optional("HMAC_KEYS")
        keys = parse_hmac_keys(raw_keys, source="CLAVE_HMAC_KEYS") if raw_keys else None

        smtp_url = env.optional("SMTP_URL")
        smtp = None
        if smtp_url:
            try:
                smtp = SmtpConfig.from_url(
                    smtp_url, timeout=env.number("SMTP_TIMEOUT", 10.0, low=0.1, high=120)
                )
            except ValueError as exc:
                raise SettingsError(f"CLAVE_SMTP_URL {exc}") from None
        email_from = env.optional("EMAIL_FROM")
        if smtp is not None and not email_from:
            raise SettingsError("CLAVE_EMAIL_FROM is required when CLAVE_SMTP_URL is set")
        if email_from and "@" not in email.utils.parseaddr(email_from)[1]:
            raise SettingsError(f"CLAVE_EMAIL_FROM must be an email address, got {email_from!r}")

        channel_names = env.items("CHANNELS", tuple(c.value for c in Channel))
        try:
            channels = frozenset(Channel(name) for name in channel_names)
        except ValueError:
            raise SettingsError(
                "CLAVE_CHANNELS must list channels among sms, whatsapp, call, email, "
                f"got {channel_names}"
            ) from None
        policy = Policy(
            countries=frozenset(c.upper() for c in env.items("COUNTRIES", ())),
            friendly_name=env.text("FRIENDLY_NAME", "clave"),
            code_length=env.integer("CODE_LENGTH", 6, low=4, high=10),
            code_ttl=env.integer("CODE_TTL", 600, low=30, high=86400),
            max_checks=env.integer("MAX_CHECKS", 5, low=1, high=20),
            max_sends=env.integer("MAX_SENDS", 5, low=1, high=100),
            send_window=env.integer("SEND_WINDOW", 600, low=1, high=86400),
            channels=channels,
        )
        problems = policy.problems()
        if problems:
            raise SettingsError("default service policy: " + "; ".join(problems))
        compat = env.choice("COMPAT_CHANNEL", "sms", tuple(c.value for c in Channel))
        return cls(
            store=store,
            hmac_keys=keys,
            dev_inbox=env.flag("DEV_INBOX", False),
            smtp=smtp,
            email_from=email_from,
            compat_channel=Channel(compat),
            compat_anonymous=env.flag("COMPAT_ANONYMOUS", False),
            default_policy=policy,
            outbox=OutboxPolicy(
                lease=env.number("OUTBOX_LEASE", 60.0, low=1, high=3600),
                max_tries=env.integer("OUTBOX_MAX_TRIES", 10, low=1, high=100),
                backoff_base=env.number("OUTBOX_BACKOFF", 2.0, low=0.01, high=600),
                backoff_max=env.number("OUTBOX_BACKOFF_MAX", 300.0, low=0.01, high=86400),
                send_timeout=env.number("SEND_TIMEOUT", 15.0, low=0.1, high=300),
                poll_interval=env.number("OUTBOX_POLL", 1.0, low=0.01, high=60),
            ),
            key_cache_seconds=env.number("KEY_CACHE_SECONDS", 5.0, low=0, high=3600),
            redis_prefix=env.text("REDIS_PREFIX", "clave:"),
            **_provider_settings(env),
            limits=Limits(
                sends_per_ip=_limit(
                    env,
                    "SENDS_PER_IP",
                    "20/3600",
                    "too_many_sends_from_ip",
                    "sends from this client IP",
                ),
                sends_per_service=_limit(
                    env,
                    "SENDS_PER_SERVICE",
                    "600/60",
                    "service_send_rate_exceeded",
                    "sends by this service",
                ),
                sends_per_day=_limit(
                    env,
                    "SENDS_PER_DAY",
                    "20000/86400",
                    "daily_send_cap_reached",
                    "sends across all services (spend cap)",
                ),
                failed_checks_per_ip=_limit(
                    env,
                    "FAILED_CHECKS_PER_IP",
                    "30/900",
                    "too_many_failed_checks_from_ip",
                    "failed checks from this client IP",
                ),
            ),
            limit_peer_ip=env.flag("LIMIT_PEER_IP", False),
            proxy_hops=env.integer("PROXY_HOPS", 0, low=0, high=10),
            guard=GuardSettings(
                mode=GuardMode(env.choice("FRAUD_MODE", "enforce", ("enforce", "record_only"))),
                blocked=_blocked_prefixes(env),
                countries_per_ip=env.integer("COUNTRIES_PER_IP", 3, low=0, high=250),
                country_cap_floor=env.integer("COUNTRY_CAP_FLOOR", 20, low=0, high=10_000_000),
                country_cap_ratio=env.number("COUNTRY_CAP_RATIO", 0.2, low=0.01, high=100),
            ),
            test_destinations=_test_destinations(env),
            **_events(env),
        )


def _events(env: Env) -> dict[str, Any]:
    """`CLAVE_EVENTS_URL` and `CLAVE_EVENTS_SECRET` (whsec_...): where events go, signed."""
    url, secret = env.optional("EVENTS_URL"), env.optional("EVENTS_SECRET")
    if bool(url) != bool(secret):
        raise SettingsError("CLAVE_EVENTS_URL and CLAVE_EVENTS_SECRET go together")
    if url and not url.startswith(("http://", "https://")):
        raise SettingsError(f"CLAVE_EVENTS_URL must be an http(s) URL, got {url!r}")
    return {"events_url": url, "events_secret": secret}


def _test_destinations(env: Env) -> dict[tuple[str, str], str]:
    """`CLAVE_TEST_DESTINATIONS`: "default:+15005550006=123456,shop:qa@example.com=4242"."""
    found = {}
    for item in env.items("TEST_DESTINATIONS", ()):
        where, sep, code = item.rpartition("=")
        service, colon, destination = where.partition(":")
        if not sep or not colon or not service or not destination:
            raise SettingsError(
                f"CLAVE_TEST_DESTINATIONS: {item!r} is not service:destination=code"
            )
        if not re.fullmatch(r"[0-9]{4,10}", code):
            raise SettingsError(
                f"CLAVE_TEST_DESTINATIONS: the code for {destination!r} must be 4-10 digits"
            )
        try:
            normalized = (
                normalize_email(destination) if "@" in destination else normalize_phone(destination)
            )
        except ValueError as exc:
            raise SettingsError(f"CLAVE_TEST_DESTINATIONS: {destination!r}: {exc}") from None
        found[(service, normalized)] = code
    return found


def _blocked_prefixes(env: Env) -> tuple[BlockedPrefix, ...]:
    """`CLAVE_BLOCKED_PREFIXES`: "+882,+979:2027-01-31" (a prefix, optionally until a date)."""
    rules = []
    for item in env.items("BLOCKED_PREFIXES", ()):
        prefix, _, until = item.partition(":")
        if not re.fullmatch(r"\+[0-9]{1,14}", prefix):
            raise SettingsError(f"CLAVE_BLOCKED_PREFIXES: {prefix!r} is not a + and digits")
        expiry = None
        if until:
            try:
                day = datetime.strptime(until, "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                raise SettingsError(
                    f"CLAVE_BLOCKED_PREFIXES: {until!r} is not a YYYY-MM-DD date"
                ) from None
            expiry = day.timestamp() + 86400  # through the end of that day, UTC
        rules.append(BlockedPrefix(prefix, expiry))
    return tuple(rules)


def _limit(env: Env, name: str, default: str, code: str, what: str) -> Limit:
    """`CLAVE_LIMIT_<NAME>` as "count/seconds"; a count of 0 turns the limit off."""
    raw = env.text(f"LIMIT_{name}", default)
    count, sep, seconds = raw.partition("/")
    try:
        limit = Limit(code, int(count), float(seconds), what)
    except ValueError:
        raise SettingsError(
            f"CLAVE_LIMIT_{name} must look like 20/3600 (count/seconds), got {raw!r}"
        ) from None
    if not sep or limit.count < 0 or limit.window <= 0:
        raise SettingsError(
            f"CLAVE_LIMIT_{name} must look like 20/3600 (count/seconds), got {raw!r}"
        )
    return limit


PROVIDERS = ("twilio", "twilio-voice", "sns", "ses", "smtp", "webhook", "inbox")


def _provider_settings(env: Env) -> dict[str, Any]:
    """Twilio, AWS, webhook settings and the per-channel provider order."""
    sid, token = env.optional("TWILIO_ACCOUNT_SID"), env.optional("TWILIO_AUTH_TOKEN")
    if bool(sid) != bool(token):
        raise SettingsError("CLAVE_TWILIO_ACCOUNT_SID and CLAVE_TWILIO_AUTH_TOKEN go together")
    twilio = None
    if sid and token:
        if not sid.startswith("AC"):
            raise SettingsError("CLAVE_TWILIO_ACCOUNT_SID must start with AC")
        twilio = TwilioConfig(
            account_sid=sid,
            auth_token=token,
            sms_from=env.optional("TWILIO_FROM"),
            whatsapp_from=env.optional("TWILIO_WHATSAPP_FROM"),
            messaging_service_sid=env.optional("TWILIO_MESSAGING_SERVICE_SID"),
            call_from=env.optional("TWILIO_CALL_FROM"),
            base_url=env.text("TWILIO_BASE_URL", "https://api.twilio.com"),
            status_callback=env.optional("TWILIO_STATUS_CALLBACK"),
            timeout=env.number("TWILIO_TIMEOUT", 10.0, low=0.1, high=120),
        )
    sns = env.flag("SNS", False)
    ses_from = env.optional("SES_FROM")
    aws = None
    if sns or ses_from:
        region = env.optional("AWS_REGION")
        if not region:
            raise SettingsError("CLAVE_AWS_REGION is required with CLAVE_SNS or CLAVE_SES_FROM")
        aws = AwsConfig(region=region, endpoint_url=env.optional("AWS_ENDPOINT_URL"))
    webhook_url, webhook_secret = env.optional("WEBHOOK_URL"), env.optional("WEBHOOK_SECRET")
    if bool(webhook_url) != bool(webhook_secret):
        raise SettingsError("CLAVE_WEBHOOK_URL and CLAVE_WEBHOOK_SECRET go together")
    if webhook_url and not webhook_url.startswith(("http://", "https://")):
        raise SettingsError(f"CLAVE_WEBHOOK_URL must be an http(s) URL, got {webhook_url!r}")
    try:
        webhook_channels = frozenset(
            Channel(c) for c in env.items("WEBHOOK_CHANNELS", tuple(c.value for c in Channel))
        )
    except ValueError:
        raise SettingsError("CLAVE_WEBHOOK_CHANNELS must list sms, whatsapp, call, email") from None
    routes: dict[Channel, tuple[str, ...] | None] = {}
    for channel in Channel:
        name = f"{channel.value.upper()}_PROVIDERS"
        listed = env.items(name, ())
        unknown = [p for p in listed if p not in PROVIDERS]
        if unknown:
            raise SettingsError(f"CLAVE_{name}: unknown provider(s) {unknown}; known: {PROVIDERS}")
        routes[channel] = listed or None
    return {
        "twilio": twilio,
        "aws": aws,
        "sns": sns,
        "sns_sender_id": env.optional("SNS_SENDER_ID"),
        "ses_from": ses_from,
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
        "webhook_channels": webhook_channels,
        "routes": routes,
    }
