"""Against real `clave serve --workers 2` processes."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ClaveProcess, inbox_code, race_checks
from tests.support import SmtpServer, code_in, free_port, text_part

pytestmark = pytest.mark.e2e

PHONE = "+14155552671"


def with_smtp(smtp: SmtpServer) -> dict[str, str]:
    return {
        "CLAVE_SMTP_URL": smtp.url,
        "CLAVE_EMAIL_FROM": "Acme <no-reply@acme.example>",
        "CLAVE_EMAIL_PROVIDERS": "smtp",  # the dev inbox keeps the phone channels
    }


def test_apikey_create_prints_only_the_key(tmp_path: Path, serve: type[ClaveProcess]) -> None:
    server = serve(tmp_path)
    result = server.cli("apikey", "create")
    assert re.fullmatch(r"clave_[A-Za-z0-9_-]{43}\n", result.stdout)
    failed = server.cli("apikey", "create", "--service", "nope", check=False)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "no service named 'nope'" in failed.stderr


def test_service_commands(tmp_path: Path, serve: type[ClaveProcess]) -> None:
    server = serve(tmp_path)
    server.cli(
        "service",
        "create",
        "shop",
        "--friendly-name",
        "Shop",
        "--code-length",
        "8",
        "--channels",
        "email",
        "--countries",
        "es,PT",
        "--limit",
        "sends_per_ip=5/60",
    )
    listed = server.cli("service", "list").stdout
    assert re.search(
        r"^shop\tVA[0-9a-f]{32}\tlength=8 .*channels=email countries=ES,PT limits=sends_per_ip=5/60 accounts=-$",
        listed,
        re.M,
    )
    assert re.search(r"^default\t", listed, re.M)
    bad = server.cli("service", "update", "shop", "--code-length", "3", check=False)
    assert bad.returncode == 1
    assert "code_length" in bad.stderr


def test_fraud_stats_command(tmp_path: Path, serve: type[ClaveProcess]) -> None:
    server = serve(tmp_path, env={"CLAVE_COUNTRIES": "US"}).start()
    key = server.cli("apikey", "create").stdout.strip()
    r = httpx.post(
        server.url + "/api/verifications",
        json={"to": "+34612345678", "channel": "sms"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.json()["error"]["code"] == "country_not_allowed"
    out = server.cli("fraud", "stats", "--days", "2").stdout
    assert "service default, last 2 days" in out
    assert re.search(r"^country_not_allowed\s+0\s+1\s+total 1$", out, re.M), out
    assert re.search(r"^destination_blocked\s+0\s+0\s+total 0$", out, re.M), out


def test_a_bad_setting_stops_startup_naming_it(tmp_path: Path, serve: type[ClaveProcess]) -> None:
    server = serve(tmp_path, env={"CLAVE_MAX_CHECKS": "lots"})
    result = server.cli("serve", "--port", str(free_port()), check=False)
    assert result.returncode == 2
    assert "CLAVE_MAX_CHECKS" in result.stderr


def test_full_flow_over_two_workers(
    tmp_path: Path, serve: type[ClaveProcess], smtp: SmtpServer
) -> None:
    server = serve(tmp_path, env=with_smtp(smtp)).start()
    key = server.cli("apikey", "create").stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as client:
        r = client.post("/api/verifications", json={"to": "ana@example.com", "channel": "email"})
        assert r.status_code == 201, r.text
        [mail] = smtp.wait_for("ana@example.com")
        code = code_in(text_part(mail))
        r = client.post("/api/verifications/check", json={"to": "ana@example.com", "code": code})
        assert r.json()["status"] == "approved"

        r = client.post("/api/verifications", json={"to": PHONE, "channel": "sms"})
        assert r.status_code == 201
        code = inbox_code(server, PHONE)
        r = client.post("/api/verifications/check", json={"id": r.json()["id"], "code": code})
        assert r.json()["status"] == "approved"

        r = client.post("/api/messages/send-code", json={"to": "+34612345678"})
        assert r.json() == {"message": True}
        code = inbox_code(server, "+34612345678")
        r = client.post("/api/messages/verify-code", json={"to": "+34612345678", "code": code})
        assert r.json() == {"message": "approved"}


async def test_fifty_concurrent_checks_across_workers_approve_once(
    tmp_path: Path, serve: type[ClaveProcess]
) -> None:
    server = serve(tmp_path).start()
    results = await race_checks(server, server.cli("apikey", "create").stdout.strip(), PHONE)
    approved = [r for r in results if r.status_code == 200 and r.json()["status"] == "approved"]
    assert len(approved) == 1
    assert {r.status_code for r in results} <= {200, 404, 429}


def test_a_killed_worker_is_replaced_and_no_accepted_send_is_lost(
    tmp_path: Path, serve: type[ClaveProcess], smtp: SmtpServer
) -> None:
    server = serve(tmp_path, env=with_smtp(smtp)).start()
    key = server.cli("apikey", "create").stdout.strip()
    before = server.worker_pids()
    accepted: list[str] = []
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as client:
        for i in range(60):
            if i == 20:
                os.kill(before[0], signal.SIGKILL)
            to = f"user{i}@example.com"
            try:
                r = client.post("/api/verifications", json={"to": to, "channel": "email"})
            except httpx.TransportError:
                continue  # the request died with the worker: nothing was promised
            if r.status_code == 201:
                accepted.append(to)
    assert len(accepted) >= 55
    for to in accepted:
        smtp.wait_for(to, timeout=20)
    after = server.worker_pids()
    assert len(after) == 2
    assert before[0] not in after
    assert httpx.get(server.url + "/readyz").status_code == 200


def test_a_crash_between_answer_and_delivery_delivers_after_restart(
    tmp_path: Path, serve: type[ClaveProcess]
) -> None:
    smtp_port = free_port()  # nothing listens yet: delivery keeps failing and retrying
    env = {
        "CLAVE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?starttls=false",
        "CLAVE_EMAIL_FROM": "a@acme.example",
        "CLAVE_DEV_INBOX": "false",  # else the inbox, next in line for email, would take it
    }
    server = serve(tmp_path, env=env).start()
    key = server.cli("apikey", "create").stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(
        server.url + "/api/verifications",
        json={"to": "ana@example.com", "channel": "email"},
        headers=auth,
    )
    assert r.status_code == 201
    vid = r.json()["id"]
    time.sleep(0.5)
    server.kill_all()

    smtp = SmtpServer(port=smtp_port).start()
    try:
        again = serve(tmp_path, env=env)
        again.port = server.port
        again.start()
        [mail] = smtp.wait_for("ana@example.com", timeout=20)
        code = code_in(text_part(mail))
        r = httpx.post(
            again.url + "/api/verifications/check", json={"id": vid, "code": code}, headers=auth
        )
        assert r.json()["status"] == "approved"
        attempts = httpx.get(again.url + f"/api/verifications/{vid}", headers=auth).json()[
            "send_attempts"
        ]
        assert [a["status"] for a in attempts] == ["sent"]
    finally:
        smtp.stop()


def test_the_plain_code_is_nowhere_in_the_database_or_logs(
    tmp_path: Path, serve: type[ClaveProcess], smtp: SmtpServer
) -> None:
    env = {
        **with_smtp(smtp),
        "CLAVE_CODE_LENGTH": "10",
        "CLAVE_LOG_LEVEL": "debug",
        "CLAVE_ACCESS_LOG": "true",
    }
    server = serve(tmp_path, env=env).start()
    key = server.cli("apikey", "create").stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    codes = []
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as client:
        client.post("/api/verifications", json={"to": "ana@example.com", "channel": "email"})
        codes.append(code_in(text_part(smtp.wait_for("ana@example.com")[0])))
        client.post("/api/verifications", json={"to": PHONE, "channel": "sms"})
        codes.append(inbox_code(server, PHONE))
        wrong = str((int(codes[1]) + 1) % 10**10).zfill(10)
        client.post("/api/verifications/check", json={"to": PHONE, "code": wrong})
        client.post("/api/verifications/check", json={"to": PHONE, "code": codes[1]})
    assert server.terminate() == 0
    verify_files = [p for p in tmp_path.iterdir() if p.name.startswith("verify.db")]
    assert verify_files
    stored = b"".join(p.read_bytes() for p in verify_files)
    logs = server.log()
    assert "approved verification=" in logs  # the logs did record the flow
    for code in codes:
        assert len(code) == 10
        assert code.encode() not in stored
        assert code not in logs
    # Positive control: the search finds the code where it is meant to be, the dev inbox.
    inbox = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("inbox.db"))
    assert codes[1].encode() in inbox


def test_sigterm_stops_every_process_cleanly(tmp_path: Path, serve: type[ClaveProcess]) -> None:
    server = serve(tmp_path).start()
    workers = server.worker_pids()
    assert len(workers) == 2
    assert server.terminate() == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()


def test_sigterm_lets_an_in_flight_request_finish(
    tmp_path: Path, serve: type[ClaveProcess]
) -> None:
    import sqlite3
    import threading

    server = serve(tmp_path, env={"CLAVE_SHUTDOWN_GRACE": "20"}).start()
    key = server.cli("apikey", "create").stdout.strip()
    # Hold verify's write lock: the next send waits for it (busy_timeout), in flight.
    blocker = sqlite3.connect(tmp_path / "verify.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    result: dict[str, httpx.Response] = {}

    def send() -> None:
        result["r"] = httpx.post(
            server.url + "/api/verifications",
            json={"to": PHONE, "channel": "sms"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    request = threading.Thread(target=send)
    request.start()
    time.sleep(1.0)
    assert "r" not in result  # still waiting on the lock
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert server.proc.poll() is None  # waiting for the request, not killed
    blocker.execute("COMMIT")
    blocker.close()
    request.join(timeout=20)
    assert result["r"].status_code == 201
    assert server.proc.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/healthz", timeout=2)
