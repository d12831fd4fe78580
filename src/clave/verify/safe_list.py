"""The safe list: phone numbers the fraud guard and geo permissions never block.

Twilio keeps one per account; clave keeps one per /v2 account (covering the services the account
sees) and one of the operator's (`clave fraud safelist`, covering every tenant). A listed number
still counts against the per-destination limits: those protect the number's owner, not the
operator's bill.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from clave.verify.destinations import normalize
from clave.verify.errors import InvalidParameter
from clave.verify.models import Channel, SafeNumber, new_id
from clave.verify.store.base import SafeList


class SafeNumbers:
    """Add, read, remove and list an owner's safe numbers (E.164 phone numbers only)."""

    def __init__(self, store: SafeList, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def add(self, owner: str, raw: str) -> SafeNumber:
        """List a number for `owner` (listing it again changes nothing)."""
        entry = SafeNumber(new_id("GN"), owner, self.number(raw), self._clock())
        return await self._store.add_safe_number(entry)

    async def get(self, owner: str, raw: str) -> SafeNumber | None:
        """The owner's entry for a number, if listed."""
        return await self._store.get_safe_number(owner, self.number(raw))

    async def remove(self, owner: str, raw: str) -> bool:
        """Unlist a number; False when it was not listed."""
        return await self._store.remove_safe_number(owner, self.number(raw))

    async def list(self, owner: str) -> list[SafeNumber]:
        """The owner's entries, by number."""
        return await self._store.list_safe_numbers(owner)

    @staticmethod
    def number(raw: str) -> str:
        """The E.164 form of a phone number; InvalidParameter for anything else."""
        if "@" in raw:
            raise InvalidParameter("the safe list holds phone numbers only")
        return normalize(raw.strip(), Channel.SMS)
