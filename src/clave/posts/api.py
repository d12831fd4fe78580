"""HTTP layer of posts: the original sample's routes, plus writes."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from clave.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT, next_link, split_page
from clave.posts.models import Post
from clave.posts.service import PostsService

Id = Annotated[int, PathParameter(ge=1, le=2**53)]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)]
After = Annotated[int, QueryParameter(ge=0, le=2**53)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
Ref = Annotated[int, msgspec.Meta(ge=1, le=2**53)]


# The statuses each route answers beyond the rules of platform/openapi_errors.py.
OPENAPI_ERRORS = {
    ("POST", "/api/posts"): (403, 422),
    ("PATCH", "/api/posts/{post_id}"): (403,),
    ("DELETE", "/api/posts/{post_id}"): (403,),
}


class PostRead(msgspec.Struct):
    """A post, in the original sample's shape plus its id."""

    id: int
    thread: int
    text: str
    user: int


class PostCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /api/posts."""

    thread: Ref
    text: Text
    user: Ref


class PostUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of PATCH /api/posts/{id}."""

    text: Text


def render(post: Post) -> PostRead:
    """The public form of a post."""
    return PostRead(id=post.id, thread=post.thread, text=post.text, user=post.user)


Posts = NamedDependency[PostsService]
# The id of the user whose token the request carries (401 before anything else otherwise).
Caller = NamedDependency[int]
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


async def _page(
    request: Request[Any, Any, Any], posts: PostsService, limit: int, after: int, **where: int
) -> Response[list[PostRead]]:
    page, more = split_page(await posts.list_posts(after=after, limit=limit + 1, **where), limit)
    return Response([render(p) for p in page], headers=next_link(request, more, limit))


@get("/", summary="List posts")
async def list_posts(
    request: Request[Any, Any, Any], posts: Posts, limit: Limit = DEFAULT_LIMIT, after: After = 0
) -> Response[list[PostRead]]:
    """All posts by id."""
    return await _page(request, posts, limit, after)


@get("/in-thread/{thread_id:int}", summary="Posts in a thread")
async def posts_in_thread(
    request: Request[Any, Any, Any],
    thread_id: Id,
    posts: Posts,
    limit: Limit = DEFAULT_LIMIT,
    after: After = 0,
) -> Response[list[PostRead]]:
    """Posts of one thread (an empty list for a thread without posts)."""
    return await _page(request, posts, limit, after, thread=thread_id)


@get("/by-user/{user_id:int}", summary="Posts by a user")
async def posts_by_user(
    request: Request[Any, Any, Any],
    user_id: Id,
    posts: Posts,
    limit: Limit = DEFAULT_LIMIT,
    after: After = 0,
) -> Response[list[PostRead]]:
    """Posts of one user."""
    return await _page(request, posts, limit, after, user=user_id)


@get("/{post_id:int}", summary="Read a post")
async def read_post(post_id: Id, posts: Posts) -> PostRead:
    """One post."""
    return render(await posts.get_post(post_id))


@post("/", summary="Create a post", security=BEARER)
async def create_post(
    data: JSONBody[PostCreate], posts: Posts, caller: Caller
) -> Response[PostRead]:
    """A new post in an existing thread; `user` must be the token's user."""
    created = await posts.create_post(caller, thread=data.thread, text=data.text, user=data.user)
    return Response(render(created), status_code=201)


@patch("/{post_id:int}", summary="Edit a post", security=BEARER)
async def update_post(
    post_id: Id, data: JSONBody[PostUpdate], posts: Posts, caller: Caller
) -> PostRead:
    """Change the text (the author's token)."""
    return render(await posts.edit(caller, post_id, data.text))


@delete("/{post_id:int}", summary="Delete a post", status_code=204, security=BEARER)
async def delete_post(post_id: Id, posts: Posts, caller: Caller) -> None:
    """Delete a post (the author's token)."""
    await posts.delete_post(caller, post_id)


def router(service: PostsService) -> Router:
    """The posts routes wired to `service`."""

    async def provide() -> PostsService:
        return service

    async def provide_caller(request: Request[Any, Any, Any]) -> int:
        return await service.caller(request.headers.get("authorization"))

    return Router(
        path="/api/posts",
        route_handlers=[
            list_posts,
            posts_in_thread,
            posts_by_user,
            read_post,
            create_post,
            update_post,
            delete_post,
        ],
        dependencies={"posts": Provide(provide), "caller": Provide(provide_caller)},
        tags=["posts"],
    )
