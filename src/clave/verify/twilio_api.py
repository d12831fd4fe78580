"""The Twilio Verify v2 API, on clave: an app written against Twilio Verify (its official SDKs
included) switches to clave by changing one base URL.

Requests are form-encoded with PascalCase names; responses are Twilio's snake_case JSON with
ISO 8601 dates, and errors are `{"code", "message", "more_info", "status"}` with Twilio's codes.
Authentication is HTTP Basic with the account sid and an auth token, or an API key sid and its
secret (`clave apikey create --twilio`). A Twilio "service" (VA...) is a clave tenant; the
account manages every service of this deployment.

This layer only translates: the verify domain's use cases do the work, with every limit and
guard of the native API.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIType, Schema

from clave.platform.errors import classify, handlers
from clave.verify.attempts import seeded_attempt_sid
from clave.verify.client_ips import ClientIps
from clave.verify.errors import (
    InvalidDestination,
    InvalidParameter,
    MaxChecksReached,
    NoTargetVerification,
    VerificationNotFound,
)
from clave.verify.factors import Factors
from clave.verify.limits import SERVICE_RATE_LIMIT
from clave.verify.models import (
    MAX_CODE_LENGTH,
    Channel,
    Policy,
    Status,
    Tenant,
    Verification,
    is_code,
)
from clave.verify.reporting import AttemptsLog
from clave.verify.requests import (
    APP_HASH_LENGTH,
    MAX_DESTINATION_LENGTH,
    MAX_IP_LENGTH,
    MAX_LOCALE_LENGTH,
    StartRequest,
)
from clave.verify.safe_list import SafeNumbers
from clave.verify.service import VerificationView, VerifyService
from clave.verify.tenants import Tenants
from clave.verify.twilio_attempts import ATTEMPT_HANDLERS
from clave.verify.twilio_factors import FACTOR_FORMS, FACTOR_HANDLERS
from clave.verify.twilio_form import Ref, Sid, api_base, read_form, twilio_date
from clave.verify.twilio_rate_limits import RATE_LIMIT_FORMS, RATE_LIMIT_HANDLERS
from clave.verify.twilio_resources import RESOURCE_FORMS, RESOURCE_HANDLERS
from clave.verify.twilio_services import (
    SERVICE_FORMS,
    SERVICE_HANDLERS,
    TEXT_SCHEMA,
    TWILIO_NAME_LENGTH,
    text_schema,
)

# clave's stable error codes -> (Twilio error code, HTTP status).
_CODES: dict[str, tuple[int, int]] = {
    "invalid_parameter": (60200, 400),
    "invalid_destination": (60200, 400),
    "invalid_request": (60200, 400),
    "request_too_large": (60200, 400),
    "unsupported_media_type": (60200, 400),
    "channel_not_allowed": (60223, 400),
    "channel_unavailable": (60223, 400),
    "unauthorized": (20003, 401),
    "not_found": (20404, 404),
    "service_not_found": (20404, 404),
    "factor_not_found": (20404, 404),
    "too_many_failed_totp": (60202, 429),
    "verification_not_found": (20404, 404),
    "verification_not_pending": (20404, 404),
    "max_check_attempts_reached": (60202, 429),
    "too_many_failed_checks": (60202, 429),
    "max_send_attempts_reached": (60203, 429),
    SERVICE_RATE_LIMIT: (60203, 429),
    "sms_to_landline": (60205, 403),
    "country_not_allowed": (60605, 403),
    "destination_blocked": (60410, 403),
    "too_many_countries_from_ip": (60410, 403),
    "country_daily_cap_reached": (60410, 403),
    "method_not_allowed": (20004, 405),
    "no_target_verification": (60221, 400),
    "too_many_buckets": (60210, 400),
}
_CHANNELS = {c.value: c for c in Channel}
_PAYMENT_FIELDS: dict[str, tuple[Schema, bool]] = {
    "Amount": (TEXT_SCHEMA, False),
    "Payee": (TEXT_SCHEMA, False),
}
# The form bodies /openapi.json documents (these routes read their forms themselves).
OPENAPI_FORMS: dict[tuple[str, str], dict[str, tuple[Schema, bool]]] = {
    ("POST", "/v2/Services/{sid}/Verifications"): {
        "To": (text_schema(MAX_DESTINATION_LENGTH), True),
        "Channel": (Schema(type=OpenAPIType.STRING, enum=sorted(_CHANNELS)), True),
        "Locale": (text_schema(MAX_LOCALE_LENGTH), False),
        "CustomCode": (text_schema(MAX_CODE_LENGTH), False),
        "CustomFriendlyName": (text_schema(TWILIO_NAME_LENGTH), False),
        "AppHash": (text_schema(APP_HASH_LENGTH), False),
        "DeviceIp": (text_schema(MAX_IP_LENGTH), False),
        **{name: (TEXT_SCHEMA, False) for name in ("RateLimits", "ChannelConfiguration", "Tags")},
        **_PAYMENT_FIELDS,
    },
    ("POST", "/v2/Services/{sid}/Verifications/{ref}"): {
        "Status": (Schema(type=OpenAPIType.STRING, enum=["canceled", "approved"]), True),
    },
    ("POST", "/v2/Services/{sid}/VerificationCheck"): {
        "Code": (text_schema(MAX_CODE_LENGTH), True),
        "To": (text_schema(MAX_DESTINATION_LENGTH), False),
        "VerificationSid": (text_schema(34), False),
        **_PAYMENT_FIELDS,
    },
}
OPENAPI_FORMS.update(RESOURCE_FORMS)
OPENAPI_FORMS.update(RATE_LIMIT_FORMS)
OPENAPI_FORMS.update(FACTOR_FORMS)
OPENAPI_FORMS.update(SERVICE_FORMS)
# The statuses beyond the rules of platform/openapi_errors.py (Twilio's, after translation).
OPENAPI_ERRORS = {
    ("POST", "/v2/Services"): (400,),
    ("GET", "/v2/Services"): (400,),
    ("POST", "/v2/Services/{sid}/Verifications"): (403, 429),
    ("POST", "/v2/Services/{sid}/VerificationCheck"): (404, 429),
}


def twilio_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render any error the way Twilio does."""
    status, code, message, headers = classify(exc)
    twilio_code, twilio_status = _CODES.get(code, (0, status))
    if not twilio_code:
        twilio_code = 20429 if status == 429 else 20500 if status >= 500 else 60200
        twilio_status = status if status in (429, 500, 503) else 400
    if twilio_code == 20404:
        message = f"The requested resource {request.url.path} was not found"
    elif twilio_code == 20003:
        message = "Authenticate"
        # Twilio's challenge: clients that send credentials only when challenged (Java's
        # Authenticator, .NET's NetworkCredential) answer a Basic one, never a Bearer one.
        headers = {**headers, "WWW-Authenticate": 'Basic realm="Twilio API"'}
    return Response(
        {
            "code": twilio_code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{twilio_code}",
            "status": twilio_status,
        },
        status_code=twilio_status,
        headers=headers,
        media_type=MediaType.JSON,
    )


