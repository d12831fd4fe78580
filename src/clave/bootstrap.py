"""The one composition root: settings -> domains -> app. Nothing connects at import time."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from litestar import Litestar

from clave.platform.app import build_app
from clave.platform.domain import Domain
from clave.platform.logs import configure_logging
from clave.platform.settings import Env, PlatformSettings, SettingsError
from clave.verify.bootstrap import VerifyDomain
from clave.verify.settings import VerifySettings

SERVICES = ("verify",)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a clave process."""

    platform: PlatformSettings
    verify: VerifySettings
    services: tuple[str, ...]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate `CLAVE_*` once; SettingsError names the bad variable."""
        env = Env(environ)
        services = env.items("SERVICES", SERVICES)
        unknown = [name for name in services if name not in SERVICES]
        if unknown or not services:
            raise SettingsError(
                f"CLAVE_SERVICES must list services among {', '.join(SERVICES)}, got {services}"
            )
        return cls(
            platform=PlatformSettings.from_env(env),
            verify=VerifySettings.from_env(env),
            services=services,
        )


def build_domains(settings: Settings) -> list[Domain]:
    """The domains named in settings, built but not started."""
    domains: list[Domain] = []
    for name in settings.services:
        if name == "verify":
            try:
                domains.append(VerifyDomain(settings.verify, settings.platform))
            except ValueError as exc:  # an unreadable key file
                raise SettingsError(str(exc)) from exc
    return domains


def prepare(domains: Sequence[Domain]) -> None:
    """Create schemas and seed data once, before worker processes start."""

    async def run() -> None:
        for domain in domains:
            if isinstance(domain, VerifyDomain):
                domain.prepare()
                await domain.open()
                await domain.close()

    asyncio.run(run())


def create_app() -> Litestar:
    """ASGI app factory for a worker process (granian calls it in each worker)."""
    settings = Settings.load()
    configure_logging(settings.platform.log_level)
    return build_app(settings.platform, build_domains(settings))
