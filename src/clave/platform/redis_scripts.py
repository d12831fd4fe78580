"""Lua scripts on one pipelined Redis connection: the hot path of the Redis stores.

redis-py lends each command a connection of its own from a pool for its whole round trip, and
wraps it in a retry, a timeout and an event dispatch: py-spy found over half of a check's CPU
on Redis there. Here, as ioredis does, every script call of a worker goes out on one
connection without waiting for the calls before it to be answered. Redis answers in order, so
the n-th reply is the n-th waiting caller's. What one turn of the event loop sends goes out in
one write, and hiredis parses the replies.

Scripts are called by EVALSHA; a server that does not know one (restarted, flushed) gets the
script itself (EVAL, which also caches it). The connection opens on first use, and again after
it is lost or after the server turned out to be a read-only replica (a failover). The calls in
flight when it is lost, or when the server stays silent for `timeout` seconds while calls
wait, fail with StoreError (their effect unknown, as with any client); the next calls
reconnect. Everything but scripts (admin commands, scans) stays on redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url

from clave.platform.errors import StoreError
from clave.platform.urls import redacted

Arg = str | bytes | int | float


class ScriptError(Exception):
    """Redis answered a call with an error (the script's own, or the server's)."""


def encode(*args: Arg) -> bytes:
    """One command in RESP: an array of bulk strings, numbers as redis-py writes them (repr).
    hiredis packs it in C, a third of the time of formatting it here; a TypeError for
    anything else (a bool, None)."""
    # (hiredis' stub declares a tuple of one item where it takes any number.)
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


class _Pipe(asyncio.Protocol):
    """One connection: commands written as they come, replies handed out in order."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._heard = 0.0  # when the server last answered, or calls began to wait
        self._watch: asyncio.TimerHandle | None = None
        self.alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of asyncio's, only alike).
        self._transport, self.alive = cast(asyncio.Transport, transport), True
        self._arm()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue `command`; the future gets its reply."""
        if not self.alive:
            raise StoreError("Redis unavailable: the connection was lost")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._waiting:
            self._heard = loop.time()
        self._waiting.append(future)
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(command)
        return future

    def _flush(self) -> None:
        if self._transport is not None and self._outgoing:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self._heard = asyncio.get_running_loop().time()
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(f"Redis sent something that is not RESP: {exc}")
                return
            if reply is False:
                return
            if not self._waiting:
                self.abort("Redis answered a call nobody made")
                return
            future = self._waiting.popleft()
            if future.done():  # its caller stopped waiting
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ScriptError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self._watch is not None:
            self._watch.cancel()
        reason = f": {exc}" if exc is not None else ""
        self._fail(StoreError(f"Redis unavailable: the connection was lost{reason}"))

    def _fail(self, error: StoreError) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._watch = loop.call_later(max(self._timeout / 4, 0.01), self._check)

    def _check(self) -> None:
        """Give up on a server that stays silent while calls wait."""
        if not self.alive:
            return
        if self._waiting and asyncio.get_running_loop().time() - self._heard > self._timeout:
            self.abort(f"Redis did not answer for {self._timeout:g} s")
            return
        self._arm()

    def abort(self, reason: str) -> None:
        """Drop the connection now: the calls waiting fail with `reason`."""
        self.alive = False
        self._fail(StoreError(reason))
        if self._transport is not None:
            self._transport.abort()


class ScriptConnection:
    """Lua scripts by name (`scripts`: name -> source) on one pipelined connection to `url`."""

    def __init__(
        self,
        url: str,
        scripts: Mapping[str, str],
        *,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._url = url
        self._options = _options(url)
        self._sources = {name: source.encode() for name, source in scripts.items()}
        # EVALSHA names a script by its SHA-1, Redis's choice (not a security function).
        self._shas = {
            name: hashlib.sha1(source, usedforsecurity=False).hexdigest()
            for name, source in self._sources.items()
        }
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._pipe: _Pipe | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    async def call(self, name: str, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """The reply of script `name` run with `keys` and `args`; ScriptError for an error
        reply, StoreError when Redis cannot be reached or does not answer."""
        pipe = self._pipe
        if pipe is None or not pipe.alive or self._closed:
            pipe = await self._connect()
        try:
            try:
                command = encode(b"EVALSHA", self._shas[name], len(keys), *keys, *args)
                return await pipe.send(command)
            except ScriptError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
            source = self._sources[name]
            return await pipe.send(encode(b"EVAL", source, len(keys), *keys, *args))
        except ScriptError as exc:
            if str(exc).startswith("READONLY"):
                # A replica now (a failover demoted the primary): the next call connects
                # again, resolving the name anew, to whichever node is the primary.
                pipe.abort("Redis turned into a read-only replica")
            raise

    async def close(self) -> None:
        """Close the connection, failing the calls still waiting; calls after this fail."""
        self._closed = True
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.abort("the Redis store was closed")

    async def _connect(self) -> _Pipe:
        async with self._opening:
            if self._closed:
                raise StoreError("the Redis store is not open")
            if self._pipe is not None and self._pipe.alive:
                return self._pipe
            pipe = await self._open()
            if self._closed:  # closed while it was opening
                pipe.abort("the Redis store was closed")
                raise StoreError("the Redis store is not open")
            self._pipe = pipe
            return pipe

    async def _open(self) -> _Pipe:
        loop = asyncio.get_running_loop()
        options = self._options
        pipe = _Pipe(self._timeout)
        try:
            async with asyncio.timeout(self._connect_timeout):
                if "path" in options:
                    await loop.create_unix_connection(lambda: pipe, options["path"])
                else:
                    context = options.get("ssl")
                    await loop.create_connection(
                        lambda: pipe,
                        options["host"],
                        options["port"],
                        ssl=context,
                        server_hostname=options["host"] if context is not None else None,
                    )
                # As redis-py: a user without a password still logs in (an ACL user with
                # `nopass`), with an empty one.
                user, password = options.get("username"), options.get("password")
                if user or password:
                    credentials = (user, password or "") if user else (password,)
                    await pipe.send(encode(b"AUTH", *credentials))
                if options.get("db"):
                    await pipe.send(encode(b"SELECT", options["db"]))
        except (OSError, TimeoutError, ScriptError, StoreError) as exc:
            pipe.abort("could not connect")
            raise StoreError(f"cannot reach Redis at {redacted(self._url)}: {exc}") from exc
        return pipe


_KNOWN = {"host", "port", "db", "username", "password", "path", "connection_class"}
_SSL = {"ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname"}


def _options(url: str) -> dict[str, Any]:
    """Where and how to connect, read from `url` by redis-py's own parser (so both clients
    read a URL the same way); an option this connection does not implement is refused."""
    parsed = parse_url(url)
    tls = parsed.get("connection_class") is SSLConnection
    unknown = set(parsed) - _KNOWN - (_SSL if tls else set())
    if unknown:
        raise StoreError(f"the Redis URL option(s) {', '.join(sorted(unknown))} are not supported")
    options: dict[str, Any] = {
        k: v for k, v in parsed.items() if k in _KNOWN - {"connection_class"} and v is not None
    }
    options.setdefault("host", "localhost")
    options.setdefault("port", 6379)
    if tls:
        ca_file = parsed.get("ssl_ca_certs")
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        requirement = str(parsed.get("ssl_cert_reqs", "required")).lower()
        if requirement == "none":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.check_hostname = bool(parsed.get("ssl_check_hostname", True))
            if requirement == "optional":
                context.verify_mode = ssl.CERT_OPTIONAL
        options["ssl"] = context
    return options
