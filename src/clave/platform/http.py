"""Rules every JSON route follows, whatever its domain."""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from clave.platform.errors import UnsupportedMediaType


def is_json_media_type(content_type: str) -> bool:
    """`application/json` or `application/<anything>+json`, parameters (charset) ignored."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def json_bodies_only(app: ASGIApp) -> ASGIApp:
    """Middleware: a route that takes a JSON body (a `data` parameter) refuses any other
    Content-Type with 415.

    A browser may send a cross-site form or `text/plain` POST without asking first (no CORS
    preflight); a JSON route that parsed such a body would let any web page act through its
    visitors' browsers. Requiring the JSON media type forces the preflight, which clave never
    grants. (A middleware rather than a guard: Litestar copies the route handler for every
    guard call, which halved the throughput of every route.)
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler: Any = scope.get("route_handler")
        if (
            scope["type"] == ScopeType.HTTP
            and handler is not None
            and "data" in handler.parsed_fn_signature.parameters
        ):
            content_type = next(
                (value for name, value in scope["headers"] if name == b"content-type"), b""
            )
            if not is_json_media_type(content_type.decode("latin-1")):
                raise UnsupportedMediaType(
                    "send the body as JSON, with Content-Type: application/json"
                )
        await app(scope, receive, send)

    return middleware
