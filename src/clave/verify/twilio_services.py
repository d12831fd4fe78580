"""Twilio Verify's Services under /v2: a service (VA...) is a clave tenant, created, listed,
read, changed and deleted by the account that sees it."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema

from clave.verify.models import MAX_CODE_LENGTH, MIN_CODE_LENGTH, Policy, Tenant
from clave.verify.tenants import Tenants
from clave.verify.totp import TotpSettings
from clave.verify.twilio_form import Form, api_base, read_form, twilio_date, twilio_page

# Twilio's own limit on FriendlyName and CustomFriendlyName (clave's rule allows 64).
TWILIO_NAME_LENGTH = 30
_FLAGS = {
    "CustomCodeEnabled": "custom_code",
    "Psd2Enabled": "psd2",
    "SkipSmsToLandlines": "skip_sms_to_landlines",
}
# DoNotShareWarningEnabled is the opposite of clave's flag: messages carry the warning unless
# the tenant has no_share_warning. Twilio's default is off, so a service /v2 creates without
# the parameter has the flag.
_SHARE_WARNING = "DoNotShareWarningEnabled"
# Accepted for compatibility; clave has no use for them (its voice and lookups are its own).
_IGNORED_SERVICE_PARAMS = ("LookupEnabled", "DtmfInputRequired", "TtsName", "DefaultTemplateSid")


TEXT_SCHEMA = Schema(type=OpenAPIType.STRING)
_FLAG = Schema(type=OpenAPIType.BOOLEAN)


def text_schema(max_length: int) -> Schema:
    return Schema(type=OpenAPIType.STRING, max_length=max_length)


_SERVICE_FIELDS: dict[str, tuple[Schema, bool]] = {
    "FriendlyName": (text_schema(TWILIO_NAME_LENGTH), False),
    "CodeLength": (
        Schema(type=OpenAPIType.INTEGER, minimum=MIN_CODE_LENGTH, maximum=MAX_CODE_LENGTH),
        False,
    ),
    **{
        flag: (_FLAG, False)
        for flag in (*_FLAGS, _SHARE_WARNING, "LookupEnabled", "DtmfInputRequired")
    },
    "TtsName": (TEXT_SCHEMA, False),
    "DefaultTemplateSid": (TEXT_SCHEMA, False),
    "Totp.Issuer": (TEXT_SCHEMA, False),
    "Totp.TimeStep": (Schema(type=OpenAPIType.INTEGER, minimum=20, maximum=60), False),
    "Totp.CodeLength": (Schema(type=OpenAPIType.INTEGER, minimum=3, maximum=8), False),
    "Totp.Skew": (Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=2), False),
}


def _service_json(service: Tenant, account: Tenant, base: str) -> dict[str, Any]:
    p = service.policy
    url = f"{base}/Services/{service.id}"
    return {
        "sid": service.id,
        "account_sid": account.id,
        "friendly_name": p.friendly_name,
        "code_length": p.code_length,
        "lookup_enabled": False,
        "psd2_enabled": "psd2" in p.flags,
        "skip_sms_to_landlines": "skip_sms_to_landlines" in p.flags,
        "dtmf_input_required": False,
        "tts_name": None,
        "do_not_share_warning_enabled": "no_share_warning" not in p.flags,
        "custom_code_enabled": "custom_code" in p.flags,
        # Twilio returns every key of these objects, null when unset: clients index them.
        "push": {"include_date": None, "apn_credential_sid": None, "fcm_credential_sid": None},
        # New TOTP factors' settings (the issuer an app shows is the service's name).
        "totp": {
            "issuer": p.friendly_name,
            "time_step": p.totp.time_step,
            "code_length": p.totp.code_length,
            "skew": p.totp.skew,
        },
        "default_template_sid": None,
        "whatsapp": {"msg_service_sid": None, "from": None},
        "passkeys": {
            "relying_party": None,
            "authenticator_attachment": None,
            "discoverable_credentials": None,
            "user_verification": None,
        },
        "verify_event_subscription_enabled": False,
        "date_created": twilio_date(service.created_at),
        "date_updated": twilio_date(service.updated_at or service.created_at),
        "url": url,
        # Every sub-resource Twilio links; the ones clave does not serve answer 20404.
        "links": {
            "verification_checks": f"{url}/VerificationCheck",
            "verifications": f"{url}/Verifications",
            "rate_limits": f"{url}/RateLimits",
            "messaging_configurations": f"{url}/MessagingConfigurations",
            "entities": f"{url}/Entities",
            "webhooks": f"{url}/Webhooks",
            "access_tokens": f"{url}/AccessTokens",
        },
    }


def _policy(form: Form, base: Policy) -> Policy:
    friendly = form.text("FriendlyName", max_length=TWILIO_NAME_LENGTH)
    length = form.integer("CodeLength", MIN_CODE_LENGTH, MAX_CODE_LENGTH)
    flags = set(base.flags)
    for param, flag in _FLAGS.items():
        value = form.flag(param)
        if value is True:
            flags.add(flag)
        elif value is False:
            flags.discard(flag)
    warning = form.flag(_SHARE_WARNING)
    if warning is not None:
        flags.discard("do_not_share_warning")  # an earlier release's name for it
        if warning:
            flags.discard("no_share_warning")
        else:
            flags.add("no_share_warning")
    for param in _IGNORED_SERVICE_PARAMS:
        form.text(param)
    step = form.integer("Totp.TimeStep", 1, 3600)
    totp_length = form.integer("Totp.CodeLength", 1, 10)
    skew = form.integer("Totp.Skew", 0, 10)
    form.text("Totp.Issuer", max_length=TWILIO_NAME_LENGTH)  # the issuer is the FriendlyName
    totp = TotpSettings(
        time_step=base.totp.time_step if step is None else step,
        code_length=base.totp.code_length if totp_length is None else totp_length,
        skew=base.totp.skew if skew is None else skew,
    )
    return replace(
        base,
        friendly_name=friendly if friendly is not None else base.friendly_name,
        code_length=length if length is not None else base.code_length,
        flags=frozenset(flags),
        totp=totp,
    )


@post("/Services", status_code=201, summary="Create a service (a clave tenant)")
async def create_service(
    request: Request[Any, Any, Any],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
    default_policy: NamedDependency[Policy],
) -> dict[str, Any]:
    form = await read_form(request)
    form.text("FriendlyName", required=True, max_length=TWILIO_NAME_LENGTH)
    sid = "VA" + secrets.token_hex(16)
    # Twilio's defaults where they differ from clave's: no "do not share" sentence.
    twilio_default = replace(default_policy, flags=default_policy.flags | {"no_share_warning"})
    service = await tenants.create_tenant(
        sid.lower(), _policy(form, twilio_default), tenant_id=sid, account=account
    )
    return _service_json(service, account, api_base(request))


@get("/Services", summary="List services, a page at a time")
async def list_services(
    request: Request[Any, Any, Any],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    base = api_base(request)
    everything = await tenants.list_tenants(account=account)
    return twilio_page(
        request,
        f"{base}/Services",
        "services",
        everything,
        lambda s: _service_json(s, account, base),
    )


@get("/Services/{sid:str}", summary="Fetch a service")
async def fetch_service(
    request: Request[Any, Any, Any],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    return _service_json(service, account, api_base(request))


@post("/Services/{sid:str}", status_code=200, summary="Update a service")
async def update_service(
    request: Request[Any, Any, Any],
    service: NamedDependency[Tenant],
    tenants: NamedDependency[Tenants],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    form = await read_form(request)
    # On the policy as stored now, not the cached copy: another worker may have changed it.
    updated = await tenants.change_policy(service.name, lambda policy: _policy(form, policy))
    return _service_json(updated, account, api_base(request))


@delete("/Services/{sid:str}", status_code=204, summary="Delete a service")
async def delete_service(
    service: NamedDependency[Tenant], tenants: NamedDependency[Tenants]
) -> None:
    await tenants.delete_tenant(service)


SERVICE_HANDLERS = (create_service, list_services, fetch_service, update_service, delete_service)
SERVICE_FORMS: dict[tuple[str, str], dict[str, tuple[Schema, bool]]] = {
    ("POST", "/v2/Services"): {
        **_SERVICE_FIELDS,
        "FriendlyName": (text_schema(TWILIO_NAME_LENGTH), True),
    },
    ("POST", "/v2/Services/{sid}"): _SERVICE_FIELDS,
}
