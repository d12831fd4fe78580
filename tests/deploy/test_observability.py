"""The alert rules, the dashboard and the compose profile `observability` (under
infrastructure/observability): the rules are valid and their unit tests pass (promtool), and
every query reads a metric clave exports."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from prometheus_client import CollectorRegistry

from clave.platform.metrics import Metrics
from tests.deploy.conftest import ROOT

pytestmark = pytest.mark.e2e
HERE = ROOT / "infrastructure" / "observability"
_NAME = re.compile(r"\bclave_[a-z_]+")


def exported() -> set[str]:
    """Every series name clave's /metrics may carry (with the suffixes of each type)."""
    names = set()
    registry: CollectorRegistry = Metrics().registry
    for family in registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


def test_the_alert_rules_are_valid_and_pass_their_tests(prometheus_bins: tuple[str, str]) -> None:
    _, promtool = prometheus_bins
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(
            [promtool, *args], cwd=HERE, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout
    rules = yaml.safe_load((HERE / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "ClaveDeliveryFailing",
        "ClaveOutboxBacklog",
        "ClaveApprovalFallingWhileSendsRise",
        "ClaveServerErrors",
        "ClaveRefusalsSpiking",
    }
    used = {name for r in rules for name in _NAME.findall(r["expr"])}
    assert used <= exported(), used - exported()


def test_the_dashboard_reads_clave_metrics() -> None:
    dashboard = json.loads((HERE / "grafana" / "dashboards" / "clave.json").read_text())
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in ("Sends per channel", "Approval ratio", "Delivery latency", "Refusals by reason"):
        assert any(t.startswith(wanted) for t in titles), titles
    assert any("Outbox" in t for t in titles)
    assert any("by route" in t for t in titles)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in _NAME.findall(e)}
    assert used <= exported(), used - exported()
    assert any("histogram_quantile(0.95" in e for e in exprs)
    assert any("histogram_quantile(0.5" in e for e in exprs)


def test_the_prometheus_config_is_valid(prometheus_bins: tuple[str, str]) -> None:
    _, promtool = prometheus_bins
    # As the container mounts them: the config names the rules at /etc/prometheus.
    config = yaml.safe_load((HERE / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert set(targets) == {
        f"{s}:8000" for s in ("monolith", "verify", "users", "threads", "posts")
    }
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", "prometheus.yml"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
