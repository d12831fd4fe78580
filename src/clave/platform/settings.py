"""Read `CLAVE_*` settings once, validate them, and fail start-up naming the bad variable."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from clave.platform.origin import parse_public_url
from clave.platform.urls import redacted, with_password

PREFIX = "CLAVE_"
# A worker's connections to one domain's PostgreSQL database, at most (CLAVE_DB_POOL_SIZE).
DEFAULT_POOL_SIZE = 10
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


class Env:
    """Typed, validating reads of `CLAVE_*` variables from one snapshot of the environment."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)

    def raw(self, name: str) -> str | None:
        """The raw value of CLAVE_<name>, or None when unset or empty."""
        value = self._environ.get(PREFIX + name)
        return value if value not in (None, "") else None

    def text(self, name: str, default: str) -> str:
        """A string setting."""
        value = self.raw(name)
        return default if value is None else value

    def optional(self, name: str) -> str | None:
        """A string setting that may be absent."""
        return self.raw(name)

    def integer(
        self, name: str, default: int, *, low: int | None = None, high: int | None = None
    ) -> int:
        """An integer setting, optionally bounded (inclusive)."""
        value = self.raw(name)
        if value is None:
            result = default
        else:
            try:
                result = int(value)
            except ValueError:
                raise SettingsError(f"{PREFIX}{name} must be an integer, got {value!r}") from None
        self._bounds(name, result, low, high)
        return result

    def number(
        self, name: str, default: float, *, low: float | None = None, high: float | None = None
    ) -> float:
        """A number setting, optionally bounded (inclusive)."""
        value = self.raw(name)
        if value is None:
            result = default
        else:
            try:
                result = float(value)
            except ValueError:
                raise SettingsError(f"{PREFIX}{name} must be a number, got {value!r}") from None
        self._bounds(name, result, low, high)
        return result

    def flag(self, name: str, default: bool) -> bool:
        """A boolean setting: 1/0, true/false, yes/no, on/off."""
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(f"{PREFIX}{name} must be true or false, got {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """A setting that must be one of `choices`."""
        value = self.text(name, default).strip().lower()
        if value not in choices:
            raise SettingsError(
                f"{PREFIX}{name} must be one of {', '.join(choices)}, got {value!r}"
            )
        return value

    def items(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A comma-separated list setting."""
        value = self.raw(name)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def path(self, name: str, default: str) -> Path:
        """A filesystem path setting."""
        return Path(self.text(name, default)).expanduser()

    def with_object(self, name: str, keys: Collection[str]) -> Env:
        """This environment with `CLAVE_<name>` beneath it: one JSON object whose keys are
        settings among `keys` (without the prefix) and whose values are strings ("" is unset).
        A setting's own variable wins over its key. ECS injects a whole Secrets Manager secret
        this way, where a secret lacking one key, injected key by key, stops the task.
        Errors name keys, never values: the values are secrets."""
        text = self.raw(name)
        if text is None:
            return self
        source = PREFIX + name
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        if not isinstance(data, dict):
            raise SettingsError(f"{source} must be a JSON object of setting name to string")
        unknown = sorted(_shown_key(key) for key in data if key not in keys)
        if unknown:
            raise SettingsError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"it may hold {', '.join(sorted(keys))}"
            )
        for key, value in data.items():
            if not isinstance(value, str):
                raise SettingsError(f"{source}: the value of {key} must be a string")
        beneath = {PREFIX + key: value for key, value in data.items() if self.raw(key) is None}
        return Env({**self._environ, **beneath})

    @staticmethod
    def _bounds(name: str, value: float, low: float | None, high: float | None) -> None:
        if low is not None and value < low:
            raise SettingsError(f"{PREFIX}{name} must be >= {low}, got {value}")
        if high is not None and value > high:
            raise SettingsError(f"{PREFIX}{name} must be <= {high}, got {value}")


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    """Process-wide settings: where to listen, how many workers, where data lives."""

    host: str
    port: int
    workers: int
    data_dir: Path
    log_level: str
    access_log: bool
    max_body_bytes: int
    shutdown_grace: int
    routes: Path
    # Trusted proxies in front (haproxy, an ALB): the end user's address is the entry the
    # outermost one appended to X-Forwarded-For.
    proxy_hops: int
    # Where clients reach clave (platform/origin.py), when not what the request says.
    public_url: str | None = None
    # text: one readable line per event; json: one JSON object per line (log collectors).
    log_format: str = "text"

    @classmethod
    def from_env(cls, env: Env) -> PlatformSettings:
        """Build from `CLAVE_*` variables."""
        return cls(
            host=env.text("HOST", "127.0.0.1"),
            port=env.integer("PORT", 8000, low=0, high=65535),
            workers=env.integer("WORKERS", os.cpu_count() or 1, low=1, high=256),
            data_dir=env.path("DATA_DIR", "./var"),
            log_level=env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            log_format=env.choice("LOG_FORMAT", "text", ("text", "json")),
            access_log=env.flag("ACCESS_LOG", False),
            max_body_bytes=env.integer(
                "MAX_BODY_BYTES", 64 * 1024, low=1024, high=10 * 1024 * 1024
            ),
            shutdown_grace=env.integer("SHUTDOWN_GRACE", 30, low=1, high=600),
            routes=env.path("ROUTES", "routes.toml"),
            proxy_hops=env.integer("PROXY_HOPS", 0, low=0, high=10),
            public_url=_public_url(env.optional("PUBLIC_URL")),
        )


def _shown_key(key: str) -> str:
    """A key of a JSON object of settings, fit for an error: a secret pasted as a key is not
    shown."""
    return key if _SETTING_NAME.fullmatch(key) else "(a key that is no setting name)"


def _public_url(value: str | None) -> str | None:
    if not value:
        return None
    try:
        scheme, host = parse_public_url(value)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return f"{scheme}://{host}"


def export(overrides: Mapping[str, str | int | None]) -> None:
    """Set `CLAVE_<name>` for this process and the workers it starts (command-line overrides)."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[PREFIX + name] = str(value)


def database_url(env: Env, domain: str) -> str:
    """`CLAVE_<DOMAIN>_DB`: sqlite (the default, a file in CLAVE_DATA_DIR), sqlite:///path,
    postgresql://..., or memory (tests, one process); with `CLAVE_<DOMAIN>_DB_PASSWORD` put
    into a postgresql:// URL. The monolith serves every domain, each as its own database user,
    so one PGPASSWORD cannot serve them all."""
    name = f"{domain.upper()}_DB"
    url = env.text(name, "sqlite")
    if not (
        url in ("sqlite", "memory")
        or url.startswith(("sqlite:///", "postgresql://", "postgres://"))
    ):
        raise SettingsError(
            f"{PREFIX}{name} must be sqlite, sqlite:///path, postgresql://... or memory, "
            f"got {redacted(url)!r}"
        )
    password = env.optional(f"{name}_PASSWORD")
    if password is None:
        return url
    if not url.startswith(("postgresql://", "postgres://")):
        raise SettingsError(f"{PREFIX}{name}_PASSWORD is only for a postgresql:// {PREFIX}{name}")
    try:
        return with_password(url, password)
    except ValueError:
        raise SettingsError(
            f"{PREFIX}{name}_PASSWORD is set and {PREFIX}{name} has one too"
        ) from None


def database_pool_size(env: Env) -> int:
    """`CLAVE_DB_POOL_SIZE`: connections each worker may open to each PostgreSQL database."""
    return env.integer("DB_POOL_SIZE", DEFAULT_POOL_SIZE, low=1, high=100)
