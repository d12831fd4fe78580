"""The state a running `clave up` publishes, and how other commands talk to it.

`clave up` writes `state.json` in its run directory (its pid, port, topology, routing table, and
each component's port, pid, workers and domains); `clave routes` reads it to find the table in
use and the running components, and sends SIGHUP to have a changed table applied.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


def run_dir_in(data_dir: Path) -> Path:
    """Where `clave up` keeps its state, logs and haproxy files, under the data directory."""
    return data_dir / "up"


def alive(pid: int) -> bool:
    """Whether a process exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The state a running `clave up` publishes, or None when none runs."""
    try:
        state: dict[str, Any] = json.loads((run_dir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state if alive(int(state.get("pid", 0))) else None


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Publish the state atomically (a rename), so a reader never sees half of it."""
    tmp = run_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(run_dir / STATE_FILE)


def forget_state(run_dir: Path) -> None:
    """Remove the state: no `clave up` runs there any more."""
    (run_dir / STATE_FILE).unlink(missing_ok=True)


def apply(run_dir: Path, timeout: float = 60) -> bool:
    """Ask a running `clave up` to apply the routing table; True once it has, False if none runs."""
    state = read_state(run_dir)
    if state is None:
        return False
    generation = int(state["generation"])
    os.kill(int(state["pid"]), signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = read_state(run_dir)
        if current is not None and int(current["generation"]) > generation:
            return True
        time.sleep(0.1)
    raise RuntimeError("clave up did not apply the table in time; see its log")
