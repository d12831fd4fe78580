"""The native attempts log: GET /api/attempts (the caller's sends, newest first, a page at a
time with a `Link` header) and GET /api/attempts/summary, for the API key's tenant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, Router, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from clave.platform.origin import origin_of
from clave.verify.attempts import MAX_PAGE, AttemptQuery, AttemptRecord, log_time
from clave.verify.destinations import mask
from clave.verify.errors import InvalidParameter
from clave.verify.models import Channel, Tenant
from clave.verify.reporting import AttemptsLog
from clave.verify.requests import MAX_DESTINATION_LENGTH
from clave.verify.timestamps import iso

_DEFAULT_LIMIT = 50


class AttemptRead(msgspec.Struct):
    """One send of the attempts log."""

    id: str
    verification_id: str
    # Masked (+1415***2671, a***@example.com); filter with the full value.
    to: str
    channel: str
    # How its delivery went: queued, sent, delivered, undelivered, failed (or skipped).
    status: str
    # Whether its verification was approved.
    converted: bool
    created_at: str
    updated_at: str


class AttemptSummaryRead(msgspec.Struct):
    """The totals of the sends a query finds."""

    total_attempts: int
    total_converted: int
    total_unconverted: int
    conversion_rate: float


def _read(record: AttemptRecord) -> AttemptRead:
    return AttemptRead(
        id=record.sid,
        verification_id=record.verification_id,
        to=mask(record.to),  # as the native API shows every destination
        channel=record.channel.value,
        status=record.status.value,
        converted=record.converted,
        created_at=iso(record.created_at),
        updated_at=iso(record.updated_at),
    )


Since = Annotated[
    str | None,
    QueryParameter(
        max_length=40,
        description="ISO 8601 with a time zone, e.g. 2026-12-01T09:00:00Z",
        schema_extra={"format": "date-time"},
    ),
]
Text = Annotated[str | None, QueryParameter(max_length=MAX_DESTINATION_LENGTH)]
Country = Annotated[str | None, QueryParameter(pattern="^[A-Za-z]{2}$")]
ChannelFilter = Annotated[Channel | None, QueryParameter()]


def _time(name: str, value: str | None) -> float | None:
    """A `created_*` filter (attempts.log_time's rule)."""
    if value is None:
        return None
    found = log_time(value)
    if found is None:
        raise InvalidParameter(f"{name} must be an ISO 8601 date and time with a time zone")
    return found


def _query(
    caller: Tenant,
    created_after: str | None,
    created_before: str | None,
    to: str | None,
    country: str | None,
    channel: Channel | None,
    status: str | None,
    verification_id: str | None = None,
) -> AttemptQuery:
    return AttemptQuery(
        tenant_ids=frozenset({caller.id}),
        created_after=_time("created_after", created_after),
        created_before=_time("created_before", created_before),
        to=to,
        country=country.upper() if country else None,
        channel=channel,
        verification_id=verification_id,
        converted=None if status is None else status == "converted",
    )


@get("/", summary="List this service's sends (the attempts log), newest first")
async def list_attempts(
    request: Request[Any, Any, Any],
    attempts: NamedDependency[AttemptsLog],
    caller: NamedDependency[Tenant],
    created_after: Since = None,
    created_before: Since = None,
    to: Text = None,
    country: Country = None,
    channel: ChannelFilter = None,
    verification_id: Annotated[str | None, QueryParameter(max_length=64)] = None,
    status: Annotated[Literal["converted", "unconverted"] | None, QueryParameter()] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = _DEFAULT_LIMIT,
    offset: Annotated[int, QueryParameter(ge=0, le=10_000_000)] = 0,
) -> Response[list[AttemptRead]]:
    """Filters combine; the `Link` header (rel="next") holds the next page's URL."""
    query = _query(
        caller, created_after, created_before, to, country, channel, status, verification_id
    )
    found = await attempts.page(query, offset=offset, limit=limit + 1)
    headers = {}
    if len(found) > limit:
        params = [(k, v) for k, v in request.query_params.items() if k not in ("offset",)]
        params.append(("offset", str(offset + limit)))
        url = origin_of(request.scope) + request.url.path
        headers["Link"] = f'<{url}?{urlencode(params)}>; rel="next"'
    return Response([_read(r) for r in found[:limit]], headers=headers)


@get("/summary", summary="Count this service's sends and conversions")
async def summarize_attempts(
    attempts: NamedDependency[AttemptsLog],
    caller: NamedDependency[Tenant],
    created_after: Since = None,
    created_before: Since = None,
    to: Text = None,
    country: Country = None,
    channel: ChannelFilter = None,
) -> AttemptSummaryRead:
    """Totals over the same filters as the list (a verification's sends all count)."""
    query = _query(caller, created_after, created_before, to, country, channel, None)
    summary = await attempts.summary(query)
    return AttemptSummaryRead(
        total_attempts=summary.total,
        total_converted=summary.converted,
        total_unconverted=summary.unconverted,
        conversion_rate=round(summary.conversion_rate, 4),
    )


def attempts_router(attempts: AttemptsLog, dependencies: Mapping[str, Provide]) -> Router:
    """`/api/attempts`, with `dependencies` providing the `caller` an API key names."""

    async def provide_attempts() -> AttemptsLog:
        return attempts

    return Router(
        path="/api/attempts",
        route_handlers=[list_attempts, summarize_attempts],
        dependencies={**dependencies, "attempts": Provide(provide_attempts)},
        security=[{"bearer": []}],
        tags=["attempts"],
    )
