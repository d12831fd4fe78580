"""Process logging: one line per event with the pid, to stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any

from clave.platform.contacts import mask_text


def configure_logging(level: str) -> None:
    """Send clave's logs to stderr at `level`; safe to call more than once."""
    root = logging.getLogger("clave")
    root.setLevel(level.upper())
    if not any(getattr(h, "_clave", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
        handler._clave = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False


class MaskDestinations(logging.Filter):
    """Masks phone numbers and email addresses in access-log lines: a path or query string may
    carry one (`/v2/.../Verifications/+14155552671`, `?to=...`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with destinations masked; never drops it."""
        record.msg = mask_text(record.getMessage())
        record.args = None
        return True


def access_log_config() -> dict[str, Any]:
    """granian's logging configuration, with destinations masked in the access log."""
    plain: dict[str, Any] = {"()": "logging.Formatter", "fmt": "%(message)s"}
    stdout = "ext://sys.stdout"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"mask": {"()": "clave.platform.logs.MaskDestinations"}},
        "formatters": {
            "generic": {"()": "logging.Formatter", "fmt": "[%(levelname)s] %(message)s"},
            "access": plain,
        },
        "handlers": {
            "console": {"formatter": "generic", "class": "logging.StreamHandler", "stream": stdout},
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": stdout,
                "filters": ["mask"],
            },
        },
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
