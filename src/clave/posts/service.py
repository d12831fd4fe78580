"""Use cases of the posts domain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from clave.posts.errors import PostNotFound, UnknownReference
from clave.posts.models import Post
from clave.posts.store.base import PostStore
from clave.threads.client import ThreadsClient
from clave.users.client import UsersClient


class PostsService:
    """Posts; a new post must name an existing thread and user (asked of their services)."""

    def __init__(
        self,
        store: PostStore,
        users: UsersClient,
        threads: ThreadsClient,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._users = users
        self._threads = threads
        self._clock = clock

    async def list_posts(
        self, *, after: int, limit: int, thread: int | None = None, user: int | None = None
    ) -> list[Post]:
        """A page of posts, optionally of one thread or one user."""
        return await self._store.list(after=after, limit=limit, thread=thread, user=user)

    async def get_post(self, post_id: int) -> Post:
        """A post, or PostNotFound."""
        post = await self._store.get(post_id)
        if post is None:
            raise PostNotFound(f"no post with id {post_id}")
        return post

    async def create_post(self, *, thread: int, text: str, user: int) -> Post:
        """A new post; DependencyUnavailable (503) when users or threads does not answer."""
        user_ok, thread_ok = await asyncio.gather(
            self._users.exists(user), self._threads.exists(thread)
        )
        missing = [f"user {user}"] * (not user_ok) + [f"thread {thread}"] * (not thread_ok)
        if missing:
            raise UnknownReference(f"no such {' and '.join(missing)}")
        return await self._store.create(thread=thread, text=text, user=user, now=self._clock())

    async def edit(self, post_id: int, text: str) -> Post:
        """Change a post's text."""
        post = await self._store.update(post_id, text=text, now=self._clock())
        if post is None:
            raise PostNotFound(f"no post with id {post_id}")
        return post

    async def delete_post(self, post_id: int) -> None:
        """Delete a post."""
        if not await self._store.delete(post_id):
            raise PostNotFound(f"no post with id {post_id}")
