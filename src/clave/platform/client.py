"""Calling another domain: in-process in the monolith, over HTTP when split; same code."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from clave.platform import tracing
from clave.platform.errors import ClaveError

log = logging.getLogger("clave.client")


class DependencyUnavailable(ClaveError):
    """A service this request needs did not answer in time."""

    status = 503
    code = "dependency_unavailable"


class RemoteError(ClaveError):
    """The other service refused the request; its status, code and headers pass through."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.status = status
        self.code = code


class AppRef:
    """The ASGI app of this process, bound after it is built (in-process calls target it)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Forward to the bound app."""
        if self.app is None:
            raise RuntimeError("in-process client used before the app was built")
        await self.app(scope, receive, send)


def http_client(*, base_url: str | None, app: AppRef | None, timeout: float) -> httpx.AsyncClient:
    """HTTP to `base_url`, or in-process through the ASGI app when `app` is given."""
    if app is not None:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://in-process", timeout=timeout
        )
    if not base_url:
        raise ValueError("a base URL is needed for a remote service")
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


class ServiceClient:
    """Requests to one service, with retries where they are safe and typed failures."""

    def __init__(
        self,
        service: str,
        http: httpx.AsyncClient,
        *,
        retries: int = 2,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.service = service
        self._http = http
        self._retries = retries
        self._headers = headers or {}

    async def request(self, method: str, path: str, *, json: Any = None) -> httpx.Response:
        """Send; retry only when the request cannot have arrived (connection refused or
        connect timeout); a read timeout, a 502/503/504 or no answer is DependencyUnavailable."""
        last: Exception | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(0.05 * 2**attempt)
            headers = dict(self._headers)
            tracing.inject(headers)  # the caller's trace goes on (W3C traceparent)
            try:
                response = await self._http.request(method, path, json=json, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = exc
                continue
            except httpx.HTTPError as exc:
                log.warning("%s %s %s failed: %s", self.service, method, path, exc)
                raise DependencyUnavailable(f"the {self.service} service did not answer") from exc
            if response.status_code in (502, 503, 504):
                raise DependencyUnavailable(f"the {self.service} service is unavailable")
            return response
        log.warning("%s %s %s: cannot connect: %s", self.service, method, path, last)
        raise DependencyUnavailable(f"the {self.service} service is unavailable") from last

    def refused(self, response: httpx.Response) -> RemoteError:
        """The error a non-2xx answer carries, in the native error shape."""
        try:
            body = response.json()["error"]
            code, message = str(body["code"]), str(body["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "remote_error", f"{self.service} answered {response.status_code}"
        headers = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
        if response.status_code >= 500:
            return RemoteError(
                503, "dependency_unavailable", f"the {self.service} service failed", {}
            )
        return RemoteError(response.status_code, code, message, headers)

    async def exists(self, path: str) -> bool:
        """GET `path`: True on 200, False on 404, else an error."""
        response = await self.request("GET", path)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self.refused(response)

    async def aclose(self) -> None:
        """Close connections."""
        await self._http.aclose()
