"""The port every posts storage backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clave.posts.models import Post


class PostStore(Protocol):
    """Posts, by integer id."""

    async def open(self) -> None:
        """Connect; creates the schema when missing."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""
        ...

    async def list(
        self, *, after: int, limit: int, thread: int | None = None, user: int | None = None
    ) -> list[Post]:
        """Posts with id > `after`, by id, optionally of one thread or one user."""
        ...

    async def get(self, post_id: int) -> Post | None:
        """A post by id."""
        ...

    async def create(self, *, thread: int, text: str, user: int, now: float) -> Post:
        """Insert a post."""
        ...

    async def update(self, post_id: int, *, text: str, now: float) -> Post | None:
        """Edit the text; None if no such post."""
        ...

    async def delete(self, post_id: int) -> bool:
        """Delete; False if no such post."""
        ...

    async def seed(self, posts: Sequence[tuple[int, int, str, int]], *, now: float) -> bool:
        """Insert the sample posts once in the life of the store."""
        ...
