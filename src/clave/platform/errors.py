"""Typed errors with an HTTP status and a stable machine code, and the one renderer per app."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = logging.getLogger("clave.errors")


class ClaveError(Exception):
    """Base of every domain error: `status` and `code` are part of the public API.

    `public`, when set, is the message a client sees instead of `message`: errors that wrap a
    driver's failure say what failed, never how (the driver's text goes to the log only).
    """

    status: int = HTTP_500_INTERNAL_SERVER_ERROR
    code: str = "internal_error"
    public: str | None = None

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class StoreError(ClaveError):
    """A storage backend failed; the driver's exception is chained as the cause."""

    status = 503
    code = "storage_unavailable"
    public = "the database did not answer; try again shortly"


class UnsupportedMediaType(ClaveError):
    """A JSON route got a body that is not declared as JSON."""

    status = 415
    code = "unsupported_media_type"


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def _validation_message(exc: ValidationException) -> str:
    """Turn Litestar's validation detail into one readable sentence."""
    extra = exc.extra
    if isinstance(extra, list) and extra:
        parts = []
        for item in extra:
            if isinstance(item, dict):
                key = item.get("key")
                message = item.get("message", "")
                parts.append(f"{key}: {message}" if key else str(message))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(exc.detail) or "the request is not valid"


def classify(exc: Exception) -> tuple[int, str, str, dict[str, str]]:
    """Map any exception to (status, code, message, headers) without leaking internals."""
    if isinstance(exc, ClaveError):
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message, exc_info=exc.__cause__ or exc)
        return exc.status, exc.code, exc.public or exc.message, exc.headers
    if isinstance(exc, ValidationException):
        return 400, "invalid_request", _validation_message(exc), {}
    if isinstance(exc, NotFoundException):
        return 404, "not_found", "no such resource", {}
    if isinstance(exc, MethodNotAllowedException):
        headers = {}
        for name, value in (exc.headers or {}).items():
            if name.lower() == "allow":  # OPTIONS is not offered (platform/lean.py)
                value = ", ".join(m.strip() for m in value.split(",") if m.strip() != "OPTIONS")
            headers[name] = value
        return 405, "method_not_allowed", "method not allowed on this path", headers
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        code = _HTTP_CODES.get(exc.status_code, "invalid_request")
        return exc.status_code, code, str(exc.detail), dict(exc.headers or {})
    log.exception("unhandled error", exc_info=exc)
    return 500, "internal_error", "internal error", {}


def native_error(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of `exc` in the native API's one error shape,
    `{"error": {"code", "message"}}`."""
    status, code, message, headers = classify(exc)
    return status, {"error": {"code": code, "message": message}}, headers


def native_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render `exc` as `native_error`."""
    status, body, headers = native_error(exc)
    return Response(body, status_code=status, headers=headers, media_type=MediaType.JSON)


def message_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render `{"message": "..."}`, the shape of the original Express service's errors."""
    status, _code, message, headers = classify(exc)
    # The original service answered every failure as 400; keep that except where the status
    # carries meaning a client must act on (authentication, the body's type, back-off,
    # server-side failure).
    if status not in (401, 415, 429) and status < 500:
        status = 400
    return Response(
        {"message": message}, status_code=status, headers=headers, media_type=MediaType.JSON
    )


ExceptionHandler = Callable[[Request[Any, Any, Any], Exception], Response[Any]]


def handlers(renderer: ExceptionHandler) -> dict[type[Exception] | int, ExceptionHandler]:
    """The exception-handler mapping that sends every error through `renderer`."""
    return {Exception: renderer, HTTPException: renderer}
