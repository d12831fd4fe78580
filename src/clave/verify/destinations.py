"""Destinations of the verify domain: a phone number or an email address per channel."""

from __future__ import annotations

from clave.platform import contacts
from clave.platform.contacts import mask, region_of
from clave.verify.errors import InvalidDestination
from clave.verify.models import Channel

__all__ = ["mask", "normalize", "normalize_any", "region_of"]


def normalize(raw: str, channel: Channel) -> str:
    """Normalise `raw` for `channel`: a phone number for phone channels, else an email."""
    try:
        if channel.is_phone:
            return contacts.normalize_phone(raw)
        return contacts.normalize_email(raw)
    except ValueError as exc:
        raise InvalidDestination(str(exc)) from None


def normalize_any(raw: str) -> str:
    """Normalise a destination whose channel is unknown (a check by `to`)."""
    return normalize(raw, Channel.EMAIL if "@" in raw else Channel.SMS)
