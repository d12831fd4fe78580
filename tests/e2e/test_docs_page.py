"""/docs/ renders in a real headless browser with no way out to the internet: Swagger UI comes
from clave itself, never from a CDN."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ClaveProcess

pytestmark = pytest.mark.e2e


def rendered(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM once its scripts ran, every host but 127.0.0.1 unresolvable."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_the_docs_page_renders_offline(
    tmp_path: Path, serve: type[ClaveProcess], chromium_bin: str
) -> None:
    server = serve(tmp_path, env={"CLAVE_SEED": "true"}).start()
    page = httpx.get(server.url + "/docs/", timeout=10).text
    # Every script, style sheet and icon comes from clave.
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert assets
    assert all(a.startswith("/docs/assets/") for a in assets), assets
    dom = rendered(chromium_bin, server.url + "/docs/", tmp_path / "profile")
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/api/verifications", "/api/verifications/check", "/v2/Services"} <= paths, paths
    assert "/api/users" in paths  # the monolith documents every domain
