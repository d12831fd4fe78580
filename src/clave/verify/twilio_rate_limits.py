"""Twilio Verify's Service Rate Limits and their Buckets, under /v2/Services/{sid}/RateLimits.

A rate limit names a key a send gives a value for (`RateLimits={"<unique_name>": "<value>"}`
on a verification create); each of its buckets allows `Max` sends per `Interval` seconds for
each value (limits.service_buckets counts them). They live in the service's policy, changed
atomically (Tenants.change_policy), so they are stored on every backend.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Any

from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import PathParameter

from clave.verify.errors import InvalidParameter, TooManyBuckets, VerificationNotFound
from clave.verify.models import Policy, Tenant, new_id
from clave.verify.service_rate_limits import (
    BUCKET_INTERVAL,
    BUCKET_MAX,
    MAX_BUCKETS,
    Bucket,
    ServiceRateLimit,
)
from clave.verify.tenants import Tenants
from clave.verify.twilio_form import Form, api_base, read_form, twilio_date, twilio_page

_Sid = Annotated[str, PathParameter(max_length=64)]
_DESCRIPTION_LENGTH = 255


def _rate_limit_json(
    service: Tenant, account: Tenant, rule: ServiceRateLimit, base: str
) -> dict[str, Any]:
    url = f"{base}/Services/{service.id}/RateLimits/{rule.sid}"
    return {
        "sid": rule.sid,
        "service_sid": service.id,
        "account_sid": account.id,
        "unique_name": rule.unique_name,
        "description": rule.description,
        "date_created": twilio_date(rule.created_at),
        "date_updated": twilio_date(rule.updated_at),
        "url": url,
        "links": {"buckets": f"{url}/Buckets"},
    }


def _bucket_json(
    service: Tenant, account: Tenant, rule: ServiceRateLimit, bucket: Bucket, base: str
) -> dict[str, Any]:
    return {
        "sid": bucket.sid,
        "rate_limit_sid": rule.sid,
        "service_sid": service.id,
        "account_sid": account.id,
        "max": bucket.max,
        "interval": bucket.interval,
        "date_created": twilio_date(bucket.created_at),
        "date_updated": twilio_date(bucket.updated_at),
        "url": f"{base}/Services/{service.id}/RateLimits/{rule.sid}/Buckets/{bucket.sid}",
    }


def _rule(policy: Policy, sid: str) -> ServiceRateLimit:
    found = next((r for r in policy.rate_limits if r.sid == sid), None)
    if found is None:
        raise VerificationNotFound(f"no rate limit {sid}")
    return found


def _bucket(rule: ServiceRateLimit, sid: str) -> Bucket:
    found = next((b for b in rule.buckets if b.sid == sid), None)
    if found is None:
        raise VerificationNotFound(f"no bucket {sid}")
    return found


def _with_rule(policy: Policy, rule: ServiceRateLimit) -> Policy:
    """`policy` with `rule` in place of the rate limit of the same sid."""
    return replace(
        policy, rate_limits=tuple(rule if r.sid == rule.sid else r for r in policy.rate_limits)
    )


def _description(form: Form) -> str | None:
    return form.text("Description", max_length=_DESCRIPTION_LENGTH)


def _bucket_numbers(form: Form, *, required: bool) -> tuple[int | None, int | None]:
    numbers = form.integer("Max", 1, BUCKET_MAX), form.integer("Interval", 1, BUCKET_INTERVAL)
    for name, value in zip(("Max", "Interval"), numbers, strict=True):
        if required and value is None:
            raise InvalidParameter(f"Missing required parameter {name} in the post body")
    return numbers


@post("/Services/{sid:str}/RateLimits", status_code=201, summary="Create a service rate limit")
async def create_rate_limit(
    request: Request[Any, Any, Any],
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    form = await read_form(request)
    name = form.text("UniqueName", required=True, max_length=64) or ""
    now = time.time()
    rule = ServiceRateLimit(new_id("RK"), name, _description(form), now, now)

    def add(policy: Policy) -> Policy:  # on the policy as stored now
        if any(r.unique_name == name for r in policy.rate_limits):
            raise InvalidParameter(f"a rate limit named {name!r} exists")
        return replace(policy, rate_limits=(*policy.rate_limits, rule))

    await tenants.change_policy(service.name, add)
    return _rate_limit_json(service, account, rule, api_base(request))


@get("/Services/{sid:str}/RateLimits", summary="List a service's rate limits, a page at a time")
async def list_rate_limits(
    request: Request[Any, Any, Any],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    base = api_base(request)
    return twilio_page(
        request,
        f"{base}/Services/{service.id}/RateLimits",
        "rate_limits",
        service.policy.rate_limits,
        lambda rule: _rate_limit_json(service, account, rule, base),
    )


@get("/Services/{sid:str}/RateLimits/{rate_limit:str}", summary="Fetch a service rate limit")
async def fetch_rate_limit(
    request: Request[Any, Any, Any],
    rate_limit: _Sid,
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    rule = _rule(service.policy, rate_limit)
    return _rate_limit_json(service, account, rule, api_base(request))


@post(
    "/Services/{sid:str}/RateLimits/{rate_limit:str}",
    status_code=200,
    summary="Change a rate limit's description",
)
async def update_rate_limit(
    request: Request[Any, Any, Any],
    rate_limit: _Sid,
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    description = _description(await read_form(request))
    changed: list[ServiceRateLimit] = []

    def change(policy: Policy) -> Policy:  # on the policy as stored now
        rule = _rule(policy, rate_limit)
        if description is not None:
            rule = replace(rule, description=description, updated_at=time.time())
        changed.append(rule)  # the last run's (a store may run a change more than once)
        return _with_rule(policy, rule)

    await tenants.change_policy(service.name, change)
    return _rate_limit_json(service, account, changed[-1], api_base(request))


@delete(
    "/Services/{sid:str}/RateLimits/{rate_limit:str}",
    status_code=204,
    summary="Delete a rate limit and its buckets",
)
async def delete_rate_limit(
    rate_limit: _Sid, service: NamedDependency[Tenant], tenants: NamedDependency[Tenants]
) -> None:
    def remove(policy: Policy) -> Policy:  # on the policy as stored now
        gone = _rule(policy, rate_limit)
        return replace(policy, rate_limits=tuple(r for r in policy.rate_limits if r is not gone))

    await tenants.change_policy(service.name, remove)


@post(
    "/Services/{sid:str}/RateLimits/{rate_limit:str}/Buckets",
    status_code=201,
    summary="Add a bucket (Max sends per Interval seconds) to a rate limit",
)
async def create_bucket(
    request: Request[Any, Any, Any],
    rate_limit: _Sid,
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    most, interval = _bucket_numbers(await read_form(request), required=True)
    now = time.time()
    bucket = Bucket(new_id("BL"), most or 0, interval or 0, now, now)
    changed: list[ServiceRateLimit] = []

    def add(policy: Policy) -> Policy:  # on the policy as stored now
        rule = _rule(policy, rate_limit)
        if len(rule.buckets) >= MAX_BUCKETS:
            raise TooManyBuckets(f"a rate limit has at most {MAX_BUCKETS} buckets")
        rule = replace(rule, buckets=(*rule.buckets, bucket))
        changed.append(rule)
        return _with_rule(policy, rule)

    await tenants.change_policy(service.name, add)
    return _bucket_json(service, account, changed[-1], bucket, api_base(request))


@get(
    "/Services/{sid:str}/RateLimits/{rate_limit:str}/Buckets",
    summary="List a rate limit's buckets, a page at a time",
)
async def list_buckets(
    request: Request[Any, Any, Any],
    rate_limit: _Sid,
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    base = api_base(request)
    rule = _rule(service.policy, rate_limit)
    return twilio_page(
        request,
        f"{base}/Services/{service.id}/RateLimits/{rule.sid}/Buckets",
        "buckets",
        rule.buckets,
        lambda bucket: _bucket_json(service, account, rule, bucket, base),
    )


@get(
    "/Services/{sid:str}/RateLimits/{rate_limit:str}/Buckets/{bucket:str}",
    summary="Fetch a bucket",
)
async def fetch_bucket(
    request: Request[Any, Any, Any],
    rate_limit: _Sid,
    bucket: _Sid,
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    rule = _rule(service.policy, rate_limit)
    return _bucket_json(service, account, rule, _bucket(rule, bucket), api_base(request))


@post(
    "/Services/{sid:str}/RateLimits/{rate_limit:str}/Buckets/{bucket:str}",
    status_code=200,
    summary="Change a bucket's Max or Interval",
)
async def update_bucket(
    request: Request[Any, Any, Any],
    rate_limit: _Sid,
    bucket: _Sid,
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    most, interval = _bucket_numbers(await read_form(request), required=False)
    changed: list[tuple[ServiceRateLimit, Bucket]] = []

    def change(policy: Policy) -> Policy:  # on the policy as stored now
        rule = _rule(policy, rate_limit)
        old = _bucket(rule, bucket)
        new = replace(
            old,
            max=old.max if most is None else most,
            interval=old.interval if interval is None else interval,
            updated_at=time.time(),
        )
        rule = replace(rule, buckets=tuple(new if b is old else b for b in rule.buckets))
        changed.append((rule, new))
        return _with_rule(policy, rule)

    await tenants.change_policy(service.name, change)
    rule, new = changed[-1]
    return _bucket_json(service, account, rule, new, api_base(request))


@delete(
    "/Services/{sid:str}/RateLimits/{rate_limit:str}/Buckets/{bucket:str}",
    status_code=204,
    summary="Delete a bucket",
)
async def delete_bucket(
    rate_limit: _Sid,
    bucket: _Sid,
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
) -> None:
    def remove(policy: Policy) -> Policy:  # on the policy as stored now
        rule = _rule(policy, rate_limit)
        gone = _bucket(rule, bucket)
        return _with_rule(
            policy, replace(rule, buckets=tuple(b for b in rule.buckets if b is not gone))
        )

    await tenants.change_policy(service.name, remove)


RATE_LIMIT_HANDLERS = (
    create_rate_limit,
    list_rate_limits,
    fetch_rate_limit,
    update_rate_limit,
    delete_rate_limit,
    create_bucket,
    list_buckets,
    fetch_bucket,
    update_bucket,
    delete_bucket,
)
_BUCKET_FIELDS = {
    "Max": Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=BUCKET_MAX),
    "Interval": Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=BUCKET_INTERVAL),
}
# Their form bodies, for /openapi.json (platform/openapi_errors.py).
RATE_LIMIT_FORMS: dict[tuple[str, str], dict[str, tuple[Schema, bool]]] = {
    ("POST", "/v2/Services/{sid}/RateLimits"): {
        "UniqueName": (
            Schema(type=OpenAPIType.STRING, pattern="^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
            True,
        ),
        "Description": (Schema(type=OpenAPIType.STRING, max_length=_DESCRIPTION_LENGTH), False),
    },
    ("POST", "/v2/Services/{sid}/RateLimits/{rate_limit}"): {
        "Description": (Schema(type=OpenAPIType.STRING, max_length=_DESCRIPTION_LENGTH), False),
    },
    ("POST", "/v2/Services/{sid}/RateLimits/{rate_limit}/Buckets"): {
        name: (schema, True) for name, schema in _BUCKET_FIELDS.items()
    },
    ("POST", "/v2/Services/{sid}/RateLimits/{rate_limit}/Buckets/{bucket}"): {
        name: (schema, False) for name, schema in _BUCKET_FIELDS.items()
    },
}
