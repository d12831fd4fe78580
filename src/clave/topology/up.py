"""`clave up`: the whole topology on one machine, behind a real haproxy.

Starts the components the topology calls for (the monolith, and one process group per domain
once split), each on its own port with its own worker count, and haproxy in front on one port
with a config rendered from the routing table. It supervises them: a component that dies is
started again after `restart_delay` (as ECS replaces a dead task); SIGHUP re-reads the table
and reloads haproxy without dropping connections; SIGINT or SIGTERM stops everything it
started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from clave.platform.settings import SettingsError
from clave.topology.haproxy import find_haproxy, haproxy_config
from clave.topology.state import forget_state, write_state
from clave.topology.table import MONOLITH, RoutingTable, Topology

log = logging.getLogger("clave.up")


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Component:
    """One component: a process group serving `domains` (the monolith's, or one domain's)."""

    name: str
    domains: tuple[str, ...]
    workers: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    died_at: float | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class Stack:
    """The components of one topology and the load balancer in front of them.

    `domains` are every domain clave has: the monolith serves those the table has not retired,
    and the split topology gives each a component of its own, named after it. `prepare` runs
    once before any component starts (schemas, seeds, keys for every domain)."""

    def __init__(
        self,
        *,
        table_path: Path,
        topology: Topology,
        port: int,
        domains: tuple[str, ...],
        workers: Mapping[str, int],
        run_dir: Path,
        env: Mapping[str, str],
        restart_delay: float,
        prepare: Callable[[], None],
        show_server: bool = False,
    ) -> None:
        # Absolute: haproxy reads a relative socket path as host:port, and children may chdir.
        self.table_path = table_path.resolve()
        self.topology = topology
        self.port = port
        self.domains = domains
        self.workers = dict(workers)
        self.run_dir = run_dir.resolve()
        self.env = dict(env)
        self.restart_delay = restart_delay
        self.prepare = prepare
        self.show_server = show_server
        self.haproxy = find_haproxy()
        self.table = RoutingTable.load(table_path, domains)
        self.components: dict[str, Component] = {}
        self.haproxy_proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self._stopping = False
        self._reload = False

    # -- processes ---------------------------------------------------------------------------

    def _gateway(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, component: Component) -> None:
        env = {
            **self.env,
            "CLAVE_HOST": "127.0.0.1",
            "CLAVE_PROXY_HOPS": "1",  # haproxy appends the client's address to X-Forwarded-For
            "CLAVE_SERVICES": ",".join(component.domains),
            # Calls between components go through the load balancer, so they follow the table.
            **{f"CLAVE_{name.upper()}_URL": self._gateway() for name in self.domains},
        }
        logfile = (self.run_dir / f"{component.name}.log").open("ab")
        component.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clave",
                "serve",
                "--port",
                str(component.port),
                "--workers",
                str(component.workers),
            ],
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 of it spares the rest
        )
        logfile.close()
        component.died_at = None
        log.info("started %s (pid %s) on %s", component.name, component.proc.pid, component.address)

    def _wait_ready(self, component: Component, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{component.address}/readyz"
        while time.monotonic() < deadline:
            if component.proc is not None and component.proc.poll() is not None:
                raise RuntimeError(
                    f"{component.name} exited; see {self.run_dir / component.name}.log"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{component.name} not ready after {timeout}s")

    def _plan(self) -> dict[str, Component]:
        """The components this topology and table call for."""
        plan: dict[str, Component] = {}
        if self.topology is not Topology.SPLIT:
            domains = self.table.monolith_domains(self.domains)
            if domains:
                plan[MONOLITH] = Component(MONOLITH, domains, self.workers.get(MONOLITH, 1))
        if self.topology is not Topology.MONOLITH:
            for name in self.domains:
                plan[name] = Component(name, (name,), self.workers.get(name, 1))
        return plan

    # -- haproxy -------------------------------------------------------------------------------

    def _render(self) -> Path:
        monolith = self.components.get(MONOLITH)
        config = haproxy_config(
            self.table.effective(self.topology),
            bind=f"127.0.0.1:{self.port}",
            monolith=monolith.address if monolith else None,
            components={n: c.address for n, c in self.components.items() if n != MONOLITH},
            stats_socket=self.run_dir / "haproxy.sock",
            show_server=self.show_server,
        )
        path = self.run_dir / "haproxy.cfg"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(config)
        check = subprocess.run([self.haproxy, "-c", "-f", str(tmp)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"generated haproxy config is invalid: {check.stdout}{check.stderr}")
        tmp.replace(path)
        return path

    def _start_haproxy(self) -> None:
        config = self._render()
        logfile = (self.run_dir / "haproxy.log").open("ab")
        self.haproxy_proc = subprocess.Popen(
            [self.haproxy, "-W", "-db", "-f", str(config), "-p", str(self.run_dir / "haproxy.pid")],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.haproxy_proc.poll() is not None:
                raise RuntimeError(f"haproxy exited; see {self.run_dir / 'haproxy.log'}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("haproxy did not start listening")

    def _haproxy_workers(self) -> int:
        assert self.haproxy_proc is not None
        master = self.haproxy_proc.pid
        count = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                        count += 1
        return count

    def _wait_haproxy_settled(self, timeout: float = 15.0) -> None:
        """Wait until the reload's new worker is the only one left (old ones drained)."""
        deadline = time.monotonic() + timeout
        time.sleep(0.2)  # the master forks the new worker first
        while self._haproxy_workers() > 1 and time.monotonic() < deadline:
            time.sleep(0.1)

    def _reload_haproxy(self) -> None:
        self._render()
        assert self.haproxy_proc is not None
        # SIGUSR2 to the master: it re-reads the config and starts new workers that receive the
        # listening sockets; old workers finish their connections, so none is dropped.
        self.haproxy_proc.send_signal(signal.SIGUSR2)

    # -- life cycle ----------------------------------------------------------------------------

    def _publish(self) -> None:
        state = {
            "pid": os.getpid(),
            "generation": self.generation,
            "port": self.port,
            "topology": self.topology.value,
            "table": str(self.table_path),
            "haproxy": {"pid": self.haproxy_proc.pid if self.haproxy_proc else None},
            "components": {
                name: {
                    "port": c.port,
                    "pid": c.proc.pid if c.proc else None,
                    "workers": c.workers,
                    # The key of CLAVE_SERVICES, the variable that gives a process its domains.
                    "services": list(c.domains),
                }
                for name, c in self.components.items()
            },
        }
        write_state(self.run_dir, state)

    def start(self) -> None:
        """Prepare the databases once, start every component, then haproxy."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self.components = self._plan()
        for component in self.components.values():
            self._spawn(component)
        for component in self.components.values():
            self._wait_ready(component)
        self._start_haproxy()
        self._publish()

    def reload(self) -> None:
        """Re-read the table; restart the monolith blue-green if its domains changed."""
        table = RoutingTable.load(self.table_path, self.domains)
        old_plan = self.components
        self.table = table
        new_plan = self._plan()
        replaced: list[Component] = []
        for name, component in new_plan.items():
            current = old_plan.get(name)
            if current is not None and current.domains == component.domains:
                new_plan[name] = current
                continue
            self._spawn(component)
            self._wait_ready(component)
            if current is not None:
                replaced.append(current)
        replaced += [c for n, c in old_plan.items() if n not in new_plan]
        self.components = new_plan
        self._reload_haproxy()
        if replaced:
            # Old haproxy workers still finish kept-alive client connections with the old
            # config, which may point at a replaced component: stop those only once the old
            # workers are gone.
            self._wait_haproxy_settled()
        for component in replaced:
            self._terminate(component)
        self.generation += 1
        self._publish()
        log.info("routing table applied (generation %s)", self.generation)

    def _supervise(self) -> None:
        now = time.monotonic()
        for component in self.components.values():
            proc = component.proc
            if proc is None or proc.poll() is None:
                continue
            if component.died_at is None:
                component.died_at = now
                log.warning(
                    "%s exited with %s; restarting in %.1fs",
                    component.name,
                    proc.returncode,
                    self.restart_delay,
                )
                # Leftover workers of a killed master must not keep the port.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            elif now - component.died_at >= self.restart_delay:
                self._spawn(component)
                try:
                    self._wait_ready(component)
                except RuntimeError as exc:
                    log.error("%s", exc)
                self._publish()
        if self.haproxy_proc is not None and self.haproxy_proc.poll() is not None:
            log.error("haproxy exited with %s; starting it again", self.haproxy_proc.returncode)
            self._start_haproxy()
            self._publish()

    def run(self) -> int:
        """Start, then supervise until SIGINT or SIGTERM."""

        def stop(signum: int, _: FrameType | None) -> None:
            self._stopping = True

        def hup(signum: int, _: FrameType | None) -> None:
            self._reload = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        try:
            self.start()
            print(
                f"clave up: {self.topology} topology on {self._gateway()} (logs in {self.run_dir})",
                flush=True,
            )
            while not self._stopping:
                if self._reload:
                    self._reload = False
                    try:
                        self.reload()
                    except (SettingsError, RuntimeError) as exc:
                        log.error("reload failed, keeping the running config: %s", exc)
                self._supervise()
                time.sleep(0.2)
        finally:
            self.stop()
        return 0

    def _terminate(self, component: Component, grace: float = 20) -> None:
        proc = component.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop haproxy, then every component, and forget the state."""
        if self.haproxy_proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.haproxy_proc.pid, signal.SIGTERM)
            try:
                self.haproxy_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.haproxy_proc.pid, signal.SIGKILL)
        for component in self.components.values():
            self._terminate(component)
        forget_state(self.run_dir)
