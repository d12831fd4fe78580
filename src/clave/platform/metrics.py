"""Prometheus metrics: one view across every worker process of a component.

`clave serve` gives its workers a directory (`PROMETHEUS_MULTIPROC_DIR`, emptied at each
start) where prometheus_client's multiprocess mode keeps each worker's values; `/metrics`
reads and sums them all, whichever worker answers. Without the directory (tests, one process)
the values live in memory.

Labels never carry a destination, a code, a key or a user's id: only names from small fixed
sets (a route's template, a channel, a provider, an outcome, a reason).
"""

from __future__ import annotations

import inspect
import os
import shutil
import time
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from clave.platform import tracing

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Request latency buckets, in seconds: sub-millisecond answers up to a slow dependency.
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Delivery takes longer: a provider's API, retries.
_DELIVERY = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# This process's id, kept current across forks. prometheus_client's multiprocess values ask for
# the pid on every observation (to notice a fork); os.getpid() is a system call each time: an
# observation took 1.5 us with it, 1.0 without, and a request makes several.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _process_identifier() -> int:
    return _pid[0]


def prepare_multiprocess(data_dir: Path, port: int) -> Path:
    """Give this server's workers an empty metrics directory (in the environment they
    inherit), before any of them starts: values of an earlier run are not this run's. One
    per port: the components `clave up` runs on one machine share a data directory."""
    folder = data_dir / f"metrics-{port}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


class Metrics:
    """The instruments of one process; `exposition()` is what /metrics answers."""

    def __init__(self) -> None:
        self._folder = os.environ.get(MULTIPROC_ENV) or None
        if self._folder:
            # This process writes to the shared directory, whichever way it was started (a
            # fork inherits the module state of a parent that chose in-memory values).
            values.ValueClass = values.MultiProcessValue(_process_identifier)  # type: ignore[no-untyped-call]
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.http_duration = Histogram(
            "clave_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            ["method", "route", "status"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.verifications_started = Counter(
            "clave_verifications_started",
            "Verifications started (a new code), by service and channel",
            ["service", "channel"],
            registry=registry,
        )
        self.checks = Counter(
            "clave_checks",
            "Code checks, by service and outcome",
            ["service", "outcome"],
            registry=registry,
        )
        self.sends = Counter(
            "clave_sends",
            "Messages handed to providers, by channel, provider and status",
            ["channel", "provider", "status"],
            registry=registry,
        )
        self.delivery = Histogram(
            "clave_delivery_seconds",
            "From queued to accepted by the provider, by channel and provider",
            ["channel", "provider"],
            buckets=_DELIVERY,
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "clave_outbox_pending",
            "Sends waiting in the outbox",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.outbox_oldest_age = Gauge(
            "clave_outbox_oldest_age_seconds",
            "Age of the oldest send waiting in the outbox",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.refusals = Counter(
            "clave_refusals",
            "Sends and checks refused, by reason (each rate limit and fraud rule)",
            ["reason"],
            registry=registry,
        )
        self.events_failed = Counter(
            "clave_events_failed",
            "Event webhook deliveries that failed (each try)",
            registry=registry,
        )
        self.store_duration = Histogram(
            "clave_store_operation_seconds",
            "Time of a store operation, by backend and operation",
            ["backend", "operation"],
            buckets=_LATENCY,
            registry=registry,
        )

    def exposition(self) -> bytes:
        """Prometheus' text format: every worker's values summed (multiprocess), or this
        process's."""
        if self._folder:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=self._folder)  # type: ignore[no-untyped-call]
            found: bytes = generate_latest(merged)
        else:
            found = generate_latest(self.registry)
        return found


class Timed:
    """A proxy that times every coroutine method of `target` into `histogram` as
    (`backend`, the method's name); anything else passes through. A method is wrapped on its
    first use and kept (later calls find it on the proxy itself)."""

    def __init__(self, target: Any, histogram: Histogram, backend: str) -> None:
        self._target = target
        self._histogram = histogram
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        if not inspect.iscoroutinefunction(found):
            return found
        observe = self._histogram.labels(self._backend, name).observe

        operation, traced = f"{self._backend} {name}", tracing.enabled()
        attributes = {"db.system": self._backend}

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                if traced:  # a span per store operation too
                    with tracing.span(operation, attributes=attributes):
                        return await found(*args, **kwargs)
                return await found(*args, **kwargs)
            finally:
                observe(time.perf_counter() - started)

        setattr(self, name, timed)
        return timed
