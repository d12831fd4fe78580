"""The app factory: mount the chosen domains into one Litestar app."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from clave import __version__
from clave.platform.domain import Domain
from clave.platform.errors import ExceptionHandler, handlers, native_error_handler
from clave.platform.health import health_router
from clave.platform.http import json_bodies_only
from clave.platform.lean import LeanApp
from clave.platform.origin import PublicOrigin
from clave.platform.settings import PlatformSettings

log = logging.getLogger("clave.app")


@get("/openapi.json", include_in_schema=False, media_type=MediaType.JSON)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this process's routes."""
    return request.app.openapi_schema.to_schema()


def build_app(settings: PlatformSettings, domains: Sequence[Domain]) -> LeanApp:
    """An ASGI app serving `domains` plus the health routes, starting them with the worker:
    the domains' lean routes answered directly, everything else by Litestar (`.framework`)."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for domain in domains:
                await domain.start()
                stack.push_async_callback(domain.stop)
            # Everything built so far lives as long as the worker: move it out of the cyclic
            # garbage collector's sight, so collections during requests scan only new objects.
            gc.collect()
            gc.freeze()
            log.info("worker ready: %s", ", ".join(d.name for d in domains))
            yield

    route_handlers: list[Any] = [health_router(domains), openapi_json]
    for domain in domains:
        route_handlers.extend(domain.route_handlers())
    # A domain may render the errors under a path prefix its own way (verify's /v2 answers as
    # Twilio does), including the ones raised before any of its routes matched (no such path,
    # wrong method).
    renderers: list[tuple[str, ExceptionHandler]] = [
        (prefix, renderer)
        for domain in domains
        for prefix, renderer in domain.error_renderers.items()
    ]

    def render_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        for prefix, renderer in renderers:
            if request.url.path.startswith(prefix):
                return renderer(request, exc)
        return native_error_handler(request, exc)

    framework = Litestar(
        route_handlers=route_handlers,
        lifespan=[lifespan],
        exception_handlers=handlers(render_error),
        middleware=[json_bodies_only],
        request_max_body_size=settings.max_body_bytes,
        # clave configures its own logging (platform.logs); Litestar's default would take over
        # the root logger and log every in-process client call.
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="clave",
            version=__version__,
            description="Send one-time verification codes and check them.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/")],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="API key"),
                    "basic": SecurityScheme(
                        type="http",
                        scheme="basic",
                        description="Twilio-compatible API: account sid and auth token, or API "
                        "key sid and secret",
                    ),
                }
            ),
        ),
        debug=False,
    )
    lean = [route for domain in domains for route in domain.lean_routes()]
    origin = PublicOrigin(public_url=settings.public_url, proxy_hops=settings.proxy_hops)
    return LeanApp(framework, lean, max_body=settings.max_body_bytes, origin=origin)
