"""What the app factory needs from a domain: its routes and its lifecycle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from litestar.types import ControllerRouterHandler


class Domain(Protocol):
    """One business domain mounted into an app (all of them: the monolith; one: a service).

    A domain may also have `error_renderers`, a mapping of path prefix to exception handler,
    for paths whose errors it renders in a shape of its own (even a path that matched nothing).
    """

    name: str

    def route_handlers(self) -> Sequence[ControllerRouterHandler]:
        """The routers and handlers this domain serves."""
        ...

    async def start(self) -> None:
        """Open connections and start background work, inside a worker process."""
        ...

    async def stop(self) -> None:
        """Stop background work and close connections."""
        ...

    async def ready(self) -> None:
        """Raise if the domain cannot serve (its store is unreachable)."""
        ...
