"""What the app factory needs from a domain: its routes, its error shapes and its lifecycle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from litestar.types import ControllerRouterHandler

from clave.platform.errors import ExceptionHandler
from clave.platform.lean import LeanRoute
from clave.platform.openapi_errors import ErrorTable, FormTable


class Domain(Protocol):
    """One business domain mounted into an app (all of them: the monolith; one: a service)."""

    name: str

    def route_handlers(self) -> Sequence[ControllerRouterHandler]:
        """The routers and handlers this domain serves."""
        ...

    def lean_routes(self) -> Sequence[LeanRoute]:
        """The hot routes this domain also answers without the framework (platform/lean.py);
        each is among `route_handlers` too, which document it."""
        ...

    @property
    def openapi_errors(self) -> ErrorTable:
        """(method, path) -> the error statuses a route answers beyond the rules of
        platform/openapi_errors.py (403, 409, 422, 429 ...), for /openapi.json."""
        ...

    @property
    def openapi_forms(self) -> FormTable:
        """(method, path) -> the form body of a route that reads one itself (Twilio's)."""
        ...

    @property
    def error_renderers(self) -> Mapping[str, ExceptionHandler]:
        """Path prefix -> exception handler, for the paths whose errors this domain renders in a
        shape of its own (even a path that matched nothing); empty for most domains."""
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
