"""Destinations of the verify domain: a phone number or an email address per channel."""

from __future__ import annotations

import phonenumbers

from clave.platform import contacts
from clave.platform.contacts import mask, region_of
from clave.verify.errors import InvalidDestination
from clave.verify.models import Channel

__all__ = ["guess_key", "is_landline", "mask", "normalize", "normalize_any", "region_of"]


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


def is_landline(destination: str) -> bool:
    """Whether a normalised phone number is a fixed line, as libphonenumber's metadata says
    (a number that may be either, as in the US and Canada, is not: it may take an SMS)."""
    if "@" in destination:
        return False
    try:
        number = phonenumbers.parse(destination, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE


def guess_key(destination: str) -> str:
    """Who a normalised destination reaches, for counting guesses at it: an email address
    lower-cased and without its `+tag` (`Victim+1@Example.com` and `victim@example.com` are one
    inbox, and one guess budget; Gmail's dots and googlemail.com too); a phone number as it
    is. Messages still go to the address as given."""
    if "@" not in destination:
        return destination
    local, _, domain = destination.rpartition("@")
    local, domain = local.partition("+")[0].lower() or local.lower(), domain.lower()
    if domain in _GMAIL:
        # Gmail ignores dots and answers for both domains: one inbox, many spellings.
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


_GMAIL = frozenset({"gmail.com", "googlemail.com"})
