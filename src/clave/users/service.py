"""Use cases of the users domain."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import Any

from clave.platform import contacts
from clave.platform.client import RemoteError
from clave.platform.sql import IntegrityViolation
from clave.platform.text import is_plain_text, is_single_line
from clave.users.errors import (
    ContactMissing,
    Forbidden,
    InvalidUser,
    NoAuthenticatorToConfirm,
    NoPendingVerification,
    SecondFactorRequired,
    TooManyAuthenticators,
    TooManyVerifications,
    Unauthorized,
    UsernameTaken,
    UserNotFound,
)
from clave.users.models import Caller, Contact, NewUser, User
from clave.users.store.base import SIGN_INS, STARTS, UserStore
from clave.users.tokens import bearer_token, hash_token, issue_token, new_token
from clave.verify.client import RemoteVerification, VerifyClient

log = logging.getLogger("clave.users")

_USERNAME = re.compile(r"[a-z0-9_]{2,32}")
_PHONE_CHANNELS = ("sms", "whatsapp", "call")
DAY = 86400.0


def _username(value: str) -> str:
    if not _USERNAME.fullmatch(value):
        raise InvalidUser("username must be 2-32 of a-z, 0-9 and _")
    return value


def _name(value: str) -> str:
    # A name goes into pages and logs on one line; a line break or a bidi override in it
    # could forge what is shown around it.
    if not is_single_line(value):
        raise InvalidUser("name must be one line of printable characters")
    return value


def _bio(value: str) -> str:
    if not is_plain_text(value):
        raise InvalidUser("bio must be printable text (line breaks and tabs allowed)")
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


# Authenticator apps a user may have waiting for their first code.
MAX_UNCONFIRMED_APPS = 3


def _contact_of(user: User, kind: Contact) -> str | None:
    """The user's phone or email."""
    return user.phone if kind is Contact.PHONE else user.email


