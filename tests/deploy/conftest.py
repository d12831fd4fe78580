"""Fixtures for the container and AWS deployment tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.docker_engine import base_image, docker_client, docker_engine
from tests.services import wait_until
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "clave:test"


def tool(name: str) -> str:
    """A command from the test extras (next to this Python), else from PATH; fail if absent."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install the test extras (make install-test)", pytrace=False)
    return found


@dataclass(frozen=True)
class Docker:
    client: str
    host: str

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.client, *args],
            env={**os.environ, "DOCKER_HOST": self.host},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"docker {' '.join(args)}: {result.stderr[-3000:]}", pytrace=False)
        return result


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    client = docker_client()
    host, private = docker_engine(client)
    engine = Docker(client, host)
    yield engine
    # Keep the base image (slow to build), drop the images each build leaves untagged.
    engine("image", "prune", "--force", check=False)
    if private is not None:
        private.stop()


@pytest.fixture(scope="session")
def image(docker: Docker) -> str:
    """clave's image, built from this checkout's Dockerfile on the locally built base."""
    base = base_image(docker.client, docker.host)
    docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "--tag",
        IMAGE,
        str(ROOT),
        timeout=1200,
    )
    return IMAGE


@dataclass
class Container:
    docker: Docker
    id: str
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def inspect(self, template: str) -> str:
        return self.docker("inspect", "--format", template, self.id).stdout.strip()

    def logs(self) -> str:
        result = self.docker("logs", self.id, check=False)
        return result.stdout + result.stderr


@pytest.fixture
def run_container(docker: Docker, image: str) -> Iterator[object]:
    """Start the image (host network, a free loopback port) with a command; removed after."""
    started: list[Container] = []

    def run(*command: str, env: dict[str, str] | None = None) -> Container:
        port = free_port()
        settings = {"CLAVE_HOST": "127.0.0.1", "CLAVE_PORT": str(port), "CLAVE_WORKERS": "1"}
        settings.update(env or {})
        flags = [arg for name, value in settings.items() for arg in ("--env", f"{name}={value}")]
        cid = docker("run", "--detach", "--network", "host", *flags, image, *command).stdout
        container = Container(docker, cid.strip(), port)
        started.append(container)

        def answers() -> bool:
            try:
                return httpx.get(container.url("/healthz"), timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(answers, timeout=60, interval=0.5)
        except AssertionError:
            pytest.fail(f"the container never answered /healthz:\n{container.logs()}")
        return container

    yield run
    for container in started:
        docker("rm", "--force", container.id, check=False)
