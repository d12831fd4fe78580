"""Twilio Verify's Verification Attempts under /v2: the attempts log (verify/attempts.py) of an
account's services, listed with Twilio's filters, fetched by sid, and summed."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import PathParameter

from clave.verify.attempts import AttemptQuery, AttemptRecord, log_time
from clave.verify.errors import InvalidParameter, VerificationNotFound
from clave.verify.models import Channel, Tenant
from clave.verify.reporting import AttemptsLog
from clave.verify.tenants import Tenants
from clave.verify.twilio_form import Form, api_base, twilio_date

_STATUSES = {"converted": True, "unconverted": False}
_CHANNELS = {c.value: c for c in Channel}
# The filters each route reads from its query, as Twilio names them.
_LIST_FILTERS = (
    "DateCreatedAfter",
    "DateCreatedBefore",
    "ChannelData.To",
    "Country",
    "Channel",
    "VerifyServiceSid",
    "VerificationSid",
    "Status",
)
_SUMMARY_FILTERS = (
    "VerifyServiceSid",
    "DateCreatedAfter",
    "DateCreatedBefore",
    "Country",
    "Channel",
    "DestinationPrefix",
)


def _date(form: Form, name: str) -> float | None:
    value = form.text(name, max_length=40)
    if value is None:
        return None
    found = log_time(value)
    if found is None:
        raise InvalidParameter(f"Invalid parameter: {name} (ISO 8601 with a time zone)")
    return found


def _choice(form: Form, name: str, choices: dict[str, Any]) -> Any:
    value = form.text(name, max_length=32)
    if value is None:
        return None
    if value.lower() not in choices:
        raise InvalidParameter(f"Invalid parameter: {name}")
    return choices[value.lower()]


async def _query(
    form: Form, names: tuple[str, ...], tenants: Tenants, account: Tenant
) -> AttemptQuery:
    """The query of the filters in `names`, over the services `account` may see."""
    visible = frozenset(t.id for t in await tenants.list_tenants(account=account))
    service = form.text("VerifyServiceSid", max_length=34) if "VerifyServiceSid" in names else None
    country = form.text("Country", max_length=2) if "Country" in names else None
    return AttemptQuery(
        # Another account's service (or none) reads as a service without sends.
        tenant_ids=visible & {service} if service else visible,
        created_after=_date(form, "DateCreatedAfter"),
        created_before=_date(form, "DateCreatedBefore"),
        to=form.text("ChannelData.To", max_length=254) if "ChannelData.To" in names else None,
        destination_prefix=(
            form.text("DestinationPrefix", max_length=16) if "DestinationPrefix" in names else None
        ),
        country=country.upper() if country else None,
        channel=_choice(form, "Channel", _CHANNELS),
        verification_id=(
            form.text("VerificationSid", max_length=34) if "VerificationSid" in names else None
        ),
        converted=_choice(form, "Status", _STATUSES) if "Status" in names else None,
    )


def _attempt_json(record: AttemptRecord, account: Tenant, base: str) -> dict[str, Any]:
    return {
        "sid": record.sid,
        "account_sid": account.id,
        "service_sid": record.tenant_id,
        "verification_sid": record.verification_id,
        "date_created": twilio_date(record.created_at),
        "date_updated": twilio_date(record.updated_at),
        "conversion_status": "converted" if record.converted else "unconverted",
        "channel": record.channel.value,
        "price": None,  # what a send cost is the provider's bill, not clave's
        "channel_data": {"to": record.to, "status": record.status.value},
        "url": f"{base}/Attempts/{record.sid}",
    }


@get("/Attempts", summary="List the account's sends (the attempts log), a page at a time")
async def list_attempts(
    request: Request[Any, Any, Any],
    attempts: NamedDependency[AttemptsLog],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    form = Form(request.query_params)
    query = await _query(form, _LIST_FILTERS, tenants, account)
    size = form.integer("PageSize", 1, 1000) or 50
    page = form.integer("Page", 0, 1_000_000) or 0
    found = await attempts.page(query, offset=page * size, limit=size + 1)
    base = api_base(request)
    filters = [(k, v) for k, v in request.query_params.items() if k in _LIST_FILTERS]

    def page_url(number: int) -> str:
        return f"{base}/Attempts?{urlencode([*filters, ('PageSize', size), ('Page', number)])}"

    return {
        "attempts": [_attempt_json(r, account, base) for r in found[:size]],
        "meta": {
            "page": page,
            "page_size": size,
            "first_page_url": page_url(0),
            "previous_page_url": page_url(page - 1) if page > 0 else None,
            "url": page_url(page),
            "next_page_url": page_url(page + 1) if len(found) > size else None,
            "key": "attempts",
        },
    }


@get("/Attempts/Summary", summary="Count the account's sends and conversions")
async def summarize_attempts(
    request: Request[Any, Any, Any],
    attempts: NamedDependency[AttemptsLog],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    query = await _query(Form(request.query_params), _SUMMARY_FILTERS, tenants, account)
    summary = await attempts.summary(query)
    return {
        "total_attempts": summary.total,
        "total_converted": summary.converted,
        "total_unconverted": summary.unconverted,
        # A decimal in a string, as Twilio writes it.
        "conversion_rate_percentage": f"{summary.conversion_rate:.7f}".rstrip("0").rstrip("."),
        "url": f"{api_base(request)}/Attempts/Summary",
    }


@get("/Attempts/{attempt:str}", summary="Fetch one send of the attempts log")
async def fetch_attempt(
    request: Request[Any, Any, Any],
    attempt: Annotated[str, PathParameter(max_length=64)],
    attempts: NamedDependency[AttemptsLog],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    visible = frozenset(t.id for t in await tenants.list_tenants(account=account))
    found = await attempts.get(AttemptQuery(visible), attempt)
    if found is None:
        raise VerificationNotFound(f"no attempt {attempt}")
    return _attempt_json(found, account, api_base(request))


ATTEMPT_HANDLERS = (list_attempts, summarize_attempts, fetch_attempt)
