"""The app factory: mount the chosen domains into one Litestar app."""

from __future__ import annotations

import gc
import importlib.util
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.file_system import BaseLocalFileSystem
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from litestar.types import FileInfo, PathType

from clave import __version__
from clave.platform import tracing
from clave.platform.domain import Domain
from clave.platform.errors import ExceptionHandler, handlers, native_error_handler
from clave.platform.health import health_router
from clave.platform.http import json_bodies_only
from clave.platform.lean import LeanApp
from clave.platform.metrics import CONTENT_TYPE as METRICS_TYPE
from clave.platform.metrics import Metrics
from clave.platform.openapi_errors import document_errors
from clave.platform.origin import PublicOrigin
from clave.platform.settings import PlatformSettings

log = logging.getLogger("clave.app")
DOCS_ASSETS = "/docs/assets"


@get("/openapi.json", include_in_schema=False, media_type=MediaType.JSON)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this process's routes."""
    return request.app.openapi_schema.to_schema()


def swagger_ui_files() -> Path:
    """Swagger UI's files, as the swagger-ui-py package ships them (found without importing
    it: only its static files are used)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class _AssetFiles(BaseLocalFileSystem):
    """The local files, where a path that names no readable file (a NUL byte, a name too
    long, a file taken for a folder: ValueError or OSError from stat) is a file that is not
    there, answered 404 rather than 500."""

    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:
        """The file's information; FileNotFoundError for a path no file is at."""
        try:
            return await super().info(path, **kwargs)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(str(path)) from exc


def docs_page() -> SwaggerRenderPlugin:
    """/docs/: Swagger UI from clave itself (DOCS_ASSETS), never from a CDN, so it renders
    where the browser cannot reach the internet."""
    return SwaggerRenderPlugin(
        path="/",
        js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>",
    )


def build_app(
    settings: PlatformSettings, domains: Sequence[Domain], metrics: Metrics | None = None
) -> LeanApp:
    """An ASGI app serving `domains` plus the health routes and /metrics, starting them with
    the worker: the domains' lean routes answered directly, everything else by Litestar
    (`.framework`); every request timed into `metrics`."""
    measured = metrics or Metrics()

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics_page() -> Response[bytes]:
        # Prometheus scrapes each component directly; the load balancers answer 404 for it.
        return Response(measured.exposition(), media_type=METRICS_TYPE)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for domain in domains:
                await domain.start()
                stack.push_async_callback(domain.stop)
            # Everything built so far lives as long as the worker: move it out of the cyclic
            # garbage collector's sight, so collections during requests scan only new objects.
            stack.callback(tracing.shutdown)  # the spans still buffered, exported
            gc.collect()
            gc.freeze()
            log.info("worker ready: %s", ", ".join(d.name for d in domains))
            yield

    route_handlers: list[Any] = [
        health_router(domains),
        openapi_json,
        metrics_page,
        create_static_files_router(
            path=DOCS_ASSETS,
            directories=[swagger_ui_files()],
            file_system=_AssetFiles(),
            include_in_schema=False,
            # Assets change only with the package: a browser may keep them a day.
            cache_control=CacheControlHeader(max_age=86400),
        ),
    ]
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
            render_plugins=[docs_page()],
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
    document_errors(
        framework.openapi_schema,
        {k: v for domain in domains for k, v in domain.openapi_errors.items()},
        {k: v for domain in domains for k, v in domain.openapi_forms.items()},
    )
    lean = [route for domain in domains for route in domain.lean_routes()]
    origin = PublicOrigin(public_url=settings.public_url, proxy_hops=settings.proxy_hops)
    return LeanApp(
        framework, lean, max_body=settings.max_body_bytes, origin=origin, metrics=measured
    )
