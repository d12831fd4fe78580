"""HTTP layer of users: the original sample's routes, plus writes and contact verification."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from clave.platform.client_ip import end_user_ip
from clave.platform.contacts import mask
from clave.platform.lean import Handover, LeanRequest, LeanResponse, LeanRoute, native_errors
from clave.platform.origin import origin_of
from clave.platform.pagination import (
    DEFAULT_LIMIT,
    MAX_AFTER,
    MAX_LIMIT,
    link_after,
    next_link,
    plain_page_query,
    split_page,
)
from clave.users.models import Caller, User
from clave.users.service import UsersService

UserId = Annotated[int, PathParameter(ge=1, le=2**53)]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)]
After = Annotated[int, QueryParameter(ge=0, le=MAX_AFTER)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Bio = Annotated[str, msgspec.Meta(max_length=1000)]
ContactText = Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
Channel = Annotated[str, msgspec.Meta(pattern="^(sms|whatsapp|call|email)$")]


# The statuses each route answers beyond the rules of platform/openapi_errors.py.
OPENAPI_ERRORS = {
    ("POST", "/api/users"): (409,),
    ("PATCH", "/api/users/{user_id}"): (403, 409),
    ("DELETE", "/api/users/{user_id}"): (403,),
    ("POST", "/api/users/{user_id}/token"): (403,),
    ("POST", "/api/users/{user_id}/verification"): (403, 422, 429),
    ("POST", "/api/users/{user_id}/verification/check"): (403, 409, 429),
    ("POST", "/api/users/{user_id}/totp"): (403, 409, 429),
    ("POST", "/api/users/{user_id}/totp/confirm"): (403, 409, 429),
    ("POST", "/api/users/{user_id}/sign-in"): (422, 429),
    ("POST", "/api/users/{user_id}/sign-in/check"): (409, 429),
}


class UserRead(msgspec.Struct, rename="camel"):
    """A user; contacts are masked, as anyone may read this."""

    id: int
    username: str
    name: str
    bio: str
    email: str | None
    phone: str | None
    email_verified: bool
    phone_verified: bool


class UserCreated(UserRead, rename="camel"):
    """A new user with its token: shown this once, only its hash is kept."""

    token: str


class TokenRead(msgspec.Struct):
    """A user's new token: shown this once."""

    token: str


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/users."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    name: Name
    bio: Bio = ""
    email: ContactText | None = None
    phone: ContactText | None = None


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of PATCH /api/users/{id}: only the fields given change; null clears a contact."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    name: Name | msgspec.UnsetType = msgspec.UNSET
    bio: Bio | msgspec.UnsetType = msgspec.UNSET
    email: ContactText | msgspec.UnsetType | None = msgspec.UNSET
    phone: ContactText | msgspec.UnsetType | None = msgspec.UNSET


