"""Keyset pagination for list routes: `?limit=&after=`, a JSON array and a `Link` header."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from litestar import Request

from clave.platform.origin import origin_of

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
MAX_AFTER = 2**53  # a JSON-safe integer


def next_link(request: Request[Any, Any, Any], after: int | None, limit: int) -> dict[str, str]:
    """The RFC 8288 `Link` header to the next page (at the public origin), or no header on
    the last page."""
    url = origin_of(request.scope) + request.url.path
    return link_after(url, request.query_params.items(), after, limit)


def link_after(
    url: str, query: Iterable[tuple[str, str]], after: int | None, limit: int
) -> dict[str, str]:
    """`next_link` of a request for `url` (origin and path) with `query`."""
    if after is None:
        return {}
    params = {k: v for k, v in query if k not in ("after", "limit")}
    params |= {"after": str(after), "limit": str(limit)}
    return {"Link": f'<{url}?{urlencode(params)}>; rel="next"'}


def plain_page_query(query: bytes) -> tuple[int, int] | None:
    """(limit, after) of a query string that holds nothing but those two, each at most once,
    as plain decimal numbers in range; None for anything else (the framework then reads it)."""
    found: dict[str, int] = {}
    for pair in query.split(b"&") if query else ():
        name, sep, value = pair.partition(b"=")
        key = name.decode("ascii", "replace")
        if not sep or key not in ("limit", "after") or key in found:
            return None
        if not (value.isdigit() and len(value) <= 16):
            return None
        found[key] = int(value)
    limit, after = found.get("limit", DEFAULT_LIMIT), found.get("after", 0)
    if not (1 <= limit <= MAX_LIMIT and 0 <= after <= MAX_AFTER):
        return None
    return limit, after


def split_page(rows: Sequence[Any], limit: int, key: str = "id") -> tuple[list[Any], int | None]:
    """Rows fetched with `limit + 1`: the page, and the key to continue after (None at the end)."""
    page = list(rows[:limit])
    more = len(rows) > limit
    return page, (getattr(page[-1], key) if more and page else None)
