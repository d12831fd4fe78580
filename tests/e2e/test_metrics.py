"""/metrics from a real `clave serve --workers 2`: after a known flow (a send, a wrong check, a
right check, a refused send) each counter moved by exactly what was done, summed across both
workers; nothing in it names a destination or a code."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ClaveProcess, inbox_code
from tests.support import RecordingServer, free_port

pytestmark = pytest.mark.e2e

TO = "+34612345678"


def samples(server: ClaveProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    page = httpx.get(server.url + "/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(page.text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls)


def test_counters_move_by_what_was_done_across_workers(
    tmp_path: Path, serve: type[ClaveProcess]
) -> None:
    server = serve(tmp_path, env={"CLAVE_BLOCKED_PREFIXES": "+1415555"}).start()
    assert len(server.worker_pids()) == 2
    key = server.cli("apikey", "create").stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    before = samples(server)
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as client:
        made = client.post("/api/verifications", json={"to": TO, "channel": "sms"})
        assert made.status_code == 201
        code = inbox_code(server, TO)
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        pending = client.post("/api/verifications/check", json={"to": TO, "code": wrong})
        assert pending.json()["status"] == "pending"
        approved = client.post(
            "/api/verifications/check", json={"id": made.json()["id"], "code": code}
        )
        assert approved.json()["status"] == "approved"
        refused = client.post("/api/verifications", json={"to": "+14155552671", "channel": "sms"})
        assert refused.status_code == 403
        # Many plain reads: both workers answer some.
        for _ in range(40):
            client.get("/healthz")
    deadline = time.monotonic() + 10
    while True:  # the dispatcher reports the send once it went out
        after = samples(server)
        if (
            value(after, "clave_sends_total", status="sent")
            - value(before, "clave_sends_total", status="sent")
            >= 1
        ):
            break
        assert time.monotonic() < deadline, "the send was never counted"
        time.sleep(0.1)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("clave_verifications_started_total", service="default", channel="sms") == 1
    assert moved("clave_checks_total", service="default", outcome="pending") == 1
    assert moved("clave_checks_total", service="default", outcome="approved") == 1
    assert moved("clave_checks_total") == 2
    assert moved("clave_refusals_total", reason="destination_blocked") == 1
    assert moved("clave_sends_total", channel="sms", provider="inbox", status="sent") == 1
    assert moved("clave_delivery_seconds_count", channel="sms", provider="inbox") == 1
    assert (
        moved(
            "clave_http_request_duration_seconds_count",
            method="POST",
            route="/api/verifications",
            status="201",
        )
        == 1
    )
    assert (
        moved(
            "clave_http_request_duration_seconds_count",
            method="POST",
            route="/api/verifications/check",
            status="200",
        )
        == 2
    )
    assert moved("clave_http_request_duration_seconds_count", route="/healthz") >= 40
    assert moved("clave_store_operation_seconds_count", backend="sqlite", operation="start") == 1
    # Each worker writes its own values, /metrics sums them: both workers wrote.
    files = list((server.data_dir / f"metrics-{server.port}").glob("*.db"))
    writers = {f.stem.rsplit("_", 1)[-1] for f in files}
    assert writers >= {str(pid) for pid in server.worker_pids()}, (files, server.worker_pids())
    # Labels never carry a destination or a code.
    page = httpx.get(server.url + "/metrics").text
    for secret in (TO, TO[1:], "14155552671", code, key):
        assert secret not in page


def test_json_logs_are_one_object_per_line(tmp_path: Path, serve: type[ClaveProcess]) -> None:
    server = serve(tmp_path, env={"CLAVE_LOG_FORMAT": "json", "CLAVE_ACCESS_LOG": "true"}).start()
    key = server.cli("apikey", "create").stdout.strip()
    sent = httpx.post(
        server.url + "/api/verifications",
        json={"to": TO, "channel": "sms"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert sent.status_code == 201
    inbox_code(server, TO)
    server.stop()
    # Every line clave and granian write (not the warnings the suite's coverage tool prints
    # into the same stream when it measures the server).
    lines = [
        line
        for line in server.log().splitlines()
        if line.strip() and "CoverageWarning" not in line and "self.warn(" not in line
    ]
    parsed = [json.loads(line) for line in lines]
    assert any(p["message"].startswith("worker ready") for p in parsed)
    assert any("sent verification=" in p["message"] for p in parsed)
    assert TO not in server.log()  # masked, in the access log too


def test_a_real_prometheus_scrapes_every_component_of_clave_up(
    tmp_path: Path, clave_up: Any, prometheus_bins: tuple[str, str]
) -> None:
    """Prometheus (Debian's) scrapes `clave up`'s components directly, and its HTTP API then
    answers clave_verifications_started_total for a send made through the load balancer."""
    server_bin, _ = prometheus_bins
    stack = clave_up("split")
    components = stack.state()["components"]
    targets = [f"127.0.0.1:{c['port']}" for c in components.values()]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: clave\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [
            server_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        key = stack.cli("apikey", "create").stdout.strip()
        sent = httpx.post(
            stack.url + "/api/verifications",
            json={"to": TO, "channel": "sms"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert sent.status_code == 201, sent.text

        def scraped(query: str) -> list[dict[str, Any]]:
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"{api}/query", params={"query": query}, timeout=5).json()
                if answer.get("status") == "success":
                    result: list[dict[str, Any]] = answer["data"]["result"]
                    return result
            return []

        deadline = time.monotonic() + 60
        while True:  # until every component has been scraped since the send
            found = scraped("sum(clave_verifications_started_total)")
            up = {r["metric"]["instance"]: r["value"][1] for r in scraped("up")}
            if found and set(up) == set(targets):
                break
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-3000:]
            time.sleep(0.5)
        assert float(found[0]["value"][1]) == 1
        assert set(up.values()) == {"1"}  # every component answers /metrics
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=20)
        log.close()


def spans_of(receiver: RecordingServer) -> list[tuple[str, str, str, list[str]]]:
    """(service, trace id, span name, linked trace ids) of every span the stand-in got."""
    found = []
    for request in receiver.requests:
        if request["path"] != "/v1/traces":
            continue
        export = ExportTraceServiceRequest()
        export.ParseFromString(request["body"])
        for resource_spans in export.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    links = [link.trace_id.hex() for link in s.links]
                    found.append((service, s.trace_id.hex(), s.name, links))
    return found


def test_one_trace_across_users_and_verify(tmp_path: Path, clave_up: Any) -> None:
    """The split topology with an OTLP/HTTP endpoint (a stand-in here): a forum user's code,
    asked of users and sent by verify, is one trace across both; its delivery links to it."""
    receiver = RecordingServer()
    receiver.default = (200, {})
    try:
        stack = clave_up(
            "split",
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        )
        signed_up = httpx.post(
            stack.url + "/api/users",
            json={"username": "tracy", "name": "Tracy", "phone": "+14155550161"},
            timeout=10,
        ).json()
        started = httpx.post(
            f"{stack.url}/api/users/{signed_up['id']}/verification",
            json={"channel": "sms"},
            headers={"Authorization": f"Bearer {signed_up['token']}"},
            timeout=10,
        )
        assert started.status_code == 201, started.text
        deadline = time.monotonic() + 30
        while True:
            spans = spans_of(receiver)
            by_trace: dict[str, set[str]] = {}
            for service, trace_id, _, _ in spans:
                by_trace.setdefault(trace_id, set()).add(service)
            joint = [
                t for t, services in by_trace.items() if {"clave-users", "clave-verify"} <= services
            ]
            delivered = [s for s in spans if s[2] == "deliver" and set(s[3]) & set(joint)]
            if joint and delivered:
                break
            assert time.monotonic() < deadline, spans
            time.sleep(0.2)
        names = {name for _, trace_id, name, _ in spans if trace_id in joint}
        assert any(n.startswith("POST /api/users/") for n in names), names
        assert "POST /api/verifications" in names, names
        assert any(n.startswith("redis ") or n.startswith("sqlite ") for n in names), names
        assert any(s[2].startswith("send ") for s in spans), spans
    finally:
        receiver.stop()
