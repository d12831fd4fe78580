"""Destinations: E.164 phone numbers and email addresses, normalised, masked, localised."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from clave.verify.errors import InvalidDestination
from clave.verify.models import Channel

MAX_DESTINATION_LENGTH = 254


def normalize_phone(raw: str) -> str:
    """The E.164 form of `raw`, which must be a valid international number (+ and digits)."""
    text = raw.strip()
    if not text.startswith("+"):
        raise InvalidDestination("phone numbers must be in E.164 form, starting with +")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise InvalidDestination("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidDestination("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """The normalised form of an email address, checked for syntax only (no DNS)."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidDestination(f"not a valid email address: {exc}") from None
    return result.normalized


def normalize(raw: str, channel: Channel) -> str:
    """Normalise `raw` for `channel`: a phone number for phone channels, else an email."""
    if len(raw) > MAX_DESTINATION_LENGTH:
        raise InvalidDestination("destination is too long")
    return normalize_phone(raw) if channel.is_phone else normalize_email(raw)


def normalize_any(raw: str) -> str:
    """Normalise a destination whose channel is unknown (a check by `to`)."""
    return normalize(raw, Channel.EMAIL if "@" in raw else Channel.SMS)


def mask(destination: str) -> str:
    """A form safe to show and log: `+34******678`, `a***@example.com`."""
    if "@" in destination:
        local, _, domain = destination.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if len(destination) <= 6:
        return destination[:2] + "*" * max(0, len(destination) - 2)
    return destination[:3] + "*" * (len(destination) - 6) + destination[-3:]


def region_of(destination: str) -> str | None:
    """The ISO country code of a phone destination, None for email or unknown."""
    if "@" in destination:
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(destination, None))
    except phonenumbers.NumberParseException:
        return None
