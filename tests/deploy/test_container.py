"""The image, built from the Dockerfile and run by a real Docker engine."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.deploy.conftest import Docker
from tests.services import wait_until

# The first test's setup may install and start a Docker engine and build the base image and
# clave's (about 30 s when the base image is kept, several minutes on a new machine). A
# parallel run keeps the module on one worker (`--dist loadfile`): the engine started here
# keeps its images in one directory, which two engines must not share.
pytestmark = pytest.mark.timeout(1800)


def test_monolith_container_answers_as_a_non_root_user(run_container, docker: Docker) -> None:  # type: ignore[no-untyped-def]
    box = run_container()
    assert httpx.get(box.url("/healthz"), timeout=5).json() == {"status": "ok"}
    # Every domain: verify (needs a key), and the forum's users.
    assert httpx.get(box.url("/api/users"), timeout=5).status_code == 200
    assert httpx.post(box.url("/api/verifications"), json={}, timeout=5).status_code == 401
    assert docker("exec", box.id, "id", "-u").stdout.strip() == "10001"
    assert box.inspect("{{.Config.User}}") == "10001:10001"
    # No compiler in the final stage.
    assert docker("exec", box.id, "sh", "-c", "command -v gcc cc", check=False).returncode != 0


def test_healthcheck_turns_healthy(run_container) -> None:  # type: ignore[no-untyped-def]
    box = run_container()
    wait_until(lambda: box.inspect("{{.State.Health.Status}}") == "healthy", timeout=60, interval=1)


def test_service_role_serves_only_its_paths(run_container) -> None:  # type: ignore[no-untyped-def]
    box = run_container(
        "serve",
        "--service",
        "users",
        env={"CLAVE_VERIFY_URL": "http://127.0.0.1:9", "CLAVE_VERIFY_KEY": "ck_" + "k" * 40},
    )
    assert httpx.get(box.url("/api/users"), timeout=5).status_code == 200
    assert httpx.get(box.url("/api/threads"), timeout=5).status_code == 404
    assert httpx.post(box.url("/api/verifications"), json={}, timeout=5).status_code == 404


def test_stop_is_graceful_and_quick(run_container, docker: Docker) -> None:  # type: ignore[no-untyped-def]
    box = run_container()
    started = time.monotonic()
    docker("stop", "--time", "20", box.id)
    assert time.monotonic() - started < 15  # SIGTERM handled, not the 20 s kill
    assert box.inspect("{{.State.ExitCode}}") == "0"
