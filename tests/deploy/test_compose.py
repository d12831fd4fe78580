"""docker-compose.yml: valid for both profiles, and its gateway config valid for haproxy."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import ROOT, tool
from tests.services import _apt_install

ENV = {
    "CLAVE_HMAC_KEYS": "k1:" + "A" * 44,
    "CLAVE_VERIFY_KEY": "ck_" + "b" * 48,
    "POSTGRES_PASSWORD": "p@ss/w:rd " + "c" * 24,  # what would break a URL, on purpose
}


@pytest.fixture(scope="module")
def compose() -> str:
    found = shutil.which("docker-compose")
    if found is None and _apt_install("docker-compose"):
        found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is needed: apt-get install docker-compose", pytrace=False)
    return found


def _config(
    compose: str, profile: str, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLAVE_", "POSTGRES_"))}
    return subprocess.run(
        [compose, "--profile", profile, "config", *extra],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("profile", ["monolith", "split", "observability"])
def test_compose_config_is_valid(compose: str, profile: str) -> None:
    result = _config(compose, profile, ENV, "-q")
    assert result.returncode == 0, result.stderr


def test_profiles_start_the_right_services(compose: str) -> None:
    # (docker-compose 1.29's `config --services` lists every profile's; read the profiles.)
    def services(profile: str) -> set[str]:
        result = _config(compose, profile, ENV)
        assert result.returncode == 0, result.stderr
        defined = yaml.safe_load(result.stdout)["services"]
        return {n for n, s in defined.items() if profile in s.get("profiles", [profile])}

    assert services("monolith") == {"redis", "postgres", "monolith"}
    assert services("split") == {
        "redis",
        "postgres",
        "verify",
        "users",
        "threads",
        "posts",
        "gateway-config",
        "gateway",
    }
    # Prometheus and Grafana, provisioned from infrastructure/observability.
    assert services("observability") == {"redis", "postgres", "prometheus", "grafana"}
    result = _config(compose, "observability", ENV)
    defined = yaml.safe_load(result.stdout)["services"]
    mounts = [str(v) for s in ("prometheus", "grafana") for v in defined[s]["volumes"]]
    for source in ("prometheus.yml", "alerts.yml", "grafana/provisioning", "grafana/dashboards"):
        assert any(source in m for m in mounts), (source, mounts)


@pytest.mark.parametrize("profile", ["monolith", "split"])
@pytest.mark.parametrize("missing", sorted(ENV))
def test_missing_secret_is_refused_by_name(compose: str, profile: str, missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    result = _config(compose, profile, env, "-q")
    assert result.returncode != 0
    assert missing in result.stderr


@pytest.mark.parametrize("profile", ["monolith", "split"])
def test_database_password_is_the_one_given_and_in_no_url(compose: str, profile: str) -> None:
    result = _config(compose, profile, ENV)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == ENV["POSTGRES_PASSWORD"]
    clave = [s for s in services.values() if "CLAVE_USERS_DB" in s.get("environment", {})]
    assert clave
    for service in clave:
        env = service["environment"]
        assert env["PGPASSWORD"] == ENV["POSTGRES_PASSWORD"]  # asyncpg reads it
        for domain in ("USERS", "THREADS", "POSTS"):
            assert env[f"CLAVE_{domain}_DB"].startswith("postgresql://clave@postgres:5432/")


def test_gateway_config_from_the_routing_table_is_valid_haproxy(
    compose: str, haproxy_bin: str, tmp_path: Path
) -> None:
    result = _config(compose, "split", ENV)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    gateway = config["services"]["gateway-config"]
    script = gateway["command"][0] if isinstance(gateway["command"], list) else gateway["command"]
    clave_args, _, target = script.partition(">")
    assert target.strip() == "/var/lib/clave/haproxy.cfg"
    args = shlex.split(clave_args)
    assert args[0] == "clave"
    # Run the same command here, with this checkout's table, and let haproxy check the result.
    rendered = subprocess.run(
        [
            tool("clave"),
            *args[1:],
            "--routes",
            str(ROOT / "routes.toml"),
            "--stats-socket",
            str(tmp_path / "admin.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert rendered.returncode == 0, rendered.stderr
    for name in ("verify", "users", "threads", "posts"):
        assert f"server {name} {name}:8000" in rendered.stdout
    # Names resolved at run time through Docker's DNS; unresolvable here, so the servers
    # start down instead of haproxy refusing the config.
    assert "nameserver dns1 127.0.0.11:53" in rendered.stdout
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(rendered.stdout)
    checked = subprocess.run(
        [haproxy_bin, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
