"""The container health check: 0 when /healthz answers 2xx, 1 otherwise."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    httpd = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _check(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clave.platform.healthcheck"],
        # Nothing but the port, as in the container; coverage's own variable when measuring.
        env={"CLAVE_PORT": str(port), "PATH": "/usr/bin:/bin"}
        | {k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthy_server_exits_zero(server: HTTPServer) -> None:
    assert _check(server.server_address[1]).returncode == 0


def test_unhealthy_server_exits_one(server: HTTPServer) -> None:
    _Health.status = 503
    try:
        result = _check(server.server_address[1])
    finally:
        _Health.status = 200
    assert result.returncode == 1
    assert "503" in result.stderr


def test_nothing_listening_exits_one() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _check(port)
    assert result.returncode == 1
    assert "healthz" in result.stderr
