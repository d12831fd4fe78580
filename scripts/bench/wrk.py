"""The closed-loop runs: wrk (one thread, pinned to core 0) and the Lua scripts it runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.procs import other_load, pinned

CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))

# done() prints one JSON line; `sent` is how many requests the script's request() built (a
# completed count misses those still in flight when wrk stopped, which the server may count).
REPORT = """
local threads_ = {}
setup = function(thread) table.insert(threads_, thread) end
done = function(summary, latency, requests)
  local s = summary
  local sent = 0
  for _, t in ipairs(threads_) do sent = sent + (tonumber(t:get("sent")) or 0) end
  io.write(string.format('{"requests": %d, "sent": %d, "seconds": %f, "p50_ms": %f, '
    .. '"p99_ms": %f, "non2xx": %d, "socket_errors": %d}\\n',
    s.requests, sent, s.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, s.errors.status,
    s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout))
end
"""

AREAS = [201, 202, 206, 212, 213, 305, 310, 312, 404, 415, 503, 512, 602, 617, 646, 702, 713, 718]

# Sends to US numbers none of the other runs uses (each run gets its own BASE), each from one
# of 250 end-user addresses (`client_ip`, as a backend passes its user's).
CREATE = """
local areas = {AREAS}
sent = 0
request = function()
  sent = sent + 1
  local n = sent * 7 + BASE
  local area = areas[(n % #areas) + 1]
  local number = string.format("+1%d%03d%04d", area, 200 + (math.floor(n / #areas) % 800),
    math.floor(n / (#areas * 800)) % 10000)
  return wrk.format("POST", "/api/verifications", nil,
    '{"to":"' .. number .. '","channel":"sms","client_ip":"198.51.100.' .. (sent % 250 + 1)
    .. '"}')
end
""".replace("AREAS", ",".join(map(str, AREAS)))

# The same sends through the Twilio-compatible API (form body, Basic auth).
V2_CREATE = CREATE.replace('"/api/verifications"', '"/v2/Services/SERVICE/Verifications"').replace(
    """'{"to":"' .. number .. '","channel":"sms","client_ip":"198.51.100.' .. (sent % 250 + 1)
    .. '"}'""",
    '"To=%2B" .. number:sub(2) .. "&Channel=sms"',
)

# Bodies (one a line in the file BODIES) cycled in order from OFFSET: the pool of checks of
# wrong codes (see clave.Pool).
CYCLE = """
local bodies = {}
for line in io.lines(BODIES) do table.insert(bodies, line) end
sent = 0
request = function()
  local body = bodies[((OFFSET + sent) % #bodies) + 1]
  sent = sent + 1
  return wrk.format("METHOD", "PATH", nil, body)
end
"""

# A fixed request (GET endpoints, the anchors' check).
FIXED = """
sent = 0
request = function()
  sent = sent + 1
  return wrk.format("METHOD", "PATH", nil, BODY)
end
"""


def find_wrk() -> str:
    """wrk on PATH, installed from Debian's packages when missing and possible."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("installing wrk with apt-get ...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("make bench needs the wrk load generator: apt-get install wrk (or brew install wrk)")


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid Lua string literal


def cycle_script(method: str, path: str, bodies: Path, offset: int) -> str:
    """A script sending `method path` with the bodies in the file `bodies`, from `offset`."""
    return (
        CYCLE.replace("BODIES", lua_string(str(bodies)))
        .replace("OFFSET", str(offset))
        .replace("METHOD", method)
        .replace("PATH", path)
    )


def fixed_script(method: str, path: str, body: str | None = None) -> str:
    return (
        FIXED.replace("METHOD", method)
        .replace("PATH", path)
        .replace("BODY", "nil" if body is None else lua_string(body))
    )


def run_wrk(
    wrk: str, url: str, script: str, duration: float, headers: dict[str, str]
) -> dict[str, float]:
    """One wrk run: requests, sent, seconds, rps, p50_ms, p99_ms, non2xx, socket_errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + REPORT)
    flags = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    usage: dict[str, float] = {}
    try:
        with other_load(usage):
            out = subprocess.run(
                [
                    *pinned(0),
                    wrk,
                    "-t1",
                    f"-c{CONNECTIONS}",
                    f"-d{max(1, round(duration))}s",
                    "-s",
                    handle.name,
                    *flags,
                    url,
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
    finally:
        os.unlink(handle.name)
    line = next(li for li in reversed(out.splitlines()) if li.startswith("{"))
    result: dict[str, float] = json.loads(line)
    result["rps"] = result["requests"] / result["seconds"]
    return result | usage
