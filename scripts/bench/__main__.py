"""`make bench`: clave and the Node anchors of ../shared/bench, side by side, in one run.

Every server runs with one worker pinned to core 1 and is driven from core 0 (wrk -t1, 64
connections, DURATION seconds each, default 10; DURATION=3 for a quick look), one server at a
time. The table gives req/s, p50 and p99 and non-2xx answers per server, and on clave's line the
ratio to its anchor with the goal of issue 13:

- GET /api/users (SQLite, seeded) against the original sample's Koa server;
- a check of a wrong code on SQLite and on Redis against node-verify (Node `http` with
  better-sqlite3 or ioredis), and the bare endpoints (clave /healthz, Node /health);
- a send (create) on SQLite and on Redis, with delivery into the dev inbox, as a share of
  clave's bare endpoint;
- p99 of the check at 70% of the rate it saturated at, held by an open-loop generator
  (bench.openloop); the check with `clave serve --workers 2` (unpinned) against one worker;
- the worker's memory after the load.

Limits, the fraud guard and events stay on and count as in production (limits raised so they
never refuse, events posted to a local sink). Redis runs when one answers at BENCH_REDIS_URL or
127.0.0.1:6379; the anchors when node and npm are there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from bench import anchors
from bench.clave import BUDGET, MAX_CHECKS, Clave
from bench.procs import ALSO_MEASURED, events_received, events_sink
from bench.report import Line, ratio, render
from bench.wrk import CONNECTIONS, find_wrk

DURATION = int(os.environ.get("DURATION", "10"))
TAIL_SHARE = 0.7  # the fixed rate, as a share of the saturated one
TAIL_GOAL_MS = 10.0
RSS_GOAL_MIB = 80.0
NOISY = 0.15  # others' share of a core that makes a run suspect


def redis_url() -> str | None:
    """A Redis for the Redis-store run: BENCH_REDIS_URL or 127.0.0.1:6379, if one answers."""
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


def redis_pid(url: str) -> int | None:
    """The Redis server's process, when it runs on this machine (its CPU is the run's)."""
    import redis

    if anchors.redis_port(url) is None:
        return None
    info = redis.Redis.from_url(url).info("server")
    return int(info["process_id"])


def drop_keys(url: str, pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=pattern, count=1000):
        client.delete(key)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


Result = dict[str, float]


def run_anchors(wrk: str, redis: str | None, notes: list[str]) -> dict[str, Result | str]:
    """The anchors' figures by name, or why there are none (then a note says more)."""
    out: dict[str, Result | str] = dict.fromkeys(
        ("users", "check_sqlite", "bare", "check_redis"), "skipped"
    )
    node, why = anchors.find_node()
    if node is None:
        notes.append(f"anchors skipped: {why}; clave's figures are measured all the same")
        return out
    koa, why_koa = anchors.install("seed-koa", node)
    if koa is None:
        notes.append(f"seed-koa skipped: {why_koa}")
    else:
        log("seed-koa: GET /api/users")
        out["users"] = attempt(
            notes, "seed-koa", lambda: anchors.koa_users(wrk, node, koa, DURATION)
        )
    verify, why_verify = anchors.install("node-verify", node)
    if verify is None:
        notes.append(f"node-verify skipped: {why_verify}")
        return out
    log("node-verify STORE=sqlite: check, /health")
    sqlite = attempt(
        notes,
        "node-verify (SQLite)",
        lambda: anchors.node_verify(wrk, node, verify, "sqlite", DURATION),
    )
    if not isinstance(sqlite, str):
        out["check_sqlite"], out["bare"] = sqlite["check"], sqlite["bare"]
    port = anchors.redis_port(redis) if redis else None
    if redis is None:
        out["check_redis"] = "no Redis"
    elif port is None:
        notes.append("node-verify on Redis skipped: it reaches 127.0.0.1, db 0, no password only")
    else:
        log("node-verify STORE=redis: check")
        try:
            found = attempt(
                notes,
                "node-verify (Redis)",
                lambda: anchors.node_verify(wrk, node, verify, "redis", DURATION, redis_port=port),
            )
            if not isinstance(found, str):
                out["check_redis"] = found["check"]
        finally:
            drop_keys(redis, "v:+15551234567")
    return out


T = TypeVar("T")


def attempt(notes: list[str], name: str, run: Callable[[], T]) -> T | str:
    """An anchor's run, or "failed" with a note: clave's figures are printed all the same."""
    try:
        return run()
    except (OSError, RuntimeError, subprocess.SubprocessError, StopIteration) as exc:
        notes.append(f"{name} failed: {exc}")
        return "failed"


