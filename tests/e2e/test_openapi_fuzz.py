"""/openapi.json tells the truth: schemathesis (every check, seeded) drives a real `clave serve`
through the native API with an API key and through /v2 with Twilio credentials, and finds
nothing: every status and body documented, every documented request taken, every violating
one refused, `Allow` headers as documented, no 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ClaveProcess, twilio_credentials

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def fuzz(server: ClaveProcess, *args: str) -> None:
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "run",
            server.url + "/openapi.json",
            "--seed",
            "20261201",
            "--max-examples",
            "40",
            "--no-color",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=server.data_dir,  # where schemathesis keeps its example database
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.fixture
def server(tmp_path: Path, serve: type[ClaveProcess]) -> ClaveProcess:
    return serve(tmp_path, env={"CLAVE_SEED": "true"}).start()


def test_the_native_api_is_as_documented(server: ClaveProcess) -> None:
    key = server.cli("apikey", "create").stdout.strip()
    fuzz(server, "-H", f"Authorization: Bearer {key}", "--exclude-path-regex", "^/v2")


def test_the_twilio_api_is_as_documented(server: ClaveProcess) -> None:
    creds = twilio_credentials(server)
    basic = f"{creds['TWILIO_ACCOUNT_SID']}:{creds['TWILIO_AUTH_TOKEN']}"
    fuzz(server, "--auth", basic, "--include-path-regex", "^/v2")
