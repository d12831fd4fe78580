"""Whether a phone number is a fixed line, for a tenant's SkipSmsToLandlines.

libphonenumber's metadata tells a fixed line from a mobile by its number range in most of the
world, but not in the US and Canada (and a few others), where ranges are shared: there a number
is "fixed line or mobile", and an SMS to it is allowed. With Twilio credentials configured,
clave asks Twilio Lookup v2's line type intelligence instead, as Twilio Verify does, and keeps
the answer for a day per number (a lookup is billed). When Lookup cannot answer (an outage, a
refusal), the send is not blocked: the metadata's answer is used, and a warning logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

import httpx

from clave.verify.destinations import is_landline

log = logging.getLogger("clave.verify.lookup")

DAY = 86400.0
_CACHED = 100_000


class LineTypes(Protocol):
    """Tells whether a normalised phone number is a fixed line."""

    async def is_landline(self, number: str) -> bool:
        """True for a fixed line (an SMS to it would not arrive)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class NumberMetadata:
    """libphonenumber's metadata alone (no request leaves clave)."""

    async def is_landline(self, number: str) -> bool:
        """True only where the number range is a fixed line's alone."""
        return is_landline(number)

    async def close(self) -> None:
        """Nothing to release."""


class TwilioLookup:
    """Twilio Lookup v2 (`Fields=line_type_intelligence`), answers kept a day per number."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = "https://lookups.twilio.com",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), auth=(account_sid, auth_token), timeout=timeout
        )
        self._clock = clock
        self._known: dict[str, tuple[float, bool]] = {}

    async def is_landline(self, number: str) -> bool:
        """Lookup's `type` is `landline`; the metadata's answer when Lookup cannot tell."""
        if "@" in number:
            return False
        now = self._clock()
        known = self._known.get(number)
        if known is not None and known[0] > now:
            return known[1]
        try:
            response = await self._client.get(
                f"/v2/PhoneNumbers/{quote(number, safe='')}",
                params={"Fields": "line_type_intelligence"},
            )
            response.raise_for_status()
            kind = response.json()["line_type_intelligence"]["type"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            # Not the exception's text: httpx's names the URL, which holds the number.
            reason = (
                f"HTTP {exc.response.status_code}"
                if isinstance(exc, httpx.HTTPStatusError)
                else type(exc).__name__
            )
            log.warning("Twilio Lookup did not answer (%s): the metadata decides", reason)
            return is_landline(number)
        landline = bool(kind == "landline")
        if len(self._known) >= _CACHED:
            self._known.clear()
        self._known[number] = (now + DAY, landline)
        return landline

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
