"""Process logging: one line per event with the pid, to stderr."""

from __future__ import annotations

import logging
import sys


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
