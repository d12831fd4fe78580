"""Twilio Verify's TOTP resources under /v2/Services/{sid}/Entities: entities, their factors
(create with FactorType=totp, verify with AuthPayload) and challenges (create with FactorSid
and AuthPayload), over the same use cases as /api/factors (verify/factors.py)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import PathParameter

from clave.verify.errors import FactorNotFound, InvalidParameter
from clave.verify.factor_models import ENTITY_PATTERN, Challenge, Entity, Factor
from clave.verify.factors import Factors
from clave.verify.models import Tenant
from clave.verify.totp import TotpSettings, base32
from clave.verify.twilio_form import Form, api_base, read_form, twilio_date, twilio_page

Identity = Annotated[str, PathParameter(max_length=128)]
ResourceSid = Annotated[str, PathParameter(max_length=64)]
_CODE = re.compile(r"[0-9]{3,8}")


def _entity_url(base: str, tenant: Tenant, identity: str) -> str:
    return f"{base}/Services/{tenant.id}/Entities/{quote(identity, safe='')}"


def _entity_json(entity: Entity, tenant: Tenant, account: Tenant, base: str) -> dict[str, Any]:
    url = _entity_url(base, tenant, entity.identity)
    return {
        "sid": entity.sid,
        "identity": entity.identity,
        "account_sid": account.id,
        "service_sid": tenant.id,
        "date_created": twilio_date(entity.created_at),
        "date_updated": twilio_date(entity.created_at),
        "url": url,
        "links": {
            "factors": f"{url}/Factors",
            "challenges": f"{url}/Challenges",
            "new_factors": f"{url}/Factors",
        },
    }


def _factor_json(
    factor: Factor, entity: Entity, tenant: Tenant, account: Tenant, base: str
) -> dict[str, Any]:
    return {
        "sid": factor.id,
        "account_sid": account.id,
        "service_sid": tenant.id,
        "entity_sid": entity.sid,
        "identity": entity.identity,
        "binding": None,
        "date_created": twilio_date(factor.created_at),
        "date_updated": twilio_date(factor.updated_at),
        "friendly_name": factor.friendly_name,
        "status": factor.status.value,
        "factor_type": "totp",
        "config": {
            "alg": "sha1",
            "skew": factor.totp.skew,
            "code_length": factor.totp.code_length,
            "time_step": factor.totp.time_step,
        },
        "metadata": None,
        "url": f"{_entity_url(base, tenant, entity.identity)}/Factors/{factor.id}",
    }


def _challenge_json(
    challenge: Challenge, entity: Entity, tenant: Tenant, account: Tenant, base: str
) -> dict[str, Any]:
    url = f"{_entity_url(base, tenant, entity.identity)}/Challenges/{challenge.sid}"
    responded = twilio_date(challenge.updated_at) if challenge.status == "approved" else None
    return {
        "sid": challenge.sid,
        "account_sid": account.id,
        "service_sid": tenant.id,
        "entity_sid": entity.sid,
        "identity": entity.identity,
        "factor_sid": challenge.factor_id,
        "date_created": twilio_date(challenge.created_at),
        "date_updated": twilio_date(challenge.updated_at),
        "date_responded": responded,
        "expiration_date": None,
        "status": challenge.status,
        "responded_reason": None,
        "details": None,
        "hidden_details": None,
        "metadata": None,
        "factor_type": "totp",
        "url": url,
        "links": {"notifications": f"{url}/Notifications"},
    }


def _code(form: Form) -> str:
    code = form.text("AuthPayload", required=True, max_length=8) or ""
    if not _CODE.fullmatch(code):
        raise InvalidParameter("Invalid parameter: AuthPayload")
    return code


def _config(form: Form, defaults: TotpSettings) -> TotpSettings:
    """Config.* of a factor create, over the service's TOTP settings."""
    alg = form.text("Config.Alg", max_length=8)
    if alg is not None and alg.lower() != "sha1":
        raise InvalidParameter("Invalid parameter: Config.Alg (clave's TOTP is SHA-1)")
    step = form.integer("Config.TimeStep", 1, 3600)
    length = form.integer("Config.CodeLength", 1, 10)
    skew = form.integer("Config.Skew", 0, 10)
    return TotpSettings(
        time_step=defaults.time_step if step is None else step,
        code_length=defaults.code_length if length is None else length,
        skew=defaults.skew if skew is None else skew,
    )


