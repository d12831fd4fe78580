"""Use cases of the users domain."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from clave.platform import contacts
from clave.platform.sql import IntegrityViolation
from clave.users.errors import (
    ContactMissing,
    InvalidUser,
    NoPendingVerification,
    UsernameTaken,
    UserNotFound,
)
from clave.users.models import Contact, NewUser, User
from clave.users.store.base import UserStore
from clave.verify.client import RemoteVerification, VerifyClient

log = logging.getLogger("clave.users")

_USERNAME = re.compile(r"[a-z0-9_]{2,32}")
_PHONE_CHANNELS = ("sms", "whatsapp", "call")


def _username(value: str) -> str:
    if not _USERNAME.fullmatch(value):
        raise InvalidUser("username must be 2-32 of a-z, 0-9 and _")
    return value


def _contact(kind: Contact, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        if kind is Contact.PHONE:
            return contacts.normalize_phone(value)
        return contacts.normalize_email(value)
    except ValueError as exc:
        raise InvalidUser(f"{kind}: {exc}") from None


class UsersService:
    """Users, and proving their contacts through the verify service."""

    def __init__(self, store: UserStore, verify: VerifyClient, clock: Callable[[], float]) -> None:
        self._store = store
        self._verify = verify
        self._clock = clock

    async def list_users(self, *, after: int, limit: int) -> list[User]:
        """A page of users (fetch `limit + 1` to know if there is more)."""
        return await self._store.list(after=after, limit=limit)

    async def get_user(self, user_id: int) -> User:
        """A user, or UserNotFound."""
        user = await self._store.get(user_id)
        if user is None:
            raise UserNotFound(f"no user with id {user_id}")
        return user

    async def create_user(
        self,
        *,
        username: str,
        name: str,
        bio: str = "",
        email: str | None = None,
        phone: str | None = None,
    ) -> User:
        """A new user; the username must be free."""
        new = NewUser(
            username=_username(username),
            name=name,
            bio=bio,
            email=_contact(Contact.EMAIL, email),
            phone=_contact(Contact.PHONE, phone),
        )
        try:
            return await self._store.create(new, now=self._clock())
        except IntegrityViolation:
            raise UsernameTaken(f"username {username!r} is taken") from None

    async def update_user(self, user_id: int, changes: dict[str, Any]) -> User:
        """Change a user's fields; a changed phone or email is no longer verified."""
        current = await self.get_user(user_id)
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "username":
                values[key] = _username(value)
            elif key in ("email", "phone"):
                kind = Contact(key)
                normalized = _contact(kind, value)
                if normalized != getattr(current, key):
                    values[key] = normalized
                    values[f"{key}_verified"] = False
                    if current.pending_contact is kind:
                        values["pending_verification"] = None
                        values["pending_contact"] = None
            else:
                values[key] = value
        try:
            updated = await self._store.update(user_id, values, now=self._clock())
        except IntegrityViolation:
            raise UsernameTaken(f"username {changes.get('username')!r} is taken") from None
        if updated is None:
            raise UserNotFound(f"no user with id {user_id}")
        return updated

    async def delete_user(self, user_id: int) -> None:
        """Delete a user (their posts and threads stay, naming a user who left)."""
        if not await self._store.delete(user_id):
            raise UserNotFound(f"no user with id {user_id}")

    async def start_verification(self, user_id: int, channel: str) -> RemoteVerification:
        """Send a code to the user's phone (sms, whatsapp, call) or email."""
        user = await self.get_user(user_id)
        kind = Contact.PHONE if channel in _PHONE_CHANNELS else Contact.EMAIL
        destination = user.phone if kind is Contact.PHONE else user.email
        if destination is None:
            raise ContactMissing(f"user {user_id} has no {kind} to verify")
        started = await self._verify.start(to=destination, channel=channel)
        await self._store.update(
            user_id,
            {"pending_verification": started.id, "pending_contact": kind},
            now=self._clock(),
        )
        log.info("user=%s verification=%s channel=%s", user_id, started.id, channel)
        return started

    async def check_verification(self, user_id: int, code: str) -> tuple[User, RemoteVerification]:
        """Check a code; when approved, the contact is marked verified."""
        user = await self.get_user(user_id)
        if user.pending_verification is None or user.pending_contact is None:
            raise NoPendingVerification(f"user {user_id} has no verification to check")
        result = await self._verify.check(verification_id=user.pending_verification, code=code)
        if result.status == "approved":
            field = f"{user.pending_contact}_verified"
            updated = await self._store.update(
                user_id,
                {field: True, "pending_verification": None, "pending_contact": None},
                now=self._clock(),
            )
            return (updated or user), result
        return user, result
