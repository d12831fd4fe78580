"""Rules every JSON route follows, whatever its domain."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from clave.platform.errors import UnsupportedMediaType


def is_json_media_type(content_type: str) -> bool:
    """`application/json` or `application/<anything>+json`, parameters (charset) ignored."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def json_bodies_only(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """A guard: a route that takes a JSON body (a `data` parameter) refuses any other
    Content-Type with 415.

    A browser may send a cross-site form or `text/plain` POST without asking first (no CORS
    preflight); a JSON route that parsed such a body would let any web page act through its
    visitors' browsers. Requiring the JSON media type forces the preflight, which clave never
    grants.
    """
    if "data" not in handler.parsed_fn_signature.parameters:
        return
    if not is_json_media_type(connection.headers.get("content-type", "")):
        raise UnsupportedMediaType("send the body as JSON, with Content-Type: application/json")