class VerificationStart(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/users/{id}/verification."""

    channel: Channel = "sms"


class VerificationCheck(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/users/{id}/verification/check."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class VerificationStarted(msgspec.Struct, rename="camel"):
    """A code sent: where (masked) and how many checks it allows."""

    verification_id: str
    status: str
    channel: str
    to: str
    check_attempts_left: int


class VerificationRead(msgspec.Struct, rename="camel"):
    """The state of a user's contact verification."""

    user: UserRead
    verification: str
    status: str
    channel: str
    to: str
    check_attempts_left: int


def render(user: User) -> UserRead:
    """The public form of a user."""
    return UserRead(
        id=user.id,
        username=user.username,
        name=user.name,
        bio=user.bio,
        email=mask(user.email) if user.email else None,
        phone=mask(user.phone) if user.phone else None,
        email_verified=user.email_verified,
        phone_verified=user.phone_verified,
    )


Users = NamedDependency[UsersService]
# The user whose token the request carries (401 before anything else otherwise).
Acting = NamedDependency[Caller]
# The end user's address, for verify's per-IP limits.
ClientIp = NamedDependency[str | None]
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
# A response that carries a token must not be kept by a cache on the way (as OAuth 2.0's).
NO_STORE = {"Cache-Control": "no-store"}


@get("/", summary="List users")
async def list_users(
    request: Request[Any, Any, Any], users: Users, limit: Limit = DEFAULT_LIMIT, after: After = 0
) -> Response[list[UserRead]]:
    """Users by id; `Link` names the next page."""
    page, more = split_page(await users.list_users(after=after, limit=limit + 1), limit)
    return Response([render(u) for u in page], headers=next_link(request, more, limit))


def lean_routes(service: UsersService) -> list[LeanRoute]:
    """GET /api/users as a lean route (platform/lean.py): list_users's steps without the
    framework's per-request work, for the plain query (`limit`, `after`, nothing else)."""

    async def users(request: LeanRequest) -> LeanResponse:
        query = plain_page_query(request.query)
        if query is None:
            raise Handover
        limit, after = query
        page, more = split_page(await service.list_users(after=after, limit=limit + 1), limit)
        headers = link_after(origin_of(request.scope) + request.scope["path"], (), more, limit)
        return LeanResponse([render(u) for u in page], headers=headers)

    return [LeanRoute("GET", "/api/users", users, native_errors)]


@get("/{user_id:int}", summary="Read a user")
async def read_user(user_id: UserId, users: Users) -> UserRead:
    """One user."""
    return render(await users.get_user(user_id))


@get("/me", summary="The user of the bearer token", security=BEARER)
async def read_me(caller: Acting) -> UserRead:
    """Who the token belongs to (other services ask this to learn who is acting)."""
    return render(caller.user)


@post("/", summary="Sign up")
async def create_user(data: JSONBody[UserCreate], users: Users) -> Response[UserCreated]:
    """A new user, with its token: shown once, needed for every write as that user."""
    user, token = await users.sign_up(
        username=data.username, name=data.name, bio=data.bio, email=data.email, phone=data.phone
    )
    body = UserCreated(**msgspec.structs.asdict(render(user)), token=token)
    return Response(body, status_code=201, headers=NO_STORE)


@patch("/{user_id:int}", summary="Update a user", security=BEARER)
async def update_user(
    user_id: UserId, data: JSONBody[UserUpdate], users: Users, caller: Acting
) -> UserRead:
    """Change the given fields (the user's own token)."""
    changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
    return render(await users.update_user(caller, user_id, changes))


@delete("/{user_id:int}", summary="Delete a user", status_code=204, security=BEARER)
async def delete_user(user_id: UserId, users: Users, caller: Acting) -> None:
    """Delete a user (the user's own token); its token stops working."""
    await users.delete_user(caller, user_id)


@post("/{user_id:int}/token", summary="Rotate the user's token", status_code=200, security=BEARER)
async def rotate_token(user_id: UserId, users: Users, caller: Acting) -> Response[TokenRead]:
    """A new token for the user; the one presented stops working at once."""
    return Response(TokenRead(await users.rotate_token(caller, user_id)), headers=NO_STORE)


@post(
    "/{user_id:int}/verification",
    summary="Send a code to the user's phone or email",
    security=BEARER,
)
async def start_verification(
    user_id: UserId,
    data: JSONBody[VerificationStart],
    users: Users,
    caller: Acting,
    client_ip: ClientIp,
) -> Response[VerificationRead]:
    """Start proving the user's phone (sms, whatsapp, call) or email."""
    started = await users.start_verification(caller, user_id, data.channel, client_ip=client_ip)
    user = await users.get_user(user_id)
    body = VerificationRead(
        render(user),
        started.id,
        started.status,
        started.channel,
        started.to,
        started.check_attempts_left,
    )
    return Response(body, status_code=201)


@post(
    "/{user_id:int}/verification/check",
    summary="Check the code",
    status_code=200,
    security=BEARER,
)
async def check_verification(
    user_id: UserId,
    data: JSONBody[VerificationCheck],
    users: Users,
    caller: Acting,
    client_ip: ClientIp,
) -> VerificationRead:
    """Approved: the contact is marked verified."""
    user, result = await users.check_verification(caller, user_id, data.code, client_ip=client_ip)
    return VerificationRead(
        render(user),
        result.id,
        result.status,
        result.channel,
        result.to,
        result.check_attempts_left,
    )


class AuthenticatorRead(msgspec.Struct):
    """A new authenticator app (verify's factor): add it to the app with the secret, the
    `otpauth://` URI or a QR code, shown this once; then confirm it with a first code."""

    factor_id: str
    status: str
    secret: str
    uri: str
    qr_png_url: str
    qr_svg_url: str


class AuthenticatorAdd(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/users/{id}/totp: `{}`, or the code of the app the user has."""

    totp_code: Annotated[str, msgspec.Meta(pattern="^[0-9]{3,8}$")] | None = None


class CodeCheck(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/users/{id}/totp/confirm."""

    code: Annotated[str, msgspec.Meta(pattern="^[0-9]{3,8}$")]


class ConfirmRead(msgspec.Struct):
    """Whether the code confirmed the authenticator app: approved, or pending."""

    status: str


class SignInCheck(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/users/{id}/sign-in/check: the code sent, and an authenticator
    app's code when the user has one."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    totp_code: Annotated[str, msgspec.Meta(pattern="^[0-9]{3,8}$")] | None = None


class SignInRead(msgspec.Struct):
    """A sign-in check: approved with a new token (shown this once; the old one stops
    working), or pending with the attempts left."""

    status: str
    check_attempts_left: int
    token: str | None = None


@post(
    "/{user_id:int}/totp",
    summary="Add an authenticator app (a second factor at sign-in)",
    status_code=201,
    security=BEARER,
)
async def add_authenticator(
    user_id: UserId, data: JSONBody[AuthenticatorAdd], users: Users, caller: Acting
) -> Response[AuthenticatorRead]:
    """The app's secret and QR codes, this once; it counts after `/totp/confirm`. A user who
    has an app already gives its code (`totp_code`): a token alone adds none."""
    made = await users.add_authenticator(caller, user_id, data.totp_code)
    binding = made["binding"]
    assert isinstance(binding, dict)  # verify's answer to an enrollment always has one
    body = AuthenticatorRead(
        factor_id=str(made["id"]),
        status=str(made["status"]),
        secret=str(binding["secret"]),
        uri=str(binding["uri"]),
        qr_png_url=str(made["qr_png_url"]),
        qr_svg_url=str(made["qr_svg_url"]),
    )
    return Response(body, status_code=201, headers=NO_STORE)


@post(
    "/{user_id:int}/totp/confirm",
    summary="Confirm the authenticator app with its first code",
    status_code=200,
    security=BEARER,
)
async def confirm_authenticator(
    user_id: UserId, data: JSONBody[CodeCheck], users: Users, caller: Acting
) -> ConfirmRead:
    """Approved: from now on, signing in needs the app's code too."""
    approved = await users.confirm_authenticator(caller, user_id, data.code)
    return ConfirmRead("approved" if approved else "pending")


@post(
    "/{user_id:int}/sign-in",
    summary="Send a sign-in code to the user's verified phone or email",
    status_code=201,
)
async def start_sign_in(
    user_id: UserId, data: JSONBody[VerificationStart], users: Users, client_ip: ClientIp
) -> VerificationStarted:
    """No token needed: this is how a user without one gets one. Counted against the
    user's verifications of the day."""
    started = await users.start_sign_in(user_id, data.channel, client_ip=client_ip)
    return VerificationStarted(
        started.id, started.status, started.channel, started.to, started.check_attempts_left
    )


@post(
    "/{user_id:int}/sign-in/check",
    summary="Check the sign-in code (and the authenticator app's): a new token",
    status_code=200,
)
async def check_sign_in(
    user_id: UserId, data: JSONBody[SignInCheck], users: Users, client_ip: ClientIp
) -> Response[SignInRead]:
    """A user with an authenticator app gives its code too (401 `second_factor_required`
    without it or with a wrong one)."""
    result, token = await users.check_sign_in(
        user_id, data.code, data.totp_code, client_ip=client_ip
    )
    body = SignInRead(result.status, result.check_attempts_left, token)
    return Response(body, headers=NO_STORE)


def router(service: UsersService, *, proxy_hops: int) -> Router:
    """The users routes wired to `service`; `proxy_hops` trusted proxies stand in front."""

    async def provide() -> UsersService:
        return service

    async def provide_caller(request: Request[Any, Any, Any]) -> Caller:
        return await service.authenticate(request.headers.get("authorization"))

    async def provide_client_ip(request: Request[Any, Any, Any]) -> str | None:
        return end_user_ip(request, proxy_hops)

    return Router(
        path="/api/users",
        route_handlers=[
            list_users,
            read_user,
            read_me,
            create_user,
            update_user,
            delete_user,
            rotate_token,
            start_verification,
            check_verification,
            add_authenticator,
            confirm_authenticator,
            start_sign_in,
            check_sign_in,
        ],
        dependencies={
            "users": Provide(provide),
            "caller": Provide(provide_caller),
            "client_ip": Provide(provide_client_ip),
        },
        tags=["users"],
    )
