"""A Docker engine for the image tests: one that answers, else dockerd started here.

dockerd (Debian's docker.io) is installed with apt-get when missing and running as root, and
started privately: its own socket and run directory, no bridge network and no iptables rules
(containers use the host's network, so they listen on loopback like everything else here).
Its image store is kept in /var/lib/clave-test-docker, so a second run reuses the base image.

No registry is reachable from here, so the base image is built with mmdebstrap (Debian
bookworm's python3, as Debian ships it) and imported under BASE_IMAGE. It trusts the same CAs
as this machine, and pip in it uses them, so `pip install` inside `docker build` reaches the
package index the way the host does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.services import _apt_install

BASE_IMAGE = "clave-test/python:3.11-bookworm"
DATA_ROOT = Path("/var/lib/clave-test-docker")


def docker_client() -> str:
    client = shutil.which("docker")
    if client is None and _apt_install("docker.io"):
        client = shutil.which("docker")
    if client is None:
        pytest.fail("the docker client is needed: apt-get install docker.io", pytrace=False)
    return client


def _answers(client: str, host: str) -> bool:
    try:
        result = subprocess.run(
            [client, "version", "--format", "{{.Server.Version}}"],
            env={**os.environ, "DOCKER_HOST": host},
            capture_output=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


class PrivateDockerd:
    """dockerd on a socket of its own, stopped at the end of the session."""

    def __init__(self, binary: str) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="clave-dockerd-", dir="/tmp"))
        self.host = f"unix://{self.run_dir}/docker.sock"
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        self.log = (self.run_dir / "dockerd.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                "--host",
                self.host,
                "--data-root",
                str(DATA_ROOT),
                "--exec-root",
                str(self.run_dir / "exec"),
                "--pidfile",
                str(self.run_dir / "dockerd.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def docker_engine(client: str) -> tuple[str, PrivateDockerd | None]:
    """A DOCKER_HOST that answers, and the private dockerd to stop afterwards (if any)."""
    for host in (os.environ.get("DOCKER_HOST"), "unix:///var/run/docker.sock"):
        if host and _answers(client, host):
            return host, None
    binary = shutil.which("dockerd")
    if binary is None and _apt_install("docker.io"):
        binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if binary is None or os.geteuid() != 0:
        pytest.fail(
            "a Docker engine is needed for the image tests and none answers: install docker.io "
            "(Debian: apt-get install docker.io) and run the tests as root, or set DOCKER_HOST",
            pytrace=False,
        )
    private = PrivateDockerd(binary)
    deadline = time.monotonic() + 60
    while not _answers(client, private.host):
        if private.proc.poll() is not None or time.monotonic() > deadline:
            log = (private.run_dir / "dockerd.log").read_text(errors="replace")[-2000:]
            private.stop()
            pytest.fail(f"dockerd did not start:\n{log}", pytrace=False)
        time.sleep(0.5)
    return private.host, private


def base_image(client: str, host: str) -> str:
    """BASE_IMAGE, built with mmdebstrap and imported if the engine does not have it."""
    env = {**os.environ, "DOCKER_HOST": host}
    present = subprocess.run(
        [client, "image", "inspect", BASE_IMAGE], env=env, capture_output=True, check=False
    )
    if present.returncode == 0:
        return BASE_IMAGE
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None and _apt_install("mmdebstrap"):
        mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        pytest.fail("mmdebstrap is needed to build the base image: apt-get install mmdebstrap")
    hooks = [
        # The host's extra CAs (a TLS-inspecting proxy, say), and pip told to use the store.
        'for c in /usr/local/share/ca-certificates/*.crt; do [ -e "$c" ] && '
        'cp "$c" "$1/usr/local/share/ca-certificates/"; done; true',
        'chroot "$1" update-ca-certificates',
        'printf "[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n" > "$1/etc/pip.conf"',
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "base.tar"
        command = [
            mmdebstrap,
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            *(f"--customize-hook={hook}" for hook in hooks),
            "bookworm",
            str(tarball),
        ]
        built = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if built.returncode != 0:
            pytest.fail(f"mmdebstrap failed:\n{built.stderr[-3000:]}", pytrace=False)
        imported = subprocess.run(
            [client, "import", str(tarball), BASE_IMAGE],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if imported.returncode != 0:
            pytest.fail(f"docker import failed: {imported.stderr}", pytrace=False)
    return BASE_IMAGE
