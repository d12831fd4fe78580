"""In-memory posts store for unit tests and development."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from clave.posts.models import Post


class MemoryPostStore:
    """Posts in a dict; each method is atomic (no awaits inside)."""

    def __init__(self) -> None:
        self._posts: dict[int, Post] = {}
        self._next = 1
        self._seeded = False

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    async def ping(self) -> None:
        """Always answers."""

    async def list(
        self, *, after: int, limit: int, thread: int | None = None, user: int | None = None
    ) -> list[Post]:
        """Posts after an id, filtered."""
        found = [
            self._posts[k]
            for k in sorted(self._posts)
            if k > after
            and (thread is None or self._posts[k].thread == thread)
            and (user is None or self._posts[k].user == user)
        ]
        return found[:limit]

    async def get(self, post_id: int) -> Post | None:
        """A post by id."""
        return self._posts.get(post_id)

    async def create(
        self, *, thread: int, text: str, user: int, now: float, post_id: int | None = None
    ) -> Post:
        """Insert a post."""
        pid = post_id or self._next
        self._next = max(self._next, pid + 1)
        post = Post(pid, thread, text, user, now, now)
        self._posts[pid] = post
        return post

    async def update(self, post_id: int, *, text: str, now: float) -> Post | None:
        """Edit the text."""
        current = self._posts.get(post_id)
        if current is None:
            return None
        self._posts[post_id] = replace(current, text=text, updated_at=now)
        return self._posts[post_id]

    async def delete(self, post_id: int) -> bool:
        """Delete a post."""
        return self._posts.pop(post_id, None) is not None

    async def seed(self, posts: Sequence[tuple[int, int, str, int]], *, now: float) -> bool:
        """Insert the sample posts once."""
        if self._seeded:
            return False
        for pid, thread, text, user in posts:
            await self.create(thread=thread, text=text, user=user, now=now, post_id=pid)
        self._seeded = True
        return True
