"""Routes every process serves: `/` (load balancer health), `/api`, `/healthz`, `/readyz`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from litestar import MediaType, Response, Router, get

from clave import __version__
from clave.platform.domain import Domain

log = logging.getLogger("clave.health")


def health_router(domains: Sequence[Domain]) -> Router:
    """Build the health routes for the mounted domains."""

    @get("/", media_type=MediaType.TEXT, include_in_schema=False)
    async def root() -> str:
        """Plain-text ready line, what the original's load balancer health check read."""
        return f"clave {__version__} ready\n"

    @get("/api", summary="Service name and version")
    async def api_info() -> dict[str, Any]:
        """The service's name and version."""
        # The same answer from the monolith and from every service: the load balancer may
        # route /api to any of them.
        return {"name": "clave", "version": __version__}

    @get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process is up and its event loop answers."""
        return {"status": "ok"}

    @get("/readyz", summary="Readiness: every domain's store answers")
    async def readyz() -> Response[dict[str, Any]]:
        """200 when every mounted domain can serve, 503 naming the ones that cannot."""
        failing: dict[str, str] = {}
        for domain in domains:
            try:
                await domain.ready()
            except Exception as exc:  # readiness reports any failure rather than raising it
                log.warning("domain %s not ready: %s", domain.name, exc)
                failing[domain.name] = type(exc).__name__
        if failing:
            return Response({"status": "unavailable", "failing": failing}, status_code=503)
        return Response({"status": "ok"}, status_code=200)

    return Router(path="/", route_handlers=[root, api_info, healthz, readyz], tags=["health"])