@post("/Services/{sid:str}/Entities", status_code=201, summary="Create an entity (a user)")
async def create_entity(
    request: Request[Any, Any, Any],
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    form = await read_form(request)
    identity = form.text("Identity", required=True, max_length=128) or ""
    entity = await factors.ensure_entity(service, identity)
    return _entity_json(entity, service, account, api_base(request))


@get("/Services/{sid:str}/Entities", summary="List a service's entities, a page at a time")
async def list_entities(
    request: Request[Any, Any, Any],
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    base = api_base(request)
    return twilio_page(
        request,
        f"{base}/Services/{service.id}/Entities",
        "entities",
        await factors.entities(service),
        lambda e: _entity_json(e, service, account, base),
    )


@get("/Services/{sid:str}/Entities/{identity:str}", summary="Fetch an entity")
async def fetch_entity(
    request: Request[Any, Any, Any],
    identity: Identity,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    entity = await factors.entity(service, identity)
    return _entity_json(entity, service, account, api_base(request))


@delete(
    "/Services/{sid:str}/Entities/{identity:str}",
    status_code=204,
    summary="Delete an entity with its factors and challenges",
)
async def delete_entity(
    identity: Identity, factors: NamedDependency[Factors], service: NamedDependency[Tenant]
) -> None:
    await factors.delete_entity(service, identity)


@post(
    "/Services/{sid:str}/Entities/{identity:str}/Factors",
    status_code=201,
    summary="Create a TOTP factor (its binding is shown this once)",
)
async def create_factor(
    request: Request[Any, Any, Any],
    identity: Identity,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> Response[dict[str, Any]]:
    form = await read_form(request)
    name = form.text("FriendlyName", required=True, max_length=64) or ""
    kind = form.text("FactorType", required=True, max_length=16) or ""
    if kind.lower() != "totp":
        raise InvalidParameter("Invalid parameter: FactorType (clave has totp factors)")
    if form.text("Binding.Secret", max_length=256) is not None:
        raise InvalidParameter("Invalid parameter: Binding.Secret (clave makes the secret)")
    made = await factors.enroll(service, identity, name, _config(form, service.policy.totp))
    entity = await factors.entity(service, identity)
    found = _factor_json(made.factor, entity, service, account, api_base(request))
    found["binding"] = {"secret": base32(made.secret), "uri": made.uri}
    return Response(found, status_code=201, headers={"Cache-Control": "no-store"})


@get(
    "/Services/{sid:str}/Entities/{identity:str}/Factors",
    summary="List an entity's factors, a page at a time",
)
async def list_factors(
    request: Request[Any, Any, Any],
    identity: Identity,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    entity = await factors.entity(service, identity)
    base = api_base(request)
    return twilio_page(
        request,
        f"{_entity_url(base, service, identity)}/Factors",
        "factors",
        await factors.of_entity(service, identity),
        lambda f: _factor_json(f, entity, service, account, base),
    )


async def _entity_factor(
    factors: Factors, service: Tenant, identity: str, factor_sid: str
) -> tuple[Entity, Factor]:
    entity = await factors.entity(service, identity)
    factor = await factors.get(service, factor_sid)
    if factor.entity != identity:
        raise FactorNotFound(f"no factor {factor_sid} of {identity!r}")
    return entity, factor


@get("/Services/{sid:str}/Entities/{identity:str}/Factors/{factor:str}", summary="Fetch a factor")
async def fetch_factor(
    request: Request[Any, Any, Any],
    identity: Identity,
    factor: ResourceSid,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    entity, found = await _entity_factor(factors, service, identity, factor)
    return _factor_json(found, entity, service, account, api_base(request))


@post(
    "/Services/{sid:str}/Entities/{identity:str}/Factors/{factor:str}",
    status_code=200,
    summary="Verify a factor with a code (AuthPayload)",
)
async def update_factor(
    request: Request[Any, Any, Any],
    identity: Identity,
    factor: ResourceSid,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    form = await read_form(request)
    entity, found = await _entity_factor(factors, service, identity, factor)
    if form.text("FriendlyName", max_length=64) is not None:
        raise InvalidParameter("Invalid parameter: FriendlyName (a factor keeps its name)")
    result = await factors.confirm(service, found.id, _code(form))
    shown = result.factor if result.approved else found
    return _factor_json(shown, entity, service, account, api_base(request))


@delete(
    "/Services/{sid:str}/Entities/{identity:str}/Factors/{factor:str}",
    status_code=204,
    summary="Delete a factor",
)
async def delete_factor(
    identity: Identity,
    factor: ResourceSid,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
) -> None:
    await _entity_factor(factors, service, identity, factor)
    await factors.delete(service, factor)


@post(
    "/Services/{sid:str}/Entities/{identity:str}/Challenges",
    status_code=201,
    summary="Challenge a TOTP factor with a code (FactorSid, AuthPayload)",
)
async def create_challenge(
    request: Request[Any, Any, Any],
    identity: Identity,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    form = await read_form(request)
    factor_sid = form.text("FactorSid", required=True, max_length=34) or ""
    entity = await factors.entity(service, identity)
    kept = await factors.kept_challenge(service, identity, factor_sid, _code(form))
    return _challenge_json(kept, entity, service, account, api_base(request))


@get(
    "/Services/{sid:str}/Entities/{identity:str}/Challenges",
    summary="List an entity's challenges, a page at a time",
)
async def list_challenges(
    request: Request[Any, Any, Any],
    identity: Identity,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    entity = await factors.entity(service, identity)
    base = api_base(request)
    query = Form(request.query_params)
    status = query.text("Status", max_length=16)
    factor_sid = query.text("FactorSid", max_length=34)
    kept = [
        c
        for c in await factors.challenges(service, identity)
        if status in (None, c.status) and factor_sid in (None, c.factor_id)
    ]
    return twilio_page(
        request,
        f"{_entity_url(base, service, identity)}/Challenges",
        "challenges",
        kept,
        lambda c: _challenge_json(c, entity, service, account, base),
    )


@get(
    "/Services/{sid:str}/Entities/{identity:str}/Challenges/{challenge:str}",
    summary="Fetch a challenge",
)
async def fetch_challenge(
    request: Request[Any, Any, Any],
    identity: Identity,
    challenge: ResourceSid,
    factors: NamedDependency[Factors],
    service: NamedDependency[Tenant],
    account: NamedDependency[Tenant],
) -> dict[str, Any]:
    entity = await factors.entity(service, identity)
    kept = await factors.kept(service, challenge)
    if kept.identity != identity:
        raise FactorNotFound(f"no challenge {challenge} of {identity!r}")
    return _challenge_json(kept, entity, service, account, api_base(request))


FACTOR_HANDLERS = (
    create_entity,
    list_entities,
    fetch_entity,
    delete_entity,
    create_factor,
    list_factors,
    fetch_factor,
    update_factor,
    delete_factor,
    create_challenge,
    list_challenges,
    fetch_challenge,
)
_TEXT = Schema(type=OpenAPIType.STRING)
_CODE_SCHEMA = Schema(type=OpenAPIType.STRING, pattern="^[0-9]{3,8}$")
# Their form bodies, for /openapi.json (platform/openapi_errors.py).
FACTOR_FORMS: dict[tuple[str, str], dict[str, tuple[Schema, bool]]] = {
    ("POST", "/v2/Services/{sid}/Entities"): {
        "Identity": (Schema(type=OpenAPIType.STRING, pattern=ENTITY_PATTERN), True),
    },
    ("POST", "/v2/Services/{sid}/Entities/{identity}/Factors"): {
        "FriendlyName": (Schema(type=OpenAPIType.STRING, min_length=1, max_length=64), True),
        "FactorType": (Schema(type=OpenAPIType.STRING, enum=["totp"]), True),
        "Config.TimeStep": (Schema(type=OpenAPIType.INTEGER, minimum=20, maximum=60), False),
        "Config.CodeLength": (Schema(type=OpenAPIType.INTEGER, minimum=3, maximum=8), False),
        "Config.Skew": (Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=2), False),
        "Config.Alg": (Schema(type=OpenAPIType.STRING, enum=["sha1"]), False),
    },
    ("POST", "/v2/Services/{sid}/Entities/{identity}/Factors/{factor}"): {
        "AuthPayload": (_CODE_SCHEMA, True),
    },
    ("POST", "/v2/Services/{sid}/Entities/{identity}/Challenges"): {
        "FactorSid": (_TEXT, True),
        "AuthPayload": (_CODE_SCHEMA, True),
    },
}
