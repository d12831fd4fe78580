"""HTTP only: the native authenticator-app routes, /api/factors and /api/challenges, for the
tenant an API key names (verify/factors.py does the work)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from litestar import Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from clave.verify.factor_models import ENTITY_PATTERN, MAX_FACTOR_NAME_LENGTH, Factor
from clave.verify.factors import ChallengeResult, Factors
from clave.verify.models import Tenant
from clave.verify.qr import png_data_url, svg_data_url
from clave.verify.timestamps import iso
from clave.verify.totp import base32

Entity = Annotated[str, msgspec.Meta(pattern=ENTITY_PATTERN)]
TotpCode = Annotated[str, msgspec.Meta(pattern="^[0-9]{3,8}$")]
FactorId = Annotated[str, PathParameter(max_length=64)]
# An answer holding a secret is kept by no cache.
NO_STORE = {"Cache-Control": "no-store"}


class FactorCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/factors."""

    entity: Entity
    friendly_name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FACTOR_NAME_LENGTH)]
    type: Literal["totp"] = "totp"


class CodeBody(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/factors/{id}/confirm."""

    code: TotpCode


class ChallengeCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/challenges: the code and exactly one of `factor_id` and `entity`."""

    code: TotpCode
    factor_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    entity: Entity | None = None


class TotpRead(msgspec.Struct):
    """A factor's TOTP parameters (what the app computes codes with)."""

    time_step: int
    code_length: int
    skew: int


class Binding(msgspec.Struct):
    """What the user's app needs: the base32 secret and its `otpauth://` URI. Shown once."""

    secret: str
    uri: str


class FactorRead(msgspec.Struct):
    """A factor; never its secret, but in the enrollment's answer."""

    id: str
    entity: str
    type: str
    friendly_name: str
    # unverified until a first code confirms it; only verified factors take challenges.
    status: str
    totp: TotpRead
    created_at: str
    updated_at: str
    binding: Binding | None = None
    # The QR code of binding.uri as data: URLs (PNG, SVG), in the enrollment's answer only.
    qr_png_url: str | None = None
    qr_svg_url: str | None = None


class ChallengeRead(msgspec.Struct):
    """A challenge's outcome: `approved`, or `pending` (a wrong or replayed code)."""

    status: str
    valid: bool
    factor_id: str
    entity: str


def _read(factor: Factor) -> FactorRead:
    return FactorRead(
        id=factor.id,
        entity=factor.entity,
        type="totp",
        friendly_name=factor.friendly_name,
        status=factor.status.value,
        totp=TotpRead(factor.totp.time_step, factor.totp.code_length, factor.totp.skew),
        created_at=iso(factor.created_at),
        updated_at=iso(factor.updated_at),
    )


def _outcome(result: ChallengeResult) -> ChallengeRead:
    return ChallengeRead(
        status="approved" if result.approved else "pending",
        valid=result.approved,
        factor_id=result.factor.id,
        entity=result.factor.entity,
    )


@post("/", status_code=201, summary="Enroll an authenticator app (a TOTP factor)")
async def create_factor(
    data: JSONBody[FactorCreate], factors: NamedDependency[Factors], caller: NamedDependency[Tenant]
) -> Response[FactorRead]:
    """The new factor is `unverified`; its secret, URI and QR codes are in this answer only
    (which no cache keeps)."""
    made = await factors.enroll(caller, data.entity, data.friendly_name, caller.policy.totp)
    found = _read(made.factor)
    found.binding = Binding(secret=base32(made.secret), uri=made.uri)
    found.qr_png_url = png_data_url(made.uri)
    found.qr_svg_url = svg_data_url(made.uri)
    return Response(found, status_code=201, headers=NO_STORE)


@get("/", summary="List an entity's factors")
async def list_factors(
    entity: Annotated[str, QueryParameter(pattern=ENTITY_PATTERN)],
    factors: NamedDependency[Factors],
    caller: NamedDependency[Tenant],
) -> list[FactorRead]:
    """Oldest first."""
    return [_read(f) for f in await factors.of_entity(caller, entity)]


@get("/{factor_id:str}", summary="Read a factor")
async def read_factor(
    factor_id: FactorId, factors: NamedDependency[Factors], caller: NamedDependency[Tenant]
) -> FactorRead:
    """Its status and parameters, never its secret."""
    return _read(await factors.get(caller, factor_id))


@delete("/{factor_id:str}", status_code=204, summary="Delete a factor")
async def delete_factor(
    factor_id: FactorId, factors: NamedDependency[Factors], caller: NamedDependency[Tenant]
) -> None:
    """Its codes stop working at once."""
    await factors.delete(caller, factor_id)


@post("/{factor_id:str}/confirm", status_code=200, summary="Confirm a factor with a first code")
async def confirm_factor(
    factor_id: FactorId,
    data: JSONBody[CodeBody],
    factors: NamedDependency[Factors],
    caller: NamedDependency[Tenant],
) -> ChallengeRead:
    """`approved` verifies the factor; a wrong code is `pending` and counts against it."""
    return _outcome(await factors.confirm(caller, factor_id, data.code))


@post("/", status_code=200, summary="Check an authenticator app's code")
async def create_challenge(
    data: JSONBody[ChallengeCreate],
    factors: NamedDependency[Factors],
    caller: NamedDependency[Tenant],
) -> ChallengeRead:
    """Against the factor, or any verified factor of the entity. A code is accepted once."""
    result = await factors.challenge(
        caller, data.code, factor_id=data.factor_id, entity=data.entity
    )
    return _outcome(result)


def factor_routers(factors: Factors, dependencies: Mapping[str, Provide]) -> list[Router]:
    """`/api/factors` and `/api/challenges`, with `dependencies` providing the `caller`."""

    async def provide_factors() -> Factors:
        return factors

    wired = {**dependencies, "factors": Provide(provide_factors)}
    return [
        Router(
            path="/api/factors",
            route_handlers=[
                create_factor,
                list_factors,
                read_factor,
                delete_factor,
                confirm_factor,
            ],
            dependencies=wired,
            security=[{"bearer": []}],
            tags=["factors"],
        ),
        Router(
            path="/api/challenges",
            route_handlers=[create_challenge],
            dependencies=wired,
            security=[{"bearer": []}],
            tags=["factors"],
        ),
    ]
