"""`python -m clave.platform.healthcheck`: exit 0 when this container's server answers /healthz.

The container's HEALTHCHECK and the ECS task's health check run it every few seconds, so it
imports nothing but the standard library (not the app) and gives up after two seconds.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """GET http://127.0.0.1:$CLAVE_PORT/healthz; 0 on a 2xx, 1 otherwise (the reason on stderr)."""
    port = os.environ.get("CLAVE_PORT") or "8000"
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