def _verification_json(view: VerificationView, account: Tenant, base: str) -> dict[str, Any]:
    v = view.verification
    # The terms this request bound or checked (a psd2 service's only), else those sent.
    payment = view.payment or next((s.payment for s in v.sends if s.payment), None)
    return {
        "sid": v.id,
        "service_sid": v.tenant_id,
        "account_sid": account.id,
        "to": v.to,
        "channel": v.channel.value,
        "status": view.status.value,
        "valid": view.valid,
        "lookup": {},  # what Twilio sends when Lookup is off (clave has none)
        "amount": payment[0] if payment else None,
        "payee": payment[1] if payment else None,
        "send_code_attempts": [
            {
                "attempt_sid": s.sid or attempt_sid(v, number),
                "channel": s.channel.value,
                "time": twilio_date(s.created_at),
            }
            for number, s in enumerate(v.sends)
        ],
        "sna": None,
        "date_created": twilio_date(v.created_at),
        "date_updated": twilio_date(v.updated_at),
        "url": f"{base}/Services/{v.tenant_id}/Verifications/{v.id}",
    }


def attempt_sid(verification: Verification, number: int) -> str:
    """The sid of a verification's `number`-th send that has none of its own."""
    return seeded_attempt_sid(verification.code.seed, number)


@post("/Services/{sid:str}/Verifications", status_code=201, summary="Send a code")
async def create_verification(
    request: Request[Any, Any, Any],
    verify: NamedDependency[VerifyService],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
    client_ips: NamedDependency[ClientIps],
) -> dict[str, Any]:
    form = await read_form(request)
    to = form.text("To", required=True, max_length=MAX_DESTINATION_LENGTH)
    channel_name = form.text("Channel", required=True, max_length=16)
    channel = _CHANNELS.get(channel_name or "")
    if to is None or channel is None:
        raise InvalidParameter("Invalid parameter: Channel")
    device_ip = client_ips.of(
        request, form.text("DeviceIp", max_length=MAX_IP_LENGTH), name="DeviceIp"
    )
    # Accepted for compatibility and not acted on: email templates are clave's
    # (ChannelConfiguration), and tags are not stored (Tags).
    for name in ("ChannelConfiguration", "Tags"):
        form.json_object(name)
    start = StartRequest(
        to=to,
        channel=channel,
        locale=form.text("Locale", max_length=MAX_LOCALE_LENGTH),
        custom_code=form.text("CustomCode", max_length=MAX_CODE_LENGTH),
        payment=form.payment(),
        friendly_name=form.text("CustomFriendlyName", max_length=TWILIO_NAME_LENGTH),
        app_hash=form.text("AppHash", max_length=APP_HASH_LENGTH),
        client_ip=device_ip,
        rate_limits=form.rate_limits(),
    )
    view, _created = await verify.start_verification(service, start)
    return _verification_json(view, account, api_base(request))


