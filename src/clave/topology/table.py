"""The one routing table (`routes.toml`): which component answers which paths.

The table says, per component, which path patterns it owns, the rule priority, and the weight
(0-100) of its traffic sent to the component rather than the monolith. The local load balancer
and the AWS listener rules are both rendered from it (`haproxy.py`, `alb.py`), so they cannot
disagree.

The file keeps its first format: each component is a `[services.NAME]` table. "services" there
is only the key's name, kept so every table written so far still loads.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from clave.platform.settings import SettingsError

# The component that serves every domain not retired from it, and every path no route matches.
MONOLITH = "monolith"
# ALB allows at most 5 values in a path-pattern condition.
MAX_PATHS = 5
_PATTERN = re.compile(r"/[A-Za-z0-9._~/-]*\*?")
# The file's key for the table of components (see the module docstring).
_KEY = "services"


class Topology(StrEnum):
    """Which components serve the API behind the load balancer."""

    MONOLITH = "monolith"  # the monolith alone, every domain; the table's weights are ignored (0)
    SPLIT = "split"  # one component per domain, no monolith; the weights are ignored (100)
    MIXED = "mixed"  # both, traffic split by the table's weights: mid-migration


@dataclass(frozen=True, slots=True)
class Route:
    """One component's entry in the table."""

    component: str
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
        """Read and validate the table (`known`: the components it may name); SettingsError
        says what is wrong."""
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"routing table {path} not found (set CLAVE_ROUTES)") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"routing table {path}: {exc}") from None
        components = data.get(_KEY)
        if not isinstance(components, dict) or not components:
            raise SettingsError(f"routing table {path}: no [{_KEY}.NAME] tables")
        routes = [cls._route(path, name, entry) for name, entry in components.items()]
        table = cls(tuple(sorted(routes, key=lambda r: r.priority)))
        table.validate(path, known)
        return table

    @staticmethod
    def _route(path: Path, name: str, entry: Any) -> Route:
        where = f"routing table {path}, [{_KEY}.{name}]"
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
            where = f"{path}, [{_KEY}.{r.component}]"
            if known is not None and r.component not in known:
                raise SettingsError(
                    f"{where}: not a service clave has (components: {', '.join(known)})"
                )
            if not 2 <= r.priority <= 50000:
                # (1 is the rule that keeps /metrics off the load balancer.)
                raise SettingsError(f"{where}: priority must be 2-50000 (an ALB rule priority)")
            if r.priority in seen:
                raise SettingsError(f"{where}: priority {r.priority} is also {seen[r.priority]}'s")
            seen[r.priority] = r.component
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

    def route(self, component: str) -> Route:
        """The route of one component."""
        for r in self.routes:
            if r.component == component:
                return r
        raise SettingsError(f"no component {component!r} in the routing table")

    def shift(self, component: str, weight: int) -> RoutingTable:
        """The table with `component`'s weight changed."""
        current = self.route(component)
        if current.retired and weight != 100:
            raise SettingsError(f"{component} is retired from the monolith: its weight stays 100")
        changed = replace(current, weight=weight)
        table = RoutingTable(tuple(changed if r.component == component else r for r in self.routes))
        table.validate()
        return table

    def retire(self, component: str) -> RoutingTable:
        """The table with `component`'s paths no longer served by the monolith (weight must be
        100)."""
        current = self.route(component)
        if current.weight != 100:
            raise SettingsError(f"shift {component} to 100 before retiring it from the monolith")
        changed = replace(current, retired=True)
        return RoutingTable(tuple(changed if r.component == component else r for r in self.routes))

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

    def monolith_domains(self, domains: tuple[str, ...]) -> tuple[str, ...]:
        """The domains the monolith still serves (all but the retired ones)."""
        retired = {r.component for r in self.routes if r.retired}
        return tuple(d for d in domains if d not in retired)

    def dump(self) -> str:
        """The table as TOML, comments preserved at the top."""
        lines = [_HEADER]
        for r in self.routes:
            paths = ", ".join(f'"{p}"' for p in r.paths)
            lines.append(
                f"[{_KEY}.{r.component}]\npaths = [{paths}]\npriority = {r.priority}\n"
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
        out = [f"{'component':10} {'priority':>8} {'weight':>6}  {'monolith':8}  paths"]
        for r in self.routes:
            state = "retired" if r.retired else "serves"
            out.append(
                f"{r.component:10} {r.priority:8d} {r.weight:5d}%  {state:8}  {' '.join(r.paths)}"
            )
        return "\n".join(out)

    def tsv(self) -> str:
        """One line per route, tab-separated, for deploy.sh: component, priority, weight,
        retired (true/false), the paths comma-separated."""
        return "\n".join(
            f"{r.component}\t{r.priority}\t{r.weight}\t{str(r.retired).lower()}\t"
            + ",".join(r.paths)
            for r in self.routes
        )


_HEADER = """# The routing table: which component answers which paths, in which order
# (priority, lowest first, unique), and the share of each component's traffic
# (weight, 0-100) that goes to the component instead of the monolith: the
# strangler step. `retired = true` once the monolith no longer serves the
# component's routes (needs weight 100). Each [services.NAME] table is one
# component, named after the domain it serves.
#
# Everything that routes is generated from this file: `clave up`'s haproxy
# config, and the ALB listener rules (`clave routes show --format alb`).
# Change it with `clave routes shift` and `clave routes retire`.
"""
