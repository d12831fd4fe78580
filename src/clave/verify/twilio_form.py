"""Twilio's conventions for /v2: form-encoded request bodies read with Twilio's errors (a bad
value is 60200, `invalid_parameter`, naming the parameter), path sids, URLs and dates."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from litestar import Request
from litestar.datastructures import FormMultiDict, MultiDict
from litestar.params import PathParameter

from clave.platform.origin import origin_of
from clave.verify.errors import InvalidParameter
from clave.verify.models import MAX_AMOUNT_LENGTH, MAX_PAYEE_LENGTH
from clave.verify.requests import MAX_DESTINATION_LENGTH

T = TypeVar("T")
_INTEGER = re.compile(r"-?[0-9]{1,11}")


def _encodable(text: str) -> bool:
    """Whether `text` is valid Unicode (no lone surrogate, which UTF-8 cannot carry)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Form:
    """Typed reads of a form-encoded body; a bad value is Twilio's 60200 naming the parameter."""

    def __init__(self, data: FormMultiDict | MultiDict[Any]) -> None:
        self._data = data

    def text(self, name: str, *, required: bool = False, max_length: int = 1024) -> str | None:
        """A text parameter; absent or empty is None (or, when required, an error)."""
        value = self._data.get(name)
        if value is None or (isinstance(value, str) and value == ""):
            if required:
                raise InvalidParameter(f"Missing required parameter {name} in the post body")
            return None
        if not isinstance(value, str) or len(value) > max_length:
            raise InvalidParameter(f"Invalid parameter: {name}")
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        """An integer parameter within [low, high]."""
        value = self.text(name, max_length=12)
        if value is None:
            return None
        # ASCII digits only: str.isdigit() admits "²", which int() refuses.
        if not _INTEGER.fullmatch(value) or not low <= int(value) <= high:
            raise InvalidParameter(f"Invalid parameter: {name}")
        return int(value)

    def flag(self, name: str) -> bool | None:
        """A boolean parameter (`true` or `false`, any case)."""
        value = self.text(name, max_length=5)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise InvalidParameter(f"Invalid parameter: {name}")
        return value.lower() == "true"

    def json_object(self, name: str) -> dict[str, Any] | None:
        """A parameter holding a JSON object."""
        value = self.text(name, max_length=8192)
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's
            raise InvalidParameter(f"Invalid parameter: {name}") from None
        if not isinstance(parsed, dict):
            raise InvalidParameter(f"Invalid parameter: {name}")
        return parsed

    def rate_limits(self) -> tuple[tuple[str, str], ...]:
        """`RateLimits`: a JSON object from rate limit unique names to the values of their
        keys (strings, or numbers as written)."""
        found = self.json_object("RateLimits") or {}
        named = []
        for name, value in found.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise InvalidParameter("Invalid parameter: RateLimits")
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidParameter("Invalid parameter: RateLimits")  # 1e999 is no key
            text = value if isinstance(value, str) else json.dumps(value)
            if not _encodable(name) or not _encodable(text):  # JSON lets "\ud800" through
                raise InvalidParameter("Invalid parameter: RateLimits")
            named.append((name, text))
        return tuple(named)

    def payment(self) -> tuple[str, str] | None:
        """PSD2's `Amount` and `Payee`: both or neither."""
        amount = self.text("Amount", max_length=MAX_AMOUNT_LENGTH)
        payee = self.text("Payee", max_length=MAX_PAYEE_LENGTH)
        if amount is None and payee is None:
            return None
        if amount is None or payee is None:
            raise InvalidParameter(f"Invalid parameter: {'Amount' if amount is None else 'Payee'}")
        return amount, payee


# A service (VA...) or another resource's sid in a path.
Sid = Annotated[str, PathParameter(max_length=64)]
# A verification sid, or the To value Twilio also accepts in its place.
Ref = Annotated[str, PathParameter(max_length=MAX_DESTINATION_LENGTH)]


async def read_form(request: Request[Any, Any, Any]) -> Form:
    """The request's form body."""
    return Form(await request.form())


def api_base(request: Request[Any, Any, Any]) -> str:
    """The public base of the API's URLs (platform/origin.py: https:// behind a proxy)."""
    return origin_of(request.scope) + "/v2"


def twilio_date(ts: float) -> str:
    """ISO 8601 in UTC to the second, as Twilio's v2 APIs write dates."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def twilio_page(
    request: Request[Any, Any, Any],
    url: str,
    key: str,
    items: Sequence[T],
    render: Callable[[T], Any],
) -> dict[str, Any]:
    """One page of `items` (`PageSize`, `Page` from the query) under `key`, with Twilio's
    `meta` (the page URLs at `url`, the list's public URL)."""
    query = Form(request.query_params)
    size = query.integer("PageSize", 1, 1000) or 50
    page = query.integer("Page", 0, 1_000_000) or 0

    def page_url(number: int) -> str:
        return f"{url}?PageSize={size}&Page={number}"

    return {
        key: [render(item) for item in items[page * size : (page + 1) * size]],
        "meta": {
            "page": page,
            "page_size": size,
            "first_page_url": page_url(0),
            "previous_page_url": page_url(page - 1) if page > 0 else None,
            "url": page_url(page),
            "next_page_url": page_url(page + 1) if (page + 1) * size < len(items) else None,
            "key": key,
        },
    }
