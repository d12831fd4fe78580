"""The port every users storage backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from clave.users.models import NewUser, User

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
    }
)


class UserStore(Protocol):
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

    async def create(self, new: NewUser, *, now: float) -> User:
        """Insert; IntegrityViolation when the username is taken."""
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