def run_clave(
    wrk: str, label: str, store_env: dict[str, str], events_url: str, *, full: bool
) -> dict[str, Result]:
    """clave on one store: (with `full`, bare, users and the v2 sends too,) sends, the check
    saturated and at a fixed rate, and (with `full`) the check on two workers."""
    clave = Clave(label, store_env, events_url)
    out: dict[str, Result] = {}
    try:
        clave.start(1)
        time.sleep(1)
        out["rss_idle"] = {"mib": clave.rss()[0]}
        if full:
            log(f"clave {label}: GET /healthz, GET /api/users")
            out["bare"] = clave.get(wrk, "/healthz", DURATION)
            out["users"] = clave.get(wrk, "/api/users", DURATION)
        log(f"clave {label}: create")
        out["create"] = clave.create(wrk, DURATION)
        log(f"clave {label}: check ({len(clave.pool)} verifications to check)")
        out["check"] = check = clave.check_saturated(wrk, DURATION)
        rate = TAIL_SHARE * check["rps"]
        log(f"clave {label}: check at {rate:.0f}/s")
        out["tail"] = clave.check_fixed_rate(wrk, rate, DURATION)
        if full:
            log(f"clave {label}: create through /v2")
            out["create_v2"] = clave.create_v2(wrk, DURATION)
        out["rss"] = {"mib": max(clave.rss())}
        if full:
            log(f"clave {label}: check on --workers 2")
            clave.start(2)
            out["check_2"] = clave.check_saturated(wrk, DURATION)
            out["check_2"]["rss_mib"] = max(clave.rss())
        out["pool"] = {
            "size": len(clave.pool),
            "most": clave.pool.most(),
            "topped_up": clave.topped_up,
        }
    finally:
        clave.close()
    return out


def main() -> None:
    wrk = find_wrk()
    redis = redis_url()
    pid = redis_pid(redis) if redis else None
    if pid:
        ALSO_MEASURED.add(pid)
    notes: list[str] = []
    started = time.monotonic()
    anchor = run_anchors(wrk, redis, notes)
    with events_sink() as events_url:
        sq = run_clave(wrk, "SQLite", {}, events_url, full=True)
        rd: dict[str, Result] = {}
        if redis:
            prefix = f"bench{os.getpid()}:"
            store = {"CLAVE_VERIFY_STORE": redis, "CLAVE_REDIS_PREFIX": prefix}
            try:
                rd = run_clave(wrk, "Redis", store, events_url, full=False)
            finally:
                drop_keys(redis, prefix + "*")
        else:
            notes.append("Redis: none answered at BENCH_REDIS_URL or 127.0.0.1:6379: no Redis run")
    lines = table(sq, rd, anchor)
    print(
        f"clave serve --workers 1 and the Node anchors, one at a time, each pinned to core 1; "
        f"wrk -t1 -c{CONNECTIONS} pinned to core 0; {DURATION} s a run; {os.cpu_count()} cores"
    )
    print(render(lines))
    python = os.environ.get("CLAVE_BENCH_PYTHON")
    print(
        f"clave ran from {python} (runtime dependencies only)"
        if python
        else f"clave ran from {sys.executable} (with the test tools: more memory than deployed)"
    )
    print(
        "others: the CPU that went to anything but the server, its Redis and the load generator "
        "during the run, as a share of one core (the machine may be shared)"
    )
    noisy = [
        f"{line.work or '?'} ({line.who}) {line.result['other_cores']:.0%}"
        for line in lines
        if line.result and line.result.get("other_cores", 0) > NOISY
    ]
    if noisy:
        print(f"NOISY: more than {NOISY:.0%} of a core went elsewhere in: " + "; ".join(noisy))
    for label, runs in (("SQLite", sq), ("Redis", rd)):
        if not runs:
            continue
        pool = runs["pool"]
        print(
            f"check ({label}): wrong codes, by id, each with a client_ip, on {pool['size']:.0f} "
            f"pending verifications (CLAVE_MAX_CHECKS={MAX_CHECKS}); over all of this store's "
            f"runs each got at most {pool['most']:.0f} checks ({BUDGET} keep it pending)"
            + (f", {pool['topped_up']:.0f} of them sent just for that" if pool["topped_up"] else "")
        )
        tail = runs["tail"]
        # The generator keeps its schedule when what it sends on an idle connection leaves on
        # time (1 ms is the event loop's timer step); the server keeps up when every answer is
        # in within half a second of the last one being due.
        generator = "kept" if tail["lag_p99_ms"] <= 2.0 else "did NOT keep (its p99 is suspect)"
        server_ok = (
            tail["completed"] >= tail["scheduled"] and tail["last_answer_s"] <= DURATION + 0.5
        )
        print(
            f"fixed rate ({label}): {tail['rate']:.0f}/s for {DURATION} s on {CONNECTIONS} "
            f"connections, {tail['completed']:.0f} of {tail['scheduled']:.0f} answered, the "
            f"last {tail['last_answer_s']:.2f} s in ("
            + ("the server kept up" if server_ok else "the server did NOT keep up")
            + f"); p99.9 {tail['p999_ms']:.1f} ms, max {tail['max_ms']:.1f} ms; the generator "
            f"{generator} its schedule (sent late by p50 {tail['lag_p50_ms']:.2f} ms, "
            f"p99 {tail['lag_p99_ms']:.2f} ms)"
        )
        create = runs["create"]
        print(
            f"create ({label}): the dev inbox had every message {create['drain_s']:.1f} s after "
            f"the run; worker RSS {runs['rss_idle']['mib']:.0f} MiB idle, "
            f"{runs['rss']['mib']:.0f} MiB after load"
        )
    if "check_2" in sq:
        print(f"--workers 2: largest worker RSS {sq['check_2']['rss_mib']:.0f} MiB after its run")
    print(
        f"events: on, to a local sink, which took {events_received()} posts (an event is due "
        "when a verification reaches a final status, which no run here makes happen)"
    )
    for note in notes:
        print(note)
    print(f"({time.monotonic() - started:.0f} s in all)")


