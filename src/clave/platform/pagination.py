"""Keyset pagination for list routes: `?limit=&after=`, a JSON array and a `Link` header."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from litestar import Request

MAX_LIMIT = 100
DEFAULT_LIMIT = 50


def next_link(request: Request[Any, Any, Any], after: int | None, limit: int) -> dict[str, str]:
    """The RFC 8288 `Link` header to the next page, or no header on the last page."""
    if after is None:
        return {}
    params = {k: v for k, v in request.query_params.items() if k not in ("after", "limit")}
    params |= {"after": str(after), "limit": str(limit)}
    return {"Link": f'<{request.url.path}?{urlencode(params)}>; rel="next"'}


def split_page(rows: Sequence[Any], limit: int, key: str = "id") -> tuple[list[Any], int | None]:
    """Rows fetched with `limit + 1`: the page, and the key to continue after (None at the end)."""
    page = list(rows[:limit])
    more = len(rows) > limit
    return page, (getattr(page[-1], key) if more and page else None)
