"""A fixed-rate (open-loop) HTTP/1.1 load generator, the way wrk2 works: wrk cannot hold a rate.

Request k is due at `start + k / rate`; the requests are dealt round robin over keep-alive
connections, so each connection sends one every `connections / rate` seconds and waits for the
answer before its next. A request is sent when it is due, or at once when its connection's
previous answer comes late; its latency is measured from when it was due, not from when it
went out, so a server that stalls is charged for the whole queue it caused (no coordinated
omission). The generator's own lateness (how long after its due time a request left on an idle
connection) is reported too: when that grows, the generator, not the server, is the limit.

Run as `python -m bench.openloop SPEC.json` (the bench pins it to one core); the spec names the
host, port, rate, duration, connection count and the raw requests to cycle through; one line of
JSON comes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any, cast

from bench.procs import other_load, pinned


class Load:
    """One run: the schedule, the connections and what they measured."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.host: str = spec["host"]
        self.port: int = int(spec["port"])
        self.rate = float(spec["rate"])
        self.total = max(1, int(self.rate * float(spec["duration"])))
        self.connections = min(int(spec["connections"]), self.total)
        self.requests = [r.encode("latin-1") for r in spec["requests"]]
        self.latency = array("d")
        self.lag = array("d")
        self.non2xx = 0
        self.errors = 0
        self.sent = 0
        self.start = 0.0  # the schedule's start on loop.time(), which timers run on
        self.clock_start = 0.0  # the same instant on perf_counter(), which measures
        self.last = 0.0
        self.pending = 0
        self.done: asyncio.Future[None] | None = None

    def due(self, k: int) -> float:
        """When request k is due, on the loop's clock (for call_at)."""
        return self.start + k / self.rate

    def late(self, k: int) -> float:
        """How long ago request k was due, on perf_counter (finer than the loop's clock)."""
        return time.perf_counter() - self.clock_start - k / self.rate

    def finished_one(self) -> None:
        self.pending -= 1
        if self.pending == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def run(self) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        conns = []
        for index in range(self.connections):
            _, conn = await loop.create_connection(lambda: Conn(self), self.host, self.port)
            conn.first = index
            conns.append(conn)
        self.pending = self.connections
        # Start a little ahead so every connection's first request is scheduled, not late.
        self.start, self.clock_start = loop.time() + 0.05, time.perf_counter() + 0.05
        for conn in conns:
            conn.next = conn.first
            loop.call_at(self.due(conn.next), conn.send)
        duration = self.total / self.rate
        with contextlib.suppress(TimeoutError):  # what is still unanswered then counts as errors
            await asyncio.wait_for(asyncio.shield(self.done), duration + 5.0)
        elapsed = time.perf_counter() - self.clock_start
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
        unanswered = self.sent - len(self.latency) - self.errors
        lat = sorted(self.latency)
        lag = sorted(self.lag)
        return {
            "rate": self.rate,
            "scheduled": self.total,
            "sent": self.sent,
            "completed": len(lat),
            "non2xx": self.non2xx,
            "errors": self.errors + unanswered,
            "seconds": elapsed,
            # Answers per second over the schedule's span (it ends when the last one is due).
            "rps": len(lat) / max(duration, 1e-9),
            "p50_ms": pct(lat, 0.50) * 1000,
            "p99_ms": pct(lat, 0.99) * 1000,
            "p999_ms": pct(lat, 0.999) * 1000,
            "max_ms": (lat[-1] if lat else float("nan")) * 1000,
            "lag_p50_ms": pct(lag, 0.50) * 1000,
            "lag_p99_ms": pct(lag, 0.99) * 1000,
            "last_answer_s": self.last,
        }


def pct(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(share * len(values)))]


class Conn(asyncio.Protocol):
    """One keep-alive connection: sends its share of the schedule, one request in flight."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.first = 0
        self.next = 0
        self.in_flight = -1  # the k being answered, -1 when idle
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self) -> None:
        load = self.load
        k = self.next
        if k >= load.total or self.transport is None or self.transport.is_closing():
            self.stop()
            return
        load.lag.append(max(0.0, load.late(k)))
        self.write(k)

    def write(self, k: int) -> None:
        load = self.load
        self.in_flight = k
        load.sent += 1
        assert self.transport is not None
        self.transport.write(load.requests[k % len(load.requests)])

    def stop(self) -> None:
        if self.in_flight != -2:
            self.in_flight = -2
            self.load.finished_one()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.in_flight >= 0:
            size, status = response_size(self.buffer)
            if size == 0:
                return
            del self.buffer[:size]
            self.answered(status)

    def answered(self, status: int) -> None:
        load = self.load
        k = self.in_flight
        latency = load.late(k)
        load.latency.append(latency)
        load.last = latency + k / load.rate
        if not 200 <= status < 300:
            load.non2xx += 1
        self.in_flight = -1
        self.next = k + load.connections
        if self.next >= load.total:
            self.stop()
        elif load.late(self.next) >= 0:
            self.write(self.next)  # late: its answer came after it was due; the clock runs on
        else:
            self.loop.call_at(load.due(self.next), self.send)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight >= 0:
            self.load.errors += 1
        self.transport = None
        self.stop()


def response_size(buffer: bytearray) -> tuple[int, int]:
    """(bytes of the first complete response in buffer, its status), or (0, 0) if incomplete.
    Content-Length and chunked bodies: what the servers measured here answer with."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return 0, 0
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else None])
        size = end + 4 + length
        return (size, status) if len(buffer) >= size else (0, 0)
    if b"\r\ntransfer-encoding: chunked" in head:
        pos = end + 4
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return 0, 0
            chunk = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2 + chunk + 2
            if len(buffer) < pos:
                return 0, 0
            if chunk == 0:
                return pos, status
    return end + 4, status


def run_fixed_rate(
    host: str, port: int, rate: float, duration: float, requests: list[str], connections: int
) -> dict[str, float]:
    """Run the generator pinned to core 0 (this module, in a process of its own)."""
    with tempfile.TemporaryDirectory(prefix="clave-bench-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "host": host,
                    "port": port,
                    "rate": rate,
                    "duration": duration,
                    "connections": connections,
                    "requests": requests,
                }
            )
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        usage: dict[str, float] = {}
        with other_load(usage):
            out = subprocess.run(
                [*pinned(0), sys.executable, "-m", "bench.openloop", str(spec)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result | usage


def main() -> None:
    # The standard loop: its timers run on a sub-millisecond clock (uvloop's step by 1 ms,
    # which puts up to a millisecond of the generator's own lateness on every latency).
    result = asyncio.run(Load(json.loads(Path(sys.argv[1]).read_text())).run())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