async def _verification(verify: VerifyService, service: Tenant, ref: str) -> VerificationView:
    """A pending verification by its sid, or (as Twilio allows) by its `To` value. Twilio
    deletes a verification once it is approved, canceled, expired or locked: 20404 then."""
    if not ref.startswith("VE"):
        try:
            return await verify.find_pending(service, ref)
        except InvalidDestination:  # neither a sid nor a destination: no such resource
            raise VerificationNotFound("no such verification") from None
    view = await verify.get(service, ref)
    if view.status is not Status.PENDING:
        raise VerificationNotFound("no pending verification found")
    return view


@get("/Services/{sid:str}/Verifications/{ref:str}", summary="Fetch a verification")
async def fetch_verification(
    request: Request[Any, Any, Any],
    ref: Ref,
    verify: NamedDependency[VerifyService],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    return _verification_json(await _verification(verify, service, ref), account, api_base(request))


@post(
    "/Services/{sid:str}/Verifications/{ref:str}",
    status_code=200,
    summary="Cancel or approve a verification",
)
async def update_verification(
    request: Request[Any, Any, Any],
    ref: Ref,
    verify: NamedDependency[VerifyService],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    status = (await read_form(request)).text("Status", required=True, max_length=16)
    if status not in ("canceled", "approved"):
        raise InvalidParameter("Invalid parameter: Status")
    found = await _verification(verify, service, ref)
    if status == "canceled":
        view = await verify.cancel(service, found.verification.id)
    else:
        view = await verify.approve(service, found.verification.id)
    return _verification_json(view, account, api_base(request))


@post("/Services/{sid:str}/VerificationCheck", status_code=200, summary="Check a code")
async def check_verification(
    request: Request[Any, Any, Any],
    verify: NamedDependency[VerifyService],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
    client_ips: NamedDependency[ClientIps],
) -> dict[str, Any]:
    form = await read_form(request)
    code = form.text("Code", required=True, max_length=MAX_CODE_LENGTH)
    to, vid = (
        form.text("To", max_length=MAX_DESTINATION_LENGTH),
        form.text("VerificationSid", max_length=34),
    )
    if to is None and vid is None:
        raise NoTargetVerification("Either a To or VerificationSid must be provided")
    if (to is None) == (vid is None) or code is None:
        raise InvalidParameter("Invalid parameter: give exactly one of To and VerificationSid")
    if not is_code(code):
        raise InvalidParameter("Invalid parameter: Code")
    try:
        view = await verify.check_code(
            service,
            code=code,
            verification_id=vid,
            to=to,
            payment=form.payment(),
            client_ip=client_ips.of(request, None),
        )
    except VerificationNotFound:
        # Twilio answers a check on a verification locked by wrong codes with 60202, whether
        # it names the verification or its destination...
        if await verify.locked(service, verification_id=vid, to=to):
            raise MaxChecksReached("Max check attempts reached") from None
        raise
    except MaxChecksReached:
        # ... until it expires: then it is gone (20404), as every verification that is.
        if not await verify.locked(service, verification_id=vid, to=to):
            raise VerificationNotFound("no pending verification found") from None
        raise
    body = _verification_json(view, account, api_base(request))
    del body["send_code_attempts"], body["lookup"], body["url"], body["sna"]
    body["sna_attempts_error_codes"] = []
    return body


def twilio_router(
    verify: VerifyService,
    tenants: Tenants,
    default_policy: Policy,
    client_ips: ClientIps,
    safe_numbers: SafeNumbers,
    attempts: AttemptsLog,
    factors: Factors,
) -> Router:
    """`/v2`: the Twilio Verify v2 API."""

    async def provide_factors() -> Factors:
        return factors

    async def provide_safe_numbers() -> SafeNumbers:
        return safe_numbers

    async def provide_attempts() -> AttemptsLog:
        return attempts

    async def provide_client_ips() -> ClientIps:
        return client_ips

    async def provide_verify() -> VerifyService:
        return verify

    async def provide_tenants() -> Tenants:
        return tenants

    async def provide_policy() -> Policy:
        return default_policy

    async def provide_account(request: Request[Any, Any, Any]) -> Tenant:
        return await tenants.authenticate_twilio(request.headers.get("authorization"))

    async def provide_service(sid: Sid, account: NamedDependency[Tenant]) -> Tenant:
        # After the account: an unauthenticated caller learns nothing about which sids exist,
        # and an account nothing about the services of others (they are not found).
        return await tenants.get_tenant_by_id(sid, account=account)

    return Router(
        path="/v2",
        route_handlers=[
            *SERVICE_HANDLERS,
            create_verification,
            fetch_verification,
            update_verification,
            check_verification,
            *RESOURCE_HANDLERS,
            *RATE_LIMIT_HANDLERS,
            *ATTEMPT_HANDLERS,
            *FACTOR_HANDLERS,
        ],
        dependencies={
            "safe_numbers": Provide(provide_safe_numbers),
            "attempts": Provide(provide_attempts),
            "factors": Provide(provide_factors),
            "verify": Provide(provide_verify),
            "tenants": Provide(provide_tenants),
            "client_ips": Provide(provide_client_ips),
            "default_policy": Provide(provide_policy),
            "account": Provide(provide_account),
            "service": Provide(provide_service),
        },
        exception_handlers=handlers(twilio_error_handler),
        security=[{"basic": []}],
        tags=["twilio-compatible"],
    )
