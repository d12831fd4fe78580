"""Use cases of the posts domain."""

from __future__ import annotations

from collections.abc import Callable

from clave.platform.text import is_plain_text
from clave.posts.errors import InvalidPost, NotAuthor, PostNotFound, UnknownReference
from clave.posts.models import Post
from clave.posts.store.base import PostStore
from clave.threads.client import ThreadsClient
from clave.users.client import UsersClient


def _text(value: str) -> str:
    if not is_plain_text(value):
        raise InvalidPost("text must be printable (line breaks and tabs allowed)")
    return value


class PostsService:
    """Posts; a new post must name an existing thread (asked of threads) and be by the user
    acting (asked of users); only its author may change it."""

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

    async def caller(self, authorization: str | None) -> int:
        """The id of the user whose token the request carries (401 otherwise, 503 when users
        does not answer)."""
        return await self._users.caller(authorization)

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

    async def create_post(self, caller: int, *, thread: int, text: str, user: int) -> Post:
        """A new post by the calling user (who exists: users just vouched for its token) in
        an existing thread; DependencyUnavailable (503) when threads does not answer."""
        if user != caller:
            raise NotAuthor(f"user must be the token's user ({caller})")
        text = _text(text)
        if not await self._threads.exists(thread):
            raise UnknownReference(f"no such thread {thread}")
        return await self._store.create(thread=thread, text=text, user=caller, now=self._clock())

    async def _authored_by(self, caller: int, post_id: int) -> Post:
        post = await self.get_post(post_id)
        if post.user != caller:
            raise NotAuthor(f"only post {post_id}'s author may change it")
        return post

    async def edit(self, caller: int, post_id: int, text: str) -> Post:
        """Change a post's text (its author only)."""
        await self._authored_by(caller, post_id)
        post = await self._store.update(post_id, text=_text(text), now=self._clock())
        if post is None:
            raise PostNotFound(f"no post with id {post_id}")
        return post

    async def delete_post(self, caller: int, post_id: int) -> None:
        """Delete a post (its author only)."""
        await self._authored_by(caller, post_id)
        if not await self._store.delete(post_id):
            raise PostNotFound(f"no post with id {post_id}")
