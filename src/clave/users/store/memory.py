"""In-memory users store for unit tests and development."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from clave.platform.sql import IntegrityViolation
from clave.users.models import Contact, NewUser, StartCount, User
from clave.users.store.base import SIGN_INS, STARTS, UPDATABLE


class MemoryUserStore:
    """Users in a dict; each method is atomic (no awaits inside)."""

    def __init__(self) -> None:
        self._users: dict[int, User] = {}
        self._tokens: dict[int, bytes] = {}  # user id -> token hash
        # (user id, counter) -> (window start, count)
        self._starts: dict[tuple[int, str], tuple[float, int]] = {}
        self._next = 1
        self._seeded = False

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    async def ping(self) -> None:
        """Always answers."""

    async def list(self, *, after: int, limit: int) -> list[User]:
        """Users after an id."""
        return [self._users[k] for k in sorted(self._users) if k > after][:limit]

    async def get(self, user_id: int) -> User | None:
        """A user by id."""
        return self._users.get(user_id)

    def _taken(self, username: str, but: int | None = None) -> bool:
        return any(u.username == username and u.id != but for u in self._users.values())

    async def create(
        self,
        new: NewUser,
        *,
        now: float,
        token_hash: bytes | None = None,
        user_id: int | None = None,
    ) -> User:
        """Insert a user."""
        if self._taken(new.username):
            raise IntegrityViolation("username taken")
        if token_hash is not None and token_hash in self._tokens.values():
            raise IntegrityViolation("token hash taken")
        uid = user_id or self._next
        self._next = max(self._next, uid + 1)
        user = User(
            uid,
            new.username,
            new.name,
            new.bio,
            new.email,
            new.phone,
            False,
            False,
            None,
            None,
            now,
            now,
        )
        self._users[uid] = user
        if token_hash is not None:
            self._tokens[uid] = token_hash
        return user

    async def by_token(self, token_hash: bytes) -> User | None:
        """The user whose token has this hash."""
        for uid, stored in self._tokens.items():
            if stored == token_hash:
                return self._users[uid]
        return None

    async def set_token(
        self, user_id: int, token_hash: bytes, *, current: bytes | None = None
    ) -> bool:
        """Replace the user's token hash."""
        if user_id not in self._users:
            return False
        if current is not None and self._tokens.get(user_id) != current:
            return False
        if any(h == token_hash and u != user_id for u, h in self._tokens.items()):
            raise IntegrityViolation("token hash taken")
        self._tokens[user_id] = token_hash
        return True

    async def count_start(
        self, user_id: int, *, now: float, limit: int, window: float, counter: str = STARTS
    ) -> StartCount | None:
        """Count a start unless the window's are used up."""
        if user_id not in self._users:
            return None
        since, count = self._starts.get((user_id, counter), (0.0, 0))
        if since <= now - window:  # the window is over (or never began): a new one
            since, count = now, 0
        if count >= limit:
            return StartCount(counted=False, since=since)
        self._starts[(user_id, counter)] = (since, count + 1)
        return StartCount(counted=True, since=since)

    async def uncount_start(self, user_id: int, *, since: float, counter: str = STARTS) -> None:
        """Give one start back to the window that began at `since`."""
        current = self._starts.get((user_id, counter))
        if current is not None and current[0] == since and current[1] > 0:
            self._starts[(user_id, counter)] = (since, current[1] - 1)

    async def update(self, user_id: int, changes: Mapping[str, Any], *, now: float) -> User | None:
        """Change columns."""
        current = self._users.get(user_id)
        if current is None:
            return None
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if "username" in changes and self._taken(changes["username"], but=user_id):
            raise IntegrityViolation("username taken")
        values = dict(changes)
        if values.get("pending_contact") is not None:
            values["pending_contact"] = Contact(values["pending_contact"])
        updated = replace(current, **values, updated_at=now)
        self._users[user_id] = updated
        return updated

    async def delete(self, user_id: int) -> bool:
        """Delete a user."""
        self._tokens.pop(user_id, None)
        for counter in (STARTS, SIGN_INS):
            self._starts.pop((user_id, counter), None)
        return self._users.pop(user_id, None) is not None

    async def seed(self, users: Sequence[tuple[int, NewUser]], *, now: float) -> bool:
        """Insert the sample users once."""
        if self._seeded:
            return False
        for uid, new in users:
            await self.create(new, now=now, user_id=uid)
        self._seeded = True
        return True