def table(
    sq: dict[str, Result], rd: dict[str, Result], anchor: dict[str, Result | str]
) -> list[Line]:
    lines: list[Line] = []

    def pair(work: str, ours: Result | None, who: str, theirs: Result | str, goal: float) -> None:
        line = Line(work, "clave", ours, note="no Redis" if ours is None else "")
        if isinstance(theirs, dict) and ours is not None:
            line.ratio, line.goal, line.met = ratio(ours["rps"] / theirs["rps"], goal)
            if goal == 0:
                line.goal, line.met = "(ceiling)", None
        lines.append(line)
        lines.append(
            Line(work, who, theirs if isinstance(theirs, dict) else None, note=str(theirs))
        )

    pair("GET /api/users (seeded)", sq["users"], "seed-koa (Koa 1)", anchor["users"], 1.0)
    pair(
        "check wrong code, SQLite",
        sq["check"],
        "node-verify, better-sqlite3",
        anchor["check_sqlite"],
        1.0,
    )
    pair(
        "check wrong code, Redis",
        rd.get("check"),
        "node-verify, ioredis",
        anchor["check_redis"],
        0.5,
    )
    pair("bare endpoint", sq["bare"], "node http /health", anchor["bare"], 0)
    lines[-2].who = "clave /healthz"
    bare = sq["bare"]["rps"]
    for work, runs, key, goal in (
        ("create (send), SQLite", sq, "create", 0.15),
        ("create (send), Redis", rd, "create", 0.15),
        ("create, Twilio v2, SQLite", sq, "create_v2", 0.0),
    ):
        if key not in runs:
            lines.append(Line(work, "clave", None, note="no Redis"))
            continue
        text, goal_text, met = ratio(runs[key]["rps"] / bare, goal, share=True)
        lines.append(
            Line(
                work,
                "clave",
                runs[key],
                ratio=text,
                goal=goal_text if goal else "",
                met=met if goal else None,
            )
        )
    if "check_2" in sq:
        gain = sq["check_2"]["rps"] / sq["check"]["rps"]
        lines.append(
            Line(
                "check SQLite, --workers 2",
                "clave (unpinned)",
                sq["check_2"],
                ratio=f"gain {gain:.2f}x",
                goal="(no goal)",
            )
        )
    for label, runs in (("SQLite", sq), ("Redis", rd)):
        work = f"check at {TAIL_SHARE:.0%} rate, {label}"
        if "tail" not in runs:
            lines.append(Line(work, "clave", None, note="no Redis"))
            continue
        tail = runs["tail"]
        lines.append(
            Line(
                work,
                f"clave, {tail['rate']:.0f}/s open loop",
                tail,
                ratio=f"p99 {tail['p99_ms']:.1f} ms",
                goal=f"<= {TAIL_GOAL_MS:.0f} ms",
                met=tail["p99_ms"] <= TAIL_GOAL_MS,
            )
        )
    for label, runs in (("SQLite", sq), ("Redis", rd)):
        if "rss" in runs:
            mib = runs["rss"]["mib"]
            lines.append(
                Line(
                    "worker RSS after load",
                    f"clave, {label}",
                    None,
                    ratio=f"{mib:.0f} MiB",
                    goal=f"<= {RSS_GOAL_MIB:.0f} MiB",
                    met=mib <= RSS_GOAL_MIB,
                )
            )
    return lines


if __name__ == "__main__":
    main()
