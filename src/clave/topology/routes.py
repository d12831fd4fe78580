"""`clave routes`: the routing table shown, or rendered for a load balancer; shift and retire."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from clave.platform.settings import SettingsError
from clave.topology.alb import alb_rules
from clave.topology.haproxy import haproxy_config
from clave.topology.state import apply, read_state
from clave.topology.table import MONOLITH, RoutingTable, Topology

FORMATS = ("table", "toml", "haproxy", "alb", "tsv")


def table_in_use(run_dir: Path, configured: Path, explicit: Path | None = None) -> Path:
    """`explicit` (--routes), else the table a running `clave up` uses, else `configured`
    (CLAVE_ROUTES)."""
    if explicit is not None:
        return explicit
    state = read_state(run_dir)
    return Path(state["table"]) if state else configured


def render(table: RoutingTable, fmt: str, run_dir: Path, domains: tuple[str, ...]) -> str:
    """The table in one of FORMATS; haproxy's for the components of the `clave up` running in
    `run_dir`, or when none runs, for a mixed topology on local ports from 8000 (the monolith)
    upwards, one component per domain."""
    if fmt == "toml":
        return table.dump()
    if fmt == "alb":
        return json.dumps(alb_rules(table), indent=2)
    if fmt == "tsv":
        return table.tsv()
    if fmt == "haproxy":
        state = read_state(run_dir)
        running = state["components"] if state else {}
        addresses = {name: f"127.0.0.1:{c['port']}" for name, c in running.items()}
        topology = Topology(state["topology"]) if state else Topology.MIXED
        return haproxy_config(
            table.effective(topology),
            bind=f"127.0.0.1:{state['port'] if state else 8080}",
            monolith=addresses.pop(MONOLITH, None if state else "127.0.0.1:8000"),
            components=addresses
            if state
            else {d: f"127.0.0.1:{8001 + i}" for i, d in enumerate(domains)},
            stats_socket=run_dir / "haproxy.sock",
        )
    return table.show()


def fixed_haproxy(
    table: RoutingTable,
    *,
    topology: Topology,
    bind: str,
    monolith: str | None,
    components: Mapping[str, str],
    stats_socket: Path,
    resolver: str | None,
) -> str:
    """haproxy for components at known addresses (docker compose), not a running clave up."""
    if topology is not Topology.SPLIT and not monolith:
        raise SettingsError(f"--topology {topology.value} needs --monolith HOST:PORT")
    if topology is not Topology.MONOLITH and not components:
        raise SettingsError(f"--topology {topology.value} needs --server NAME=HOST:PORT")
    return haproxy_config(
        table.effective(topology),
        bind=bind,
        monolith=None if topology is Topology.SPLIT else monolith,
        components={} if topology is Topology.MONOLITH else components,
        stats_socket=stats_socket,
        resolver=resolver,
    )


def save_and_apply(table: RoutingTable, path: Path, run_dir: Path) -> str:
    """Write a changed table, have a running `clave up` apply it; what to tell the operator."""
    table.save(path)
    applied = apply(run_dir)
    note = "applied to the running clave up" if applied else "no clave up is running; saved"
    return f"{table.show()}\n({path}: {note})"
