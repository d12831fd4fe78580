"""Process logging: one line per event with the pid, to stderr: readable text, or one JSON
object per line (`CLAVE_LOG_FORMAT=json`) for a log collector. Destinations are masked in
both, as everywhere."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from clave.platform.contacts import mask_text

_TEXT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, pid, message (its
    destinations masked), the exception when there is one, and the trace and span ids of the
    current OpenTelemetry span when one is recording."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": mask_text(record.getMessage()),
        }
        if record.exc_info:
            line["exception"] = mask_text(self.formatException(record.exc_info))
        line.update(_trace_ids())
        return json.dumps(line, ensure_ascii=False)


def _trace_ids() -> dict[str, str]:
    """The current span's ids, if OpenTelemetry is there and a span records."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of `CLAVE_LOG_FORMAT`."""
    return JsonLines() if log_format == "json" else logging.Formatter(_TEXT)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send clave's logs to stderr at `level`, as text or JSON lines; safe to call more than
    once."""
    root = logging.getLogger("clave")
    root.setLevel(level.upper())
    if not any(getattr(h, "_clave", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter(log_format))
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


def access_log_config(log_format: str = "text") -> dict[str, Any]:
    """granian's logging configuration, with destinations masked in the access log; JSON
    lines when `log_format` says so."""
    plain: dict[str, Any] = (
        {"()": "clave.platform.logs.JsonLines"}
        if log_format == "json"
        else {"()": "logging.Formatter", "fmt": "%(message)s"}
    )
    stdout = "ext://sys.stdout"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"mask": {"()": "clave.platform.logs.MaskDestinations"}},
        "formatters": {
            "generic": (
                plain
                if log_format == "json"
                else {"()": "logging.Formatter", "fmt": "[%(levelname)s] %(message)s"}
            ),
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
