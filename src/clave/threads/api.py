"""HTTP layer of threads: the original sample's routes, plus writes."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from clave.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT, next_link, split_page
from clave.threads.models import Thread
from clave.threads.service import ThreadsService

ThreadId = Annotated[int, PathParameter(ge=1, le=2**53)]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)]
After = Annotated[int, QueryParameter(ge=0, le=2**53)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


# The statuses each route answers beyond the rules of platform/openapi_errors.py.
OPENAPI_ERRORS = {
    ("POST", "/api/threads"): (403,),
    ("PATCH", "/api/threads/{thread_id}"): (403,),
    ("DELETE", "/api/threads/{thread_id}"): (403,),
}


class ThreadRead(msgspec.Struct, rename="camel"):
    """A thread, in the original sample's shape."""

    id: int
    title: str
    created_by: int


class ThreadCreate(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """Body of POST /api/threads."""

    title: Title
    created_by: Annotated[int, msgspec.Meta(ge=1, le=2**53)]


class ThreadUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of PATCH /api/threads/{id}."""

    title: Title


def render(thread: Thread) -> ThreadRead:
    """The public form of a thread."""
    return ThreadRead(id=thread.id, title=thread.title, created_by=thread.created_by)


Threads = NamedDependency[ThreadsService]
# The id of the user whose token the request carries (401 before anything else otherwise).
Caller = NamedDependency[int]
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


@get("/", summary="List threads")
async def list_threads(
    request: Request[Any, Any, Any],
    threads: Threads,
    limit: Limit = DEFAULT_LIMIT,
    after: After = 0,
) -> Response[list[ThreadRead]]:
    """Threads by id; `Link` names the next page."""
    page, more = split_page(await threads.list_threads(after=after, limit=limit + 1), limit)
    return Response([render(t) for t in page], headers=next_link(request, more, limit))


@get("/{thread_id:int}", summary="Read a thread")
async def read_thread(thread_id: ThreadId, threads: Threads) -> ThreadRead:
    """One thread."""
    return render(await threads.get_thread(thread_id))


@post("/", summary="Create a thread", security=BEARER)
async def create_thread(
    data: JSONBody[ThreadCreate], threads: Threads, caller: Caller
) -> Response[ThreadRead]:
    """A new thread; `createdBy` must be the token's user."""
    thread = await threads.create_thread(caller, title=data.title, created_by=data.created_by)
    return Response(render(thread), status_code=201)


@patch("/{thread_id:int}", summary="Retitle a thread", security=BEARER)
async def update_thread(
    thread_id: ThreadId, data: JSONBody[ThreadUpdate], threads: Threads, caller: Caller
) -> ThreadRead:
    """Change the title (the creator's token)."""
    return render(await threads.retitle(caller, thread_id, data.title))


@delete("/{thread_id:int}", summary="Delete a thread", status_code=204, security=BEARER)
async def delete_thread(thread_id: ThreadId, threads: Threads, caller: Caller) -> None:
    """Delete a thread (the creator's token)."""
    await threads.delete_thread(caller, thread_id)


def router(service: ThreadsService) -> Router:
    """The threads routes wired to `service`."""

    async def provide() -> ThreadsService:
        return service

    async def provide_caller(request: Request[Any, Any, Any]) -> int:
        return await service.caller(request.headers.get("authorization"))

    return Router(
        path="/api/threads",
        route_handlers=[list_threads, read_thread, create_thread, update_thread, delete_thread],
        dependencies={"threads": Provide(provide), "caller": Provide(provide_caller)},
        tags=["threads"],
    )
