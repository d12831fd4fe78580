"""Delivery's settings, read once from `CLAVE_*`: the providers, their order per channel, and
the signed webhooks clave posts to (the webhook provider, the event webhook)."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import urlsplit

from clave.platform.client_ip import is_loopback
from clave.platform.settings import Env, SettingsError
from clave.platform.urls import redacted
from clave.verify.delivery.aws import AwsConfig
from clave.verify.delivery.smtp import SmtpConfig
from clave.verify.delivery.twilio import TwilioConfig
from clave.verify.models import Channel

# The names CLAVE_<CHANNEL>_PROVIDERS may list.
PROVIDERS = ("twilio", "twilio-voice", "sns", "ses", "smtp", "webhook", "inbox")
# What CLAVE_PROVIDERS, one JSON object (a whole Secrets Manager secret), may hold: each
# provider's credentials and senders, the settings that differ per account. How clave talks to a
# provider (base URLs, timeouts, the status callback, AWS's region: AWS credentials come from the
# task role), which providers serve a channel, and the dev inbox's token stay variables.
PROVIDER_SECRETS = frozenset(
    {
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_FROM",
        "TWILIO_WHATSAPP_FROM",
        "TWILIO_MESSAGING_SERVICE_SID",
        "TWILIO_CALL_FROM",
        "SNS_SENDER_ID",
        "SES_FROM",
        "SMTP_URL",  # its user and password
        "EMAIL_FROM",
        "WEBHOOK_URL",
        "WEBHOOK_SECRET",
    }
)


def require_https(name: str, url: str) -> None:
    """An https:// URL, or http:// to this machine: what is posted there (a message with its
    code, events) must not cross a network in clear."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise SettingsError(
        f"{name} must be an https:// URL (http:// only to this machine), got {redacted(url)!r}"
    )


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A URL clave posts signed JSON to, and its Standard Webhooks secret (whsec_...)."""

    url: str
    secret: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Env, name: str) -> Self | None:
        """`CLAVE_<name>_URL` with `CLAVE_<name>_SECRET` (both or neither); None when unset."""
        url, secret = env.optional(f"{name}_URL"), env.optional(f"{name}_SECRET")
        if bool(url) != bool(secret):
            raise SettingsError(f"CLAVE_{name}_URL and CLAVE_{name}_SECRET go together")
        if not url or not secret:
            return None
        require_https(f"CLAVE_{name}_URL", url)
        return cls(url, secret)


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Every provider's settings (Twilio, AWS SNS and SES, SMTP, the signed webhook, the dev
    inbox) and, per channel, the order to try them in."""

    twilio: TwilioConfig | None
    aws: AwsConfig | None
    sns: bool
    sns_sender_id: str | None
    ses_from: str | None
    smtp: SmtpConfig | None
    email_from: str | None
    webhook: WebhookTarget | None
    webhook_channels: frozenset[Channel]
    dev_inbox: bool
    # With it, any peer may read the inbox with this Bearer token; without, loopback peers only.
    dev_inbox_token: str | None
    # Per channel, the providers to try in order; None: every configured one, default order.
    routes: Mapping[Channel, tuple[str, ...] | None]

    @classmethod
    def from_env(cls, env: Env) -> Self:
        """Build and validate, each of PROVIDER_SECRETS also from `CLAVE_PROVIDERS`."""
        env = env.with_object("PROVIDERS", PROVIDER_SECRETS)
        smtp, email_from = _smtp(env)
        sns, ses_from = env.flag("SNS", False), env.optional("SES_FROM")
        return cls(
            twilio=_twilio(env),
            aws=_aws(env) if sns or ses_from else None,
            sns=sns,
            sns_sender_id=env.optional("SNS_SENDER_ID"),
            ses_from=ses_from,
            smtp=smtp,
            email_from=email_from,
            webhook=WebhookTarget.from_env(env, "WEBHOOK"),
            webhook_channels=_webhook_channels(env),
            dev_inbox=env.flag("DEV_INBOX", False),
            dev_inbox_token=_dev_inbox_token(env),
            routes=_routes(env),
        )


def _smtp(env: Env) -> tuple[SmtpConfig | None, str | None]:
    """`CLAVE_SMTP_URL` (with `CLAVE_SMTP_TIMEOUT`) and `CLAVE_EMAIL_FROM`."""
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
    return smtp, email_from


def _twilio(env: Env) -> TwilioConfig | None:
    """`CLAVE_TWILIO_*`: the account, its senders and the status callback."""
    sid, token = env.optional("TWILIO_ACCOUNT_SID"), env.optional("TWILIO_AUTH_TOKEN")
    if bool(sid) != bool(token):
        raise SettingsError("CLAVE_TWILIO_ACCOUNT_SID and CLAVE_TWILIO_AUTH_TOKEN go together")
    if not sid or not token:
        return None
    if not sid.startswith("AC"):
        raise SettingsError("CLAVE_TWILIO_ACCOUNT_SID must start with AC")
    return TwilioConfig(
        account_sid=sid,
        auth_token=token,
        sms_from=env.optional("TWILIO_FROM"),
        whatsapp_from=env.optional("TWILIO_WHATSAPP_FROM"),
        messaging_service_sid=env.optional("TWILIO_MESSAGING_SERVICE_SID"),
        call_from=env.optional("TWILIO_CALL_FROM"),
        base_url=env.text("TWILIO_BASE_URL", "https://api.twilio.com"),
        status_callback=env.optional("TWILIO_STATUS_CALLBACK"),
        timeout=env.number("TWILIO_TIMEOUT", 10.0, low=0.1, high=120),
        lookup_url=env.text("TWILIO_LOOKUP_URL", "https://lookups.twilio.com"),
    )


def _aws(env: Env) -> AwsConfig:
    """`CLAVE_AWS_REGION` (required with SNS or SES) and `CLAVE_AWS_ENDPOINT_URL`."""
    region = env.optional("AWS_REGION")
    if not region:
        raise SettingsError("CLAVE_AWS_REGION is required with CLAVE_SNS or CLAVE_SES_FROM")
    return AwsConfig(region=region, endpoint_url=env.optional("AWS_ENDPOINT_URL"))


def _webhook_channels(env: Env) -> frozenset[Channel]:
    """`CLAVE_WEBHOOK_CHANNELS`: the channels the webhook provider serves (all by default)."""
    try:
        return frozenset(
            Channel(c) for c in env.items("WEBHOOK_CHANNELS", tuple(c.value for c in Channel))
        )
    except ValueError:
        raise SettingsError("CLAVE_WEBHOOK_CHANNELS must list sms, whatsapp, call, email") from None


def _dev_inbox_token(env: Env) -> str | None:
    """`CLAVE_DEV_INBOX_TOKEN`: a secret of at least 16 printable characters."""
    token = env.optional("DEV_INBOX_TOKEN")
    if token is not None and (len(token) < 16 or not token.isprintable() or " " in token):
        raise SettingsError("CLAVE_DEV_INBOX_TOKEN must be at least 16 printable characters")
    return token


def _routes(env: Env) -> dict[Channel, tuple[str, ...] | None]:
    """`CLAVE_<CHANNEL>_PROVIDERS`: per channel, provider names among PROVIDERS, in order."""
    routes: dict[Channel, tuple[str, ...] | None] = {}
    for channel in Channel:
        name = f"{channel.value.upper()}_PROVIDERS"
        listed = env.items(name, ())
        unknown = [p for p in listed if p not in PROVIDERS]
        if unknown:
            raise SettingsError(f"CLAVE_{name}: unknown provider(s) {unknown}; known: {PROVIDERS}")
        routes[channel] = listed or None
    return routes
