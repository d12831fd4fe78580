"""Twilio Verify's resources beyond the one-time-code loop, under /v2: a service's Messaging
Configurations (the Messaging Service its SMS to a country goes out through) and the account's
Safe List (numbers the fraud guard and geo permissions never block)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import quote

import phonenumbers
from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import PathParameter

from clave.verify.errors import InvalidParameter, VerificationNotFound
from clave.verify.models import ALL_COUNTRIES, Policy, SafeNumber, Tenant
from clave.verify.requests import MAX_DESTINATION_LENGTH
from clave.verify.safe_list import SafeNumbers
from clave.verify.tenants import Tenants
from clave.verify.twilio_form import Form, Ref, api_base, read_form, twilio_date, twilio_page

_MESSAGING_SID = Schema(type=OpenAPIType.STRING, pattern="^MG[0-9a-fA-F]{32}$")


def _messaging_json(
    service: Tenant, account: Tenant, entry: tuple[str, str, float, float], base: str
) -> dict[str, Any]:
    country, sid, created, updated = entry
    return {
        "account_sid": account.id,
        "service_sid": service.id,
        "country": country,
        "messaging_service_sid": sid,
        "date_created": twilio_date(created),
        "date_updated": twilio_date(updated),
        "url": f"{base}/Services/{service.id}/MessagingConfigurations/{country}",
    }


def _messaging_sid(form: Form) -> str:
    sid = form.text("MessagingServiceSid", required=True, max_length=34) or ""
    if not re.fullmatch(r"MG[0-9a-fA-F]{32}", sid):
        raise InvalidParameter("Invalid parameter: MessagingServiceSid")
    return sid


def _country(value: str) -> str:
    """An ISO 3166-1 country that has phone numbers (upper case), or Twilio's `all` (every
    country without a configuration of its own)."""
    if value.lower() == ALL_COUNTRIES:
        return ALL_COUNTRIES
    if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidParameter("Invalid parameter: Country")
    return value.upper()


def _configured(policy: Policy, country: str) -> tuple[str, str, float, float]:
    wanted = country.lower() if country.lower() == ALL_COUNTRIES else country.upper()
    found = next((e for e in policy.messaging if e[0] == wanted), None)
    if found is None:
        raise VerificationNotFound(f"no messaging configuration for {country}")
    return found


def _without(policy: Policy, country: str) -> tuple[tuple[str, str, float, float], ...]:
    return tuple(e for e in policy.messaging if e[0] != country)


@post(
    "/Services/{sid:str}/MessagingConfigurations",
    status_code=201,
    summary="Send a country's SMS through a Messaging Service",
)
async def create_messaging_configuration(
    request: Request[Any, Any, Any],
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    form = await read_form(request)
    country = _country(form.text("Country", required=True, max_length=3) or "")
    now = time.time()
    entry = (country, _messaging_sid(form), now, now)

    def add(policy: Policy) -> Policy:  # on the policy as stored now
        if any(e[0] == country for e in policy.messaging):
            raise InvalidParameter(f"a messaging configuration for {country} exists: update it")
        return replace(policy, messaging=(*policy.messaging, entry))

    updated = await tenants.change_policy(service.name, add)
    return _messaging_json(updated, account, entry, api_base(request))


@get(
    "/Services/{sid:str}/MessagingConfigurations",
    summary="List a service's messaging configurations, a page at a time",
)
async def list_messaging_configurations(
    request: Request[Any, Any, Any],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    base = api_base(request)
    return twilio_page(
        request,
        f"{base}/Services/{service.id}/MessagingConfigurations",
        "messaging_configurations",
        sorted(service.policy.messaging),
        lambda e: _messaging_json(service, account, e, base),
    )


@get(
    "/Services/{sid:str}/MessagingConfigurations/{country:str}",
    summary="Fetch a country's messaging configuration",
)
async def fetch_messaging_configuration(
    request: Request[Any, Any, Any],
    country: Annotated[str, PathParameter(max_length=64)],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    found = _configured(service.policy, country)
    return _messaging_json(service, account, found, api_base(request))


@post(
    "/Services/{sid:str}/MessagingConfigurations/{country:str}",
    status_code=200,
    summary="Change a country's Messaging Service",
)
async def update_messaging_configuration(
    request: Request[Any, Any, Any],
    country: Annotated[str, PathParameter(max_length=64)],
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    sid = _messaging_sid(await read_form(request))
    changed: list[tuple[str, str, float, float]] = []

    def change(policy: Policy) -> Policy:  # on the policy as stored now
        old = _configured(policy, country)
        entry = (old[0], sid, old[2], time.time())
        changed.append(entry)  # the last run's (a store may run a change more than once)
        return replace(policy, messaging=(*_without(policy, old[0]), entry))

    updated = await tenants.change_policy(service.name, change)
    return _messaging_json(updated, account, changed[-1], api_base(request))


@delete(
    "/Services/{sid:str}/MessagingConfigurations/{country:str}",
    status_code=204,
    summary="Send a country's SMS as before",
)
async def delete_messaging_configuration(
    country: Annotated[str, PathParameter(max_length=64)],
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
) -> None:
    def remove(policy: Policy) -> Policy:  # on the policy as stored now
        return replace(policy, messaging=_without(policy, _configured(policy, country)[0]))

    await tenants.change_policy(service.name, remove)


def _safe_json(entry: SafeNumber, base: str) -> dict[str, Any]:
    return {
        "sid": entry.sid,
        "phone_number": entry.number,
        "url": f"{base}/SafeList/Numbers/{quote(entry.number, safe='')}",
    }


@post("/SafeList/Numbers", status_code=201, summary="Add a number to the account's safe list")
async def add_safe_number(
    request: Request[Any, Any, Any],
    safe_numbers: NamedDependency[SafeNumbers],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    form = await read_form(request)
    number = form.text("PhoneNumber", required=True, max_length=MAX_DESTINATION_LENGTH)
    entry = await safe_numbers.add(account.id, number or "")
    return _safe_json(entry, api_base(request))


@get("/SafeList/Numbers/{number:str}", summary="Check a number on the account's safe list")
async def fetch_safe_number(
    request: Request[Any, Any, Any],
    number: Ref,
    safe_numbers: NamedDependency[SafeNumbers],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    try:
        entry = await safe_numbers.get(account.id, number)
    except InvalidParameter:  # not a phone number: not on any list
        entry = None
    if entry is None:
        raise VerificationNotFound("the number is not on the safe list")
    return _safe_json(entry, api_base(request))


@delete("/SafeList/Numbers/{number:str}", status_code=204, summary="Remove a safe-listed number")
async def remove_safe_number(
    number: Ref, safe_numbers: NamedDependency[SafeNumbers], account: NamedDependency[Tenant]
) -> None:
    try:
        removed = await safe_numbers.remove(account.id, number)
    except InvalidParameter:  # not a phone number: not on any list
        removed = False
    if not removed:
        raise VerificationNotFound("the number is not on the safe list")


RESOURCE_HANDLERS = (
    create_messaging_configuration,
    list_messaging_configurations,
    fetch_messaging_configuration,
    update_messaging_configuration,
    delete_messaging_configuration,
    add_safe_number,
    fetch_safe_number,
    remove_safe_number,
)
# Their form bodies, for /openapi.json (platform/openapi_errors.py).
RESOURCE_FORMS: dict[tuple[str, str], dict[str, tuple[Schema, bool]]] = {
    ("POST", "/v2/SafeList/Numbers"): {
        "PhoneNumber": (Schema(type=OpenAPIType.STRING, max_length=MAX_DESTINATION_LENGTH), True)
    },
    ("POST", "/v2/Services/{sid}/MessagingConfigurations"): {
        "Country": (Schema(type=OpenAPIType.STRING, pattern="^([A-Za-z]{2}|[Aa][Ll][Ll])$"), True),
        "MessagingServiceSid": (_MESSAGING_SID, True),
    },
    ("POST", "/v2/Services/{sid}/MessagingConfigurations/{country}"): {
        "MessagingServiceSid": (_MESSAGING_SID, True),
    },
}
