"""Lean routes: the hot routes answered straight from ASGI, Litestar kept for everything else.

For the few routes that carry most of the load (checking a code, sending one, listing users),
Litestar's per-request machinery cost about as much CPU as the work itself (py-spy on a check:
38% of the worker's Python time in routing, the middleware stack, dependency resolution and
the Request and Response objects). A lean route answers such a request with the same service
call, the same msgspec types and the same error renderer, in a few steps.

The framework stays in charge of the contract. Every lean route is also a Litestar route, so
/openapi.json documents it unchanged, and a lean handler takes only the plain case: the method
and exact path, a JSON body that decodes strictly into the documented type, within the size
limit. Anything else (another content type, a body too large, a field of the wrong type, a
trailing slash) is handed to Litestar untouched, the body already read replayed, so every
client mistake gets the very answer it always got. `tests/api/test_lean.py` holds each lean
route to the framework's answer on the same requests.

A lean handler decides whether to hand over (raise `Handover`) before anything has happened:
once it has called the service, it answers, errors included.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from clave.platform import tracing
from clave.platform.errors import native_error
from clave.platform.http import is_json_media_type
from clave.platform.metrics import Metrics
from clave.platform.origin import PublicOrigin

T = TypeVar("T")
# ASGI, loosely typed: Litestar's TypedDicts are for its own apps.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ENCODER = msgspec.json.Encoder()
_JSON = (b"content-type", b"application/json")


class Handover(Exception):
    """The request is not a plain one: Litestar answers it, exactly as without lean routes."""


@dataclass(slots=True)
class LeanRequest:
    """What a lean handler sees of a request: its scope, its headers by name, its body."""

    scope: Scope
    body: bytes
    _headers: dict[bytes, bytes] = field(default_factory=dict)

    def header(self, name: bytes) -> str | None:
        """A header's value (its first line), `name` in lowercase."""
        value = self._headers.get(name)
        return None if value is None else value.decode("latin-1")

    def header_lines(self, name: bytes) -> list[str]:
        """Every line of a header, in order."""
        return [v.decode("latin-1") for k, v in self.scope["headers"] if k == name]

    @property
    def peer(self) -> str | None:
        """The address of the connection's other end."""
        client = self.scope.get("client")
        return client[0] if client else None

    @property
    def query(self) -> bytes:
        return bytes(self.scope.get("query_string", b""))

    def json(self, kind: type[T]) -> T:
        """The body as `kind`, decoded strictly; Handover unless it is declared as JSON and is
        exactly of the documented shape (Litestar's lax decoding then answers it)."""
        if not is_json_media_type(self.header(b"content-type") or ""):
            raise Handover
        try:
            return msgspec.json.decode(self.body, type=kind)
        except msgspec.MsgspecError:
            raise Handover from None


