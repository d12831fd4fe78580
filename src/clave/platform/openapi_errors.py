"""The errors /openapi.json documents for each operation, in the shape clave sends them.

Litestar documents a 400 in its own default shape (`status_code`, `detail`) and nothing else.
clave answers `{"error": {"code", "message"}}` (the native API), `{"message"}` (the original
service's routes) or Twilio's `{"code", "message", "more_info", "status"}` (under /v2), and an
operation can answer 401, 404, 413, 415, 429 or 503 as well. `document_errors` rewrites the
generated document once, when the app is built:

- by rule: 400 for an operation with parameters or a body, 413 and 415 for a JSON body, 401
  for a secured one, 404 for one with a path parameter, 503 for any that reads a store;
- by name: the statuses a domain's routes add (`Domain.openapi_errors`: 403, 409, 422, 429...);
- in the shape of the path's API, with `Retry-After` on a 429 and the challenge on a 401.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)

# (method, path template) -> the statuses it may answer besides the ones the rules give.
ErrorTable = Mapping[tuple[str, str], Iterable[int]]
# (method, path template) -> its form body: field -> (schema, required).
FormTable = Mapping[tuple[str, str], Mapping[str, tuple[Schema, bool]]]

_TEXT = Schema(type=OpenAPIType.STRING)
_INT = Schema(type=OpenAPIType.INTEGER)
_SHAPES = {
    "Error": Schema(
        type=OpenAPIType.OBJECT,
        required=["error"],
        properties={
            "error": Schema(
                type=OpenAPIType.OBJECT,
                required=["code", "message"],
                properties={"code": _TEXT, "message": _TEXT},
            )
        },
        description="An error of the native API: a stable machine code and a sentence.",
    ),
    "MessageError": Schema(
        type=OpenAPIType.OBJECT,
        required=["message"],
        properties={"message": _TEXT},
        description="An error of the original service's routes.",
    ),
    "TwilioError": Schema(
        type=OpenAPIType.OBJECT,
        required=["code", "message", "more_info", "status"],
        properties={"code": _INT, "message": _TEXT, "more_info": _TEXT, "status": _INT},
        description="An error of the Twilio-compatible API, with Twilio's code.",
    ),
}
_DESCRIPTIONS = {
    400: "The request is not valid",
    401: "No valid credentials",
    403: "Not allowed for this caller or destination",
    404: "No such resource (for this caller)",
    409: "Conflicts with the current state",
    413: "The body is too large",
    415: "The body is not JSON",
    422: "Understood, but the rules refuse it",
    429: "Too many requests: try again after Retry-After seconds",
    503: "A store did not answer: try again shortly",
}
# Answered without touching a store.
_STORELESS = {"/api", "/healthz", "/openapi.json"}
_METHODS = ("get", "put", "post", "delete", "patch")


def _shape(path: str) -> str:
    if path.startswith("/v2/"):
        return "TwilioError"
    if path.startswith("/api/messages/"):
        return "MessageError"
    return "Error"


def _response(status: int, shape: str) -> OpenAPIResponse:
    headers: dict[str, OpenAPIHeader | Reference] = {}
    if status == 429:
        headers["Retry-After"] = OpenAPIHeader(
            schema=_INT, description="Seconds to wait before trying again"
        )
    if status == 401:
        headers["WWW-Authenticate"] = OpenAPIHeader(schema=_TEXT, description="The challenge")
    schema = Reference(ref=f"#/components/schemas/{shape}")
    return OpenAPIResponse(
        description=_DESCRIPTIONS[status],
        headers=headers or None,
        content={"application/json": OpenAPIMediaType(schema=schema)},
    )


def _form_body(fields: Mapping[str, tuple[Schema, bool]]) -> RequestBody:
    required = sorted(name for name, (_, needed) in fields.items() if needed)
    schema = Schema(
        type=OpenAPIType.OBJECT,
        properties={name: schema for name, (schema, _) in fields.items()},
        required=required or None,
    )
    return RequestBody(
        content={"application/x-www-form-urlencoded": OpenAPIMediaType(schema=schema)},
        required=bool(required),
    )


def _statuses(path: str, operation: Operation, extra: Iterable[int]) -> set[int]:
    statuses = set(extra)
    body = operation.request_body
    if operation.parameters or body is not None:
        statuses.add(400)
    if isinstance(body, RequestBody) and "application/json" in body.content:
        statuses |= {413, 415}
    if operation.security:
        statuses.add(401)
    if "{" in path:
        statuses.add(404)
    if path not in _STORELESS:
        statuses.add(503)
    return statuses


def document_errors(openapi: OpenAPI, errors: ErrorTable, forms: FormTable) -> None:
    """Rewrite `openapi`'s error responses (and the form bodies Litestar cannot see)."""
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas.update(_SHAPES)
    for path, item in (openapi.paths or {}).items():
        for method in _METHODS:
            operation: Operation | None = getattr(item, method)
            if operation is None:
                continue
            key = (method.upper(), path)
            if key in forms:
                operation.request_body = _form_body(forms[key])
            responses = operation.responses if operation.responses is not None else {}
            shape = _shape(path)
            for status in _statuses(path, operation, errors.get(key, ())):
                responses[str(status)] = _response(status, shape)
            operation.responses = responses
