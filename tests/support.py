"""Helpers shared by the test suites: a fake clock, a real SMTP server, free ports."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

HMAC_KEYS = "test1:" + base64.urlsafe_b64encode(b"k" * 32).decode()
# Digits not next to other digits (in Chinese or Japanese text no word boundary surrounds them).
CODE = re.compile(r"(?<!\d)(\d{4,10})(?!\d)")


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def code_in(text: str) -> str:
    """The one-time code inside a rendered message."""
    found = CODE.search(text)
    assert found, f"no code in {text!r}"
    return found.group(1)


@dataclass
class _Handler:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.arrived.notify_all()
        return "250 OK"


class SmtpServer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._handler = _Handler()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=false"

    @property
    def messages(self) -> list[EmailMessage]:
        return list(self._handler.messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        return list(self._handler.envelopes)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, to: str, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """Block until `count` messages to `to` arrived."""
        deadline = time.monotonic() + timeout
        with self._handler.arrived:
            while True:
                found = [m for m in self._handler.messages if m["To"] == to]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"no {count} message(s) to {to} within {timeout}s"
                self._handler.arrived.wait(left)

    async def await_for(self, to: str, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """Async form of wait_for."""
        return await asyncio.to_thread(self.wait_for, to, count, timeout)


def text_part(message: EmailMessage) -> str:
    """The text/plain body of a received email."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_part(message: EmailMessage) -> str:
    """The text/html body of a received email."""
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def smtp_server() -> Iterator[SmtpServer]:
    """Fixture body: a started SMTP server, stopped afterwards."""
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


class RecordingServer:
    """A real HTTP server on 127.0.0.1 that records every request and answers from a script."""

    def __init__(self, answers: list[tuple[int, Any]] | None = None) -> None:
        import http.server

        self.requests: list[dict[str, Any]] = []
        self.answers = list(answers or [])
        self.default: tuple[int, Any] = (201, {"sid": "SM" + "0" * 32})
        self.arrived = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                with outer.arrived:
                    outer.requests.append(
                        {
                            "method": "POST",
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body,
                        }
                    )
                    status, payload = outer.answers.pop(0) if outer.answers else outer.default
                    outer.arrived.notify_all()
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        # A short poll interval: stop() waits for the loop to notice (0.5 s by default).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {count} request(s), got {len(self.requests)}"
                self.arrived.wait(left)
            return list(self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
