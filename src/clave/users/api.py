"""HTTP layer of users: the original sample's routes, plus writes and contact verification."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from clave.platform.contacts import mask
from clave.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT, next_link, split_page
from clave.users.models import User
from clave.users.service import UsersService

UserId = Annotated[int, PathParameter(ge=1, le=2**53)]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)]
After = Annotated[int, QueryParameter(ge=0, le=2**53)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Bio = Annotated[str, msgspec.Meta(max_length=1000)]
ContactText = Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
Channel = Annotated[str, msgspec.Meta(pattern="^(sms|whatsapp|call|email)$")]


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


@get("/", summary="List users")
async def list_users(
    request: Request[Any, Any, Any], users: Users, limit: Limit = DEFAULT_LIMIT, after: After = 0
) -> Response[list[UserRead]]:
    """Users by id; `Link` names the next page."""
    page, more = split_page(await users.list_users(after=after, limit=limit + 1), limit)
    return Response([render(u) for u in page], headers=next_link(request, more, limit))


@get("/{user_id:int}", summary="Read a user")
async def read_user(user_id: UserId, users: Users) -> UserRead:
    """One user."""
    return render(await users.get_user(user_id))


@post("/", summary="Create a user")
async def create_user(data: JSONBody[UserCreate], users: Users) -> Response[UserRead]:
    """A new user."""
    user = await users.create_user(
        username=data.username, name=data.name, bio=data.bio, email=data.email, phone=data.phone
    )
    return Response(render(user), status_code=201)


@patch("/{user_id:int}", summary="Update a user")
async def update_user(user_id: UserId, data: JSONBody[UserUpdate], users: Users) -> UserRead:
    """Change the given fields."""
    changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
    return render(await users.update_user(user_id, changes))


@delete("/{user_id:int}", summary="Delete a user", status_code=204)
async def delete_user(user_id: UserId, users: Users) -> None:
    """Delete a user."""
    await users.delete_user(user_id)


@post("/{user_id:int}/verification", summary="Send a code to the user's phone or email")
async def start_verification(
    user_id: UserId, data: JSONBody[VerificationStart], users: Users
) -> Response[VerificationRead]:
    """Start proving the user's phone (sms, whatsapp, call) or email."""
    started = await users.start_verification(user_id, data.channel)
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


@post("/{user_id:int}/verification/check", summary="Check the code", status_code=200)
async def check_verification(
    user_id: UserId, data: JSONBody[VerificationCheck], users: Users
) -> VerificationRead:
    """Approved: the contact is marked verified."""
    user, result = await users.check_verification(user_id, data.code)
    return VerificationRead(
        render(user),
        result.id,
        result.status,
        result.channel,
        result.to,
        result.check_attempts_left,
    )


def router(service: UsersService) -> Router:
    """The users routes wired to `service`."""

    async def provide() -> UsersService:
        return service

    return Router(
        path="/api/users",
        route_handlers=[
            list_users,
            read_user,
            create_user,
            update_user,
            delete_user,
            start_verification,
            check_verification,
        ],
        dependencies={"users": Provide(provide)},
        tags=["users"],
    )
