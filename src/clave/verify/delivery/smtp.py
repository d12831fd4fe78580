"""SMTP provider for email, through aiosmtplib."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from clave.verify.delivery.base import DeliveryError, OutgoingMessage
from clave.verify.models import Channel


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to submit mail, parsed from `CLAVE_SMTP_URL`."""

    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None
    timeout: float

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 10.0) -> SmtpConfig:
        """Parse `smtp://[user:pass@]host[:port][?starttls=true|false]` or `smtps://...`."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must look like smtp://user:pass@host:587 or smtps://host:465")
        query = parse_qs(parts.query)
        start_tls: bool | None = None
        if "starttls" in query:
            flag = query["starttls"][-1].lower()
            if flag not in ("true", "false"):
                raise ValueError("starttls must be true or false")
            start_tls = flag == "true"
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit,
            start_tls=False if implicit else start_tls,
            timeout=timeout,
        )


class SmtpProvider:
    """Sends email with a text and an HTML part."""

    name = "smtp"
    channels = frozenset({Channel.EMAIL})

    def __init__(self, config: SmtpConfig, sender: str) -> None:
        self._config = config
        self._sender = sender

    def build(self, outgoing: OutgoingMessage) -> EmailMessage:
        """The MIME message for `outgoing`."""
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = outgoing.to
        mail["Subject"] = outgoing.message.subject or outgoing.message.text
        mail["Date"] = email.utils.formatdate(localtime=False)
        domain = self._sender.rpartition("@")[2].strip(">") or "clave.invalid"
        mail["Message-ID"] = email.utils.make_msgid(
            idstring=str(outgoing.attempt_id), domain=domain
        )
        mail.set_content(outgoing.message.text)
        if outgoing.message.html:
            mail.add_alternative(outgoing.message.html, subtype="html")
        return mail

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        """Submit the message; 5xx answers are permanent failures, the rest transient."""
        mail = self.build(outgoing)
        c = self._config
        try:
            await aiosmtplib.send(
                mail,
                hostname=c.host,
                port=c.port,
                username=c.username,
                password=c.password,
                use_tls=c.use_tls,
                start_tls=c.start_tls,
                timeout=c.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"recipient refused: {exc}", permanent=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}", permanent=exc.code >= 500
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP unavailable: {exc}", permanent=False) from exc
        return str(mail["Message-ID"])

    async def close(self) -> None:
        """Each send opens its own connection."""
