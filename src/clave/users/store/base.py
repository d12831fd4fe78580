"""The port every users storage backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from clave.users.models import NewUser, StartCount, User

# The user's counters of verification starts: proving a contact (with the user's token), and
# signing in (anyone may ask for a sign-in code: its own count, so that never spends the
# owner's contact verifications).
STARTS, SIGN_INS = "starts", "sign_ins"

# Columns `update` may change.
UPDATABLE = frozenset(
    {
        "username",
        "name",
        "bio",
        "email",
        "phone",
        "email_verified",
        "phone_verified",
        "pending_verification",
        "pending_contact",
        "pending_to",
    }
)


class TokenStore(Protocol):
    """Users' tokens, by hash (what issuing a token needs)."""

    async def set_token(
        self, user_id: int, token_hash: bytes, *, current: bytes | None = None
    ) -> bool:
        """Replace the user's token hash (with `current`, only while it is still that);
        False when no user matched."""
        ...


class UserStore(TokenStore, Protocol):
    """Users, by integer id."""

    async def open(self) -> None:
        """Connect; creates the schema when missing."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""
        ...

    async def list(self, *, after: int, limit: int) -> list[User]:
        """Users with id > `after`, by id, at most `limit`."""
        ...

    async def get(self, user_id: int) -> User | None:
        """A user by id."""
        ...

    async def create(self, new: NewUser, *, now: float, token_hash: bytes | None = None) -> User:
        """Insert, with the hash of its first token; IntegrityViolation when the username is
        taken."""
        ...

    async def by_token(self, token_hash: bytes) -> User | None:
        """The user whose token has this hash."""
        ...

    async def count_start(
        self, user_id: int, *, now: float, limit: int, window: float, counter: str = STARTS
    ) -> StartCount | None:
        """Count one verification start of the user on `counter` (STARTS: proving a contact;
        SIGN_INS: signing in), atomically, unless `limit` starts were counted in its current
        window (which begins at the first start after the previous window ended, and lasts
        `window` seconds). None if no such user."""
        ...

    async def uncount_start(self, user_id: int, *, since: float, counter: str = STARTS) -> None:
        """Give back one start counted in the window that began at `since` (the start was
        refused before anything was sent); nothing if that window is over."""
        ...

    async def update(self, user_id: int, changes: Mapping[str, Any], *, now: float) -> User | None:
        """Change the given columns (among UPDATABLE); None if no such user."""
        ...

    async def delete(self, user_id: int) -> bool:
        """Delete; False if no such user."""
        ...

    async def seed(self, users: Sequence[tuple[int, NewUser]], *, now: float) -> bool:
        """Insert the sample users once in the life of the store; False if done before."""
        ...
