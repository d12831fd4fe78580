"""The one routing table, and everything generated from it: haproxy config, ALB rules.

The table says, per service, which path patterns it owns, the rule priority, and the weight
(0-100) of its traffic sent to the new service rather than the monolith. The local load
balancer and the AWS listener rules are both rendered from it, so they cannot disagree.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from clave.platform.settings import SettingsError

# ALB allows at most 5 values in a path-pattern condition.
MAX_PATHS = 5
_PATTERN = re.compile(r"/[A-Za-z0-9._~/-]*\*?")


class Topology(StrEnum):
    """Which processes serve the API behind the load balancer."""

    MONOLITH = "monolith"  # one process, every domain; the table's weights are ignored (0)
    SPLIT = "split"  # one process per service; the weights are ignored (100)
    MIXED = "mixed"  # both, traffic split by the table's weights: mid-migration


@dataclass(frozen=True, slots=True)
class Route:
    """One service's entry in the table."""

    service: str
    paths: tuple[str, ...]
    priority: int
    weight: int
    retired: bool = False


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Every route, by priority."""

    routes: tuple[Route, ...]

    @classmethod
    def load(cls, path: Path, known: tuple[str, ...] | None = None) -> RoutingTable:
        """Read and validate the table; SettingsError says what is wrong."""
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"routing table {path} not found (set CLAVE_ROUTES)") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"routing table {path}: {exc}") from None
        services = data.get("services")
        if not isinstance(services, dict) or not services:
            raise SettingsError(f"routing table {path}: no [services.NAME] tables")
        routes = [cls._route(path, name, entry) for name, entry in services.items()]
        table = cls(tuple(sorted(routes, key=lambda r: r.priority)))
        table.validate(path, known)
        return table

    @staticmethod
    def _route(path: Path, name: str, entry: Any) -> Route:
        where = f"routing table {path}, service {name}"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where}: must be a table")
        paths, priority, weight = entry.get("paths"), entry.get("priority"), entry.get("weight", 0)
        retired = entry.get("retired", False)
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise SettingsError(f"{where}: paths must be a list of strings")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise SettingsError(f"{where}: priority must be an integer")
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise SettingsError(f"{where}: weight must be an integer")
        if not isinstance(retired, bool):
            raise SettingsError(f"{where}: retired must be true or false")
        unknown = set(entry) - {"paths", "priority", "weight", "retired"}
        if unknown:
            raise SettingsError(f"{where}: unknown keys {sorted(unknown)}")
        return Route(name, tuple(paths), priority, weight, retired)

    def validate(
        self, path: Path | str = "routing table", known: tuple[str, ...] | None = None
    ) -> None:
        """Raise SettingsError naming the first problem."""
        seen: dict[int, str] = {}
        for r in self.routes:
            where = f"{path}, service {r.service}"
            if known is not None and r.service not in known:
                raise SettingsError(f"{where}: not a service (known: {', '.join(known)})")
            if not 1 <= r.priority <= 50000:
                raise SettingsError(f"{where}: priority must be 1-50000 (an ALB rule priority)")
            if r.priority in seen:
                raise SettingsError(f"{where}: priority {r.priority} is also {seen[r.priority]}'s")
            seen[r.priority] = r.service
            if not 0 <= r.weight <= 100:
                raise SettingsError(f"{where}: weight must be 0-100")
            if r.retired and r.weight != 100:
                raise SettingsError(f"{where}: retired needs weight 100")
            if not 1 <= len(r.paths) <= MAX_PATHS:
                raise SettingsError(f"{where}: 1 to {MAX_PATHS} path patterns (an ALB limit)")
            for pattern in r.paths:
                if not _PATTERN.fullmatch(pattern):
                    raise SettingsError(
                        f"{where}: bad path pattern {pattern!r}: a path, optionally ending in *"
                    )

    def route(self, service: str) -> Route:
        """The route of one service."""
        for r in self.routes:
            if r.service == service:
                return r
        raise SettingsError(f"no service {service!r} in the routing table")

    def shift(self, service: str, weight: int) -> RoutingTable:
        """The table with `service`'s weight changed."""
        current = self.route(service)
        if current.retired and weight != 100:
            raise SettingsError(f"{service} is retired from the monolith: its weight stays 100")
        changed = replace(current, weight=weight)
        table = RoutingTable(tuple(changed if r.service == service else r for r in self.routes))
        table.validate()
        return table

    def retire(self, service: str) -> RoutingTable:
        """The table with `service` no longer served by the monolith (weight must be 100)."""
        current = self.route(service)
        if current.weight != 100:
            raise SettingsError(f"shift {service} to 100 before retiring it from the monolith")
        changed = replace(current, retired=True)
        return RoutingTable(tuple(changed if r.service == service else r for r in self.routes))

    def effective(self, topology: Topology) -> RoutingTable:
        """The weights a topology applies: 0 (monolith), 100 (split), the table's (mixed)."""
        if topology is Topology.MIXED:
            return self
        weight = 100 if topology is Topology.SPLIT else 0
        return RoutingTable(
            tuple(
                replace(r, weight=weight, retired=topology is Topology.SPLIT) for r in self.routes
            )
        )

    def monolith_services(self, all_services: tuple[str, ...]) -> tuple[str, ...]:
        """The domains the monolith still serves (all but the retired ones)."""
        retired = {r.service for r in self.routes if r.retired}
        return tuple(s for s in all_services if s not in retired)

    def dump(self) -> str:
        """The table as TOML, comments preserved at the top."""
        lines = [_HEADER]
        for r in self.routes:
            paths = ", ".join(f'"{p}"' for p in r.paths)
            lines.append(
                f"[services.{r.service}]\npaths = [{paths}]\npriority = {r.priority}\n"
                f"weight = {r.weight}\nretired = {'true' if r.retired else 'false'}\n"
            )
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        """Write atomically (a rename), so a reader never sees half a table."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(self.dump())
        tmp.replace(path)

    def show(self) -> str:
        """A human-readable table."""
        out = [f"{'service':10} {'priority':>8} {'weight':>6}  {'monolith':8}  paths"]
        for r in self.routes:
            state = "retired" if r.retired else "serves"
            out.append(
                f"{r.service:10} {r.priority:8d} {r.weight:5d}%  {state:8}  {' '.join(r.paths)}"
            )
        return "\n".join(out)


_HEADER = """# The routing table: which service answers which paths, in which order
# (priority, lowest first, unique), and the share of each service's traffic
# (weight, 0-100) that goes to the new service instead of the monolith: the
# strangler step. `retired = true` once the monolith no longer serves the
# service's routes (needs weight 100).
#
# Everything that routes is generated from this file: `clave up`'s haproxy
# config, and the ALB listener rules (`clave routes show --format alb`).
# Change it with `clave routes shift` and `clave routes retire`.
"""


def _acl(pattern: str) -> str:
    if pattern.endswith("*"):
        return f"path_beg {pattern[:-1]}"
    return f"path {pattern}"


def haproxy_config(
    table: RoutingTable,
    *,
    bind: str,
    monolith: str | None,
    services: Mapping[str, str],
    stats_socket: Path,
    resolver: str | None = None,
    show_server: bool = False,
) -> str:
    """haproxy configuration: one backend per service, weighted between monolith and service.

    `show_server` adds an `X-Clave-Server` response header naming the server that answered
    (to watch a migration on one machine); off, nothing about the topology reaches clients.

    `monolith` and `services` are "host:port" of the running processes; a backend gets the
    monolith server unless the route is retired or there is no monolith, and the service
    server when that service runs. Each response names the server that answered.

    `resolver` ("host:port" of a DNS server, like Docker's 127.0.0.11:53) makes haproxy
    resolve server names at run time: a container that restarts with a new address is found
    again, and a name that does not resolve yet leaves the server down instead of stopping
    haproxy from starting.
    """
    dns = ["resolvers dns", f"    nameserver dns1 {resolver}", "    hold valid 10s", ""]
    out = [
        "# Generated by clave from the routing table; do not edit.",
        "global",
        "    master-worker",
        # expose-fd: a reload hands the listening sockets to the new worker, dropping nothing.
        f"    stats socket {stats_socket} mode 600 level admin expose-fd listeners",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        # Each retry on the same server waits up to 1 s (haproxy's turn-around timer): one
        # retry, and a refused connection on live traffic marks the server down at once, so a
        # dead service's paths answer 503 quickly instead of after the health checks notice.
        "    retries 1",
        # A fresh server connection per request (clients keep theirs alive): a killed server
        # then shows as a refused connection, retried and redispatched, never as a reused
        # connection that dies mid-request and closes the client's connection with it.
        "    option http-server-close",
        # The client's address for the services (CLAVE_PROXY_HOPS=1 behind this proxy).
        "    option forwardfor",
        # On a reload the old process keeps an idle client connection until its next request,
        # answers it and then closes: closing it at once races a request the client is
        # already sending on it, which then fails without an answer.
        "    option idle-close-on-response",
        # A response that never came is tried again elsewhere for GET/HEAD only
        # (disable-l7-retry below), never for a POST that may have been acted on.
        "    retry-on conn-failure empty-response response-timeout",
        "    option redispatch",
        "    default-server inter 1s fastinter 250ms fall 2 rise 1"
        " observe layer4 error-limit 1 on-error mark-down"
        + (" resolvers dns init-addr last,libc,none" if resolver else ""),
        "",
        *(dns if resolver else []),
        "frontend api",
        f"    bind {bind}",
        "    http-request disable-l7-retry if !METH_GET",
        # Which server answered: a view of the topology for demonstrations and tests only,
        # never sent to clients by default.
        *(["    http-response set-header X-Clave-Server %[srv_name]"] if show_server else []),
    ]
    for r in table.routes:
        out += [f"    acl is_{r.service} {_acl(pattern)}" for pattern in r.paths]
    for r in table.routes:
        out.append(f"    use_backend be_{r.service} if is_{r.service}")
    out.append("    default_backend be_default")
    out.append("")
    for r in table.routes:
        out += [
            f"backend be_{r.service}",
            "    balance roundrobin",
            "    option httpchk GET /healthz",
        ]
        servers = 0
        if monolith is not None and not r.retired:
            out.append(f"    server monolith {monolith} weight {100 - r.weight} check")
            servers += 1
        if r.service in services:
            weight = r.weight if monolith is not None and not r.retired else 100
            out.append(f"    server {r.service} {services[r.service]} weight {weight} check")
            servers += 1
        if not servers:
            out.append(
                '    http-request return status 503 content-type text/plain string "no server"'
            )
        out.append("")
    # Everything else (/, /api, /healthz, /docs): the monolith, or any service when split.
    out += ["backend be_default", "    balance roundrobin", "    option httpchk GET /healthz"]
    if monolith is not None:
        out.append(f"    server monolith {monolith} check")
    else:
        out += [f"    server {name} {address} check" for name, address in services.items()]
    out.append("")
    return "\n".join(out)


def alb_rules(table: RoutingTable) -> list[dict[str, Any]]:
    """The ALB listener rules (CloudFormation `AWS::ElasticLoadBalancingV2::ListenerRule`
    properties), one per service: its path patterns, its priority, and a weighted forward
    between the monolith's target group and the service's. Target groups are `Ref`s to
    `MonolithTargetGroup` and `<Service>TargetGroup`, and the listener to `Listener`."""
    rules = []
    for r in table.routes:
        groups = [
            {"TargetGroupArn": {"Ref": f"{r.service.capitalize()}TargetGroup"}, "Weight": r.weight}
        ]
        if not r.retired:
            groups.insert(
                0, {"TargetGroupArn": {"Ref": "MonolithTargetGroup"}, "Weight": 100 - r.weight}
            )
        rules.append(
            {
                "Service": r.service,
                "Properties": {
                    "ListenerArn": {"Ref": "Listener"},
                    "Priority": r.priority,
                    "Conditions": [
                        {"Field": "path-pattern", "PathPatternConfig": {"Values": list(r.paths)}}
                    ],
                    "Actions": [{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
                },
            }
        )
    return rules