class UsersService:
    """Users, their tokens, and proving their contacts through the verify service."""

    def __init__(
        self,
        store: UserStore,
        verify: VerifyClient,
        clock: Callable[[], float],
        *,
        verifications_per_day: int,
    ) -> None:
        self._store = store
        self._verify = verify
        self._clock = clock
        self._verifications_per_day = verifications_per_day

    async def list_users(self, *, after: int, limit: int) -> list[User]:
        """A page of users (fetch `limit + 1` to know if there is more)."""
        return await self._store.list(after=after, limit=limit)

    async def get_user(self, user_id: int) -> User:
        """A user, or UserNotFound."""
        user = await self._store.get(user_id)
        if user is None:
            raise UserNotFound(f"no user with id {user_id}")
        return user

    async def authenticate(self, authorization: str | None) -> Caller:
        """The user whose token `Authorization: Bearer <token>` carries; Unauthorized when it
        is missing, malformed, unknown or revoked."""
        token_hash = hash_token(bearer_token(authorization))
        user = await self._store.by_token(token_hash)
        if user is None:
            raise Unauthorized("the token is not valid")
        return Caller(user, token_hash)

    @staticmethod
    def _own(caller: Caller, user_id: int) -> User:
        """The caller's user when it is `user_id`; Forbidden otherwise (whether or not that
        user exists: a token grants nothing over others)."""
        if caller.user.id != user_id:
            raise Forbidden(f"this token is not user {user_id}'s")
        return caller.user

    async def sign_up(
        self,
        *,
        username: str,
        name: str,
        bio: str = "",
        email: str | None = None,
        phone: str | None = None,
    ) -> tuple[User, str]:
        """A new user and its token (only the token's hash is kept: show it once)."""
        new = NewUser(
            username=_username(username),
            name=_name(name),
            bio=_bio(bio),
            email=_contact(Contact.EMAIL, email),
            phone=_contact(Contact.PHONE, phone),
        )
        token = new_token()
        try:
            user = await self._store.create(new, now=self._clock(), token_hash=hash_token(token))
        except IntegrityViolation:
            raise UsernameTaken(f"username {username!r} is taken") from None
        return user, token

    async def rotate_token(self, caller: Caller, user_id: int) -> str:
        """A new token for the caller's own user; the one it presented stops working at once."""
        self._own(caller, user_id)
        token = await issue_token(self._store, user_id, current=caller.token_hash)
        if token is None:  # deleted, or rotated by a concurrent request since authenticating
            raise Unauthorized("the token is not valid")
        log.info("user=%s token rotated", user_id)
        return token

    async def update_user(self, caller: Caller, user_id: int, changes: dict[str, Any]) -> User:
        """Change a user's fields; a changed phone or email is no longer verified."""
        current = self._own(caller, user_id)
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "username":
                values[key] = _username(value)
            elif key == "name":
                values[key] = _name(value)
            elif key == "bio":
                values[key] = _bio(value)
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
                raise InvalidUser(f"{key} cannot be changed")
        try:
            updated = await self._store.update(user_id, values, now=self._clock())
        except IntegrityViolation:
            raise UsernameTaken(f"username {changes.get('username')!r} is taken") from None
        if updated is None:
            raise UserNotFound(f"no user with id {user_id}")
        return updated

    async def delete_user(self, caller: Caller, user_id: int) -> None:
        """Delete a user, and with it its token and authenticator apps (their posts and
        threads stay, naming a user who left)."""
        self._own(caller, user_id)
        # Its authenticator apps first: a user gone never leaves a second factor behind (if
        # verify does not answer, nothing is deleted and the caller may try again).
        for factor in await self._verify.factors(entity=self._entity(user_id)):
            await self._verify.delete_factor(factor_id=factor.id)
        if not await self._store.delete(user_id):
            raise UserNotFound(f"no user with id {user_id}")

    async def start_verification(
        self, caller: Caller, user_id: int, channel: str, *, client_ip: str | None
    ) -> RemoteVerification:
        """Send a code to the user's phone (sms, whatsapp, call) or email, at most
        `verifications_per_day` times a day whatever the contact; `client_ip` (the end
        user's) lets verify's per-IP limits count it."""
        user = self._own(caller, user_id)
        kind = Contact.PHONE if channel in _PHONE_CHANNELS else Contact.EMAIL
        destination = user.phone if kind is Contact.PHONE else user.email
        if destination is None:
            raise ContactMissing(f"user {user_id} has no {kind} to verify")
        started = await self._counted_start(user_id, destination, channel, client_ip)
        await self._store.update(
            user_id,
            {
                "pending_verification": started.id,
                "pending_contact": kind,
                "pending_to": destination,
            },
            now=self._clock(),
        )
        log.info("user=%s verification=%s channel=%s", user_id, started.id, channel)
        return started

    async def _counted_start(
        self,
        user_id: int,
        destination: str,
        channel: str,
        client_ip: str | None,
        counter: str = STARTS,
    ) -> RemoteVerification:
        """Send a code through verify, counted against the user's daily verifications (of
        one kind: proving a contact, or signing in)."""
        now = self._clock()
        # Counted before sending, as a check attempt is counted before comparing: concurrent
        # starts cannot all pass a check made before any of them was counted.
        count = await self._store.count_start(
            user_id, now=now, limit=self._verifications_per_day, window=DAY, counter=counter
        )
        if count is None:
            raise UserNotFound(f"no user with id {user_id}")
        if not count.counted:
            retry_after = max(1, math.ceil(count.since + DAY - now))
            raise TooManyVerifications(
                f"at most {self._verifications_per_day} verifications a day; "
                f"try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
        try:
            return await self._verify.start(to=destination, channel=channel, client_ip=client_ip)
        except RemoteError as exc:
            if exc.status < 500:  # verify refused it: nothing was sent, the start is not spent
                await self._store.uncount_start(user_id, since=count.since, counter=counter)
            raise

    async def check_verification(
        self, caller: Caller, user_id: int, code: str, *, client_ip: str | None
    ) -> tuple[User, RemoteVerification]:
        """Check a code; when approved, the contact is marked verified."""
        user = self._own(caller, user_id)
        if user.pending_verification is None or user.pending_contact is None:
            raise NoPendingVerification(f"user {user_id} has no verification to check")
        if _contact_of(user, user.pending_contact) != user.pending_to:
            # The contact changed since the code was sent: the code proves the old one.
            raise NoPendingVerification(f"user {user_id}'s {user.pending_contact} changed")
        result = await self._verify.check(
            verification_id=user.pending_verification, code=code, client_ip=client_ip
        )
        if result.status == "approved":
            field = f"{user.pending_contact}_verified"
            updated = await self._store.update(
                user_id,
                {
                    field: True,
                    "pending_verification": None,
                    "pending_contact": None,
                    "pending_to": None,
                },
                now=self._clock(),
            )
            return (updated or user), result
        return user, result

    # -- authenticator apps and signing in ---------------------------------------------------

    @staticmethod
    def _entity(user_id: int) -> str:
        """The user as verify's factors name it."""
        return f"user-{user_id}"

    async def add_authenticator(
        self, caller: Caller, user_id: int, totp_code: str | None = None
    ) -> dict[str, object]:
        """Enroll an authenticator app for the caller's own user: verify's new factor, with
        its secret and QR codes (shown this once). It counts once confirmed."""
        user = self._own(caller, user_id)
        entity = self._entity(user_id)
        known = await self._verify.factors(entity=entity)
        # A token alone must not add a second app beside the user's own: its code too.
        if any(f.status == "verified" for f in known) and not await self._second_factor(
            entity, totp_code
        ):
            raise SecondFactorRequired("adding another app needs a code of the current one")
        if sum(f.status == "unverified" for f in known) >= MAX_UNCONFIRMED_APPS:
            raise TooManyAuthenticators(
                f"at most {MAX_UNCONFIRMED_APPS} apps waiting for their first code"
            )
        return await self._verify.enroll_factor(entity=entity, friendly_name=user.username)

    async def confirm_authenticator(self, caller: Caller, user_id: int, code: str) -> bool:
        """Confirm the newest authenticator app waiting for its first code."""
        self._own(caller, user_id)
        waiting = [
            f
            for f in await self._verify.factors(entity=self._entity(user_id))
            if f.status == "unverified"
        ]
        if not waiting:
            raise NoAuthenticatorToConfirm(f"user {user_id} has no authenticator to confirm")
        return await self._verify.confirm_factor(factor_id=waiting[-1].id, code=code)

    async def _second_factor(self, entity: str, totp_code: str | None) -> bool:
        """Whether `totp_code` is a fresh code of one of the entity's apps."""
        return totp_code is not None and await self._verify.challenge(entity=entity, code=totp_code)

    async def start_sign_in(
        self, user_id: int, channel: str, *, client_ip: str | None
    ) -> RemoteVerification:
        """Send a sign-in code to the user's verified phone or email (no token needed: this
        is how a user without one gets one), within the user's daily verifications."""
        user = await self.get_user(user_id)
        kind = Contact.PHONE if channel in _PHONE_CHANNELS else Contact.EMAIL
        verified = user.phone_verified if kind is Contact.PHONE else user.email_verified
        destination = user.phone if kind is Contact.PHONE else user.email
        if destination is None or not verified:
            raise ContactMissing(f"user {user_id} has no verified {kind} to sign in with")
        # Its own count: anyone may ask for a sign-in code, and that never spends the
        # owner's contact verifications.
        started = await self._counted_start(user_id, destination, channel, client_ip, SIGN_INS)
        await self._store.update(
            user_id,
            {
                "pending_verification": started.id,
                "pending_contact": kind,
                "pending_to": destination,
            },
            now=self._clock(),
        )
        return started

    async def check_sign_in(
        self, user_id: int, code: str, totp_code: str | None, *, client_ip: str | None
    ) -> tuple[RemoteVerification, str | None]:
        """Check a sign-in code; approved, a new token (the old one stops working). A user
        with an authenticator app gives its code in the same request: it is looked at only
        once the sign-in code is right (so a caller without the phone learns nothing of the
        app and cannot spend its budget); a missing or wrong one then ends this sign-in."""
        user = await self.get_user(user_id)
        pending = user.pending_contact
        # Only a code sent to a contact already proved, and still the user's, signs in (a code
        # proving a new contact, which its token's holder started, does not).
        if (
            user.pending_verification is None
            or pending is None
            or not (user.phone_verified if pending is Contact.PHONE else user.email_verified)
            or _contact_of(user, pending) != user.pending_to
        ):
            raise NoPendingVerification(f"user {user_id} has no sign-in code to check")
        result = await self._verify.check(
            verification_id=user.pending_verification, code=code, client_ip=client_ip
        )
        if result.status != "approved":
            return result, None
        await self._store.update(
            user_id,
            {"pending_verification": None, "pending_contact": None, "pending_to": None},
            now=self._clock(),
        )
        entity = self._entity(user_id)
        known = await self._verify.factors(entity=entity)
        if any(f.status == "verified" for f in known) and not await self._second_factor(
            entity, totp_code
        ):
            raise SecondFactorRequired(
                "this user signs in with an authenticator app's code too: sign in again"
            )
        token = await issue_token(self._store, user_id)
        if token is None:
            raise UserNotFound(f"no user with id {user_id}")
        log.info("user=%s signed in", user_id)
        return result, token
