"""Phone numbers and email addresses: normalised, validated, masked (shared by domains)."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 254


def normalize_phone(raw: str) -> str:
    """The E.164 form of `raw`, an international number starting with +; ValueError if not."""
    text = raw.strip()
    if len(text) > MAX_LENGTH:
        raise ValueError("phone number is too long")
    if not text.startswith("+"):
        raise ValueError("phone numbers must be in E.164 form, starting with +")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """The normalised address, checked for syntax only (no DNS); ValueError if invalid."""
    if len(raw) > MAX_LENGTH:
        raise ValueError("email address is too long")
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


def mask(destination: str) -> str:
    """A form safe to show and log: `+34******678`, `a***@example.com`."""
    if "@" in destination:
        local, _, domain = destination.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if len(destination) <= 6:
        return destination[:2] + "*" * max(0, len(destination) - 2)
    return destination[:3] + "*" * (len(destination) - 6) + destination[-3:]


def region_of(destination: str) -> str | None:
    """The ISO country code of a phone number, None for email or unknown."""
    if "@" in destination:
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(destination, None))
    except phonenumbers.NumberParseException:
        return None