@dataclass(frozen=True, slots=True)
class LeanResponse:
    """A JSON answer: status, a msgspec-encodable body, extra headers."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


LeanHandler = Callable[[LeanRequest], Awaitable[LeanResponse]]
# Renders an exception as the route's error response (the same as the framework's renderer).
ErrorBody = Callable[[Exception], LeanResponse]


@dataclass(frozen=True, slots=True)
class LeanRoute:
    """A method and an exact path, the handler, and how its errors look."""

    method: str
    path: str
    handler: LeanHandler
    errors: ErrorBody


def native_errors(exc: Exception) -> LeanResponse:
    """`exc` as `errors.native_error_handler` renders it."""
    status, body, headers = native_error(exc)
    return LeanResponse(body, status, headers)


class LeanApp:
    """ASGI: the lean routes answered here, every other request passed to `app` (Litestar)."""

    def __init__(
        self,
        app: Any,
        routes: Iterable[LeanRoute],
        *,
        max_body: int,
        origin: PublicOrigin | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.framework = app
        self._routes = {(r.method, r.path): r for r in routes}
        self._max_body = max_body
        self._origin = origin if origin is not None and origin.active else None
        self._duration = metrics.http_duration if metrics is not None else None
        # The labelled histograms, by (method, route, status): labels() on every request
        # costs more than the observation.
        self._timers: dict[tuple[str, str, str], Any] = {}
        # Tracing is configured before the app is built (bootstrap.create_app), once.
        self._traced = tracing.enabled()

    async def _framework(
        self, scope: Scope, receive: Receive, send: Send, template: list[str | None]
    ) -> None:
        """Litestar, without the OPTIONS it would answer on its own: clave grants no CORS
        preflight, and Litestar's automatic answer named only some of a path's methods. An
        OPTIONS request is a method the path does not take (405); errors.classify keeps
        OPTIONS out of a 405's `Allow`, which then lists what /openapi.json documents."""
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            scope = {**scope, "method": "TRACE"}  # a method no route takes: Litestar's 405
        try:
            await self.framework(scope, receive, send)
        finally:
            template[0] = scope.get("path_template")  # Litestar's routing sets it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._traced and scope["type"] == "http":
            await self._in_span(scope, receive, send)
            return
        await self._measured(scope, receive, send)

    async def _in_span(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request in a server span, a child of the caller's `traceparent`."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with tracing.span(scope["method"], headers=headers, server=True) as current:
            status = [0]

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            await self._measured(scope, receive, sending)
            current.set_attribute("http.request.method", scope["method"])
            current.set_attribute("http.response.status_code", status[0])

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._duration is None or scope["type"] != "http":
            await self._answer(scope, receive, send)
            return
        # Timed, by method, route template (never the path itself: ids are not labels) and
        # status, from the first byte read to the last sent.
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        route: list[str | None] = [None]
        try:
            await self._answer(scope, receive, sending, route)
        finally:
            template = route[0] or "unmatched"
            key = (scope["method"], template, str(status[0]))
            timer = self._timers.get(key)
            if timer is None:
                if len(self._timers) > 10_000:  # (methods and statuses are few; be safe)
                    self._timers.clear()
                timer = self._timers[key] = self._duration.labels(*key)
            timer.observe(time.perf_counter() - started)
            if self._traced:
                tracing.name_current(f"{scope['method']} {template}", {"http.route": template})

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, template: list[str | None] | None = None
    ) -> None:
        """Answer the request; the route template that answered goes into `template`."""
        found: list[str | None] = template if template is not None else [None]
        if self._origin is not None:  # the public scheme and host, for every route
            scope = self._origin.settle(scope)
        route = (
            self._routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self._framework(scope, receive, send, found)
            return
        found[0] = route.path
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first line, as Litestar's headers.get
        length = headers.get(b"content-length")
        # (A length of more than 19 digits is not a length: Python refuses to read one of more
        # than 4,300, and hyper passes leading zeros.)
        if length is not None and (
            not length.isdigit() or len(length) > 19 or int(length) > self._max_body
        ):
            await self._framework(scope, receive, send, found)  # Litestar: 413 (or 400)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self._max_body:
                break
        body = b"".join(chunks)
        if size > self._max_body:  # Litestar answers 413
            await self._framework(scope, _replay(body, receive, more=more), send, found)
            return
        request = LeanRequest(scope, body, headers)
        try:
            response = await route.handler(request)
        except Handover:
            await self._framework(scope, _replay(body, receive, more=False), send, found)
            return
        except Exception as exc:  # rendered as the framework's handler renders it
            response = route.errors(exc)
        await respond(send, response)


async def respond(send: Send, response: LeanResponse) -> None:
    """Send `response` as JSON, with the headers Litestar sends for a JSON body."""
    content = _ENCODER.encode(response.body)
    head = [_JSON, (b"content-length", str(len(content)).encode())]
    for name, value in response.headers.items():
        head.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": response.status, "headers": head})
    await send({"type": "http.response.body", "body": content})


def _replay(body: bytes, receive: Receive, *, more: bool) -> Receive:
    """A `receive` that gives `body` first (what was already read), then the rest."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
