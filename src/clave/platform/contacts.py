"""Phone numbers and email addresses: normalised, validated, masked (shared by domains)."""

from __future__ import annotations

import functools
import re

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


# A send asks for a number's country several times (the fraud guard's caps, the message's
# language): libphonenumber parses it once. Bounded, and keyed by the number alone.
@functools.lru_cache(maxsize=4096)
def region_of(destination: str) -> str | None:
    """The ISO country code of a phone number, None for email or unknown."""
    if "@" in destination:
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(destination, None))
    except phonenumbers.NumberParseException:
        return None


# A phone number as it may appear in free text, a path or a query string: "+" (or its
# percent-encoding) and 7 to 15 digits, maybe with separators (not spaces: "+14155552671 200"
# in a log line is a number and a status), or 10 to 15 digits standing alone.
_PHONE_IN_TEXT = re.compile(
    r"(?:\+|%2[Bb])(?:[0-9][.()-]{0,2}){6,14}[0-9]|(?<![\w.])[0-9]{10,15}(?!\w|\.[0-9])"
)
_EMAIL_IN_TEXT = re.compile(r"([^\s/?&=:;,<>\"'()\[\]@%]+)(@|%40)([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask_text(text: str) -> str:
    """`text` (a log line, a provider's error, a path) with every phone number and email
    address masked: `+1415***2671`, `a***@example.com`."""

    def phone(m: re.Match[str]) -> str:
        raw = m.group(0)
        plus = "%2B" if raw[:1] == "%" else "+" if raw[:1] == "+" else ""
        digits = re.sub(r"[^0-9]", "", raw[len(plus) :])
        return f"{plus}{digits[:4]}***{digits[-4:]}"

    def email(m: re.Match[str]) -> str:
        return f"{m.group(1)[:1]}***{m.group(2)}{m.group(3)}"

    return _EMAIL_IN_TEXT.sub(email, _PHONE_IN_TEXT.sub(phone, text))
