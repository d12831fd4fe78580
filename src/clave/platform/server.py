"""The multi-worker server: granian processes sharing one port, dead workers respawned."""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces, Loops

from clave.platform.logs import access_log_config
from clave.platform.metrics import prepare_multiprocess
from clave.platform.settings import PlatformSettings


def run_server(target: str, settings: PlatformSettings, *, workers: int) -> None:
    """Serve the ASGI app factory `target` ("module:function") until SIGINT/SIGTERM.

    granian forks `workers` processes that accept on the same socket (what Node's `cluster`
    did), replaces a worker that dies, and on SIGTERM stops accepting, lets in-flight requests
    finish for up to `shutdown_grace` seconds, then exits.
    """
    # Before any worker starts: each writes its metrics there, /metrics sums them.
    prepare_multiprocess(settings.data_dir, settings.port)
    Granian(
        target,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=workers,
        loop=Loops.auto,
        respawn_failed_workers=True,
        respawn_interval=0.5,
        workers_kill_timeout=settings.shutdown_grace,
        backlog=2048,
        log_access=settings.access_log,
        log_dictconfig=access_log_config(settings.log_format),
        log_level=settings.log_level,  # type: ignore[arg-type]
    ).serve()
