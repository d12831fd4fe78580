"""OpenTelemetry traces, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces one) is set: spans
for each request, store operation and provider call, exported over OTLP/HTTP as the standard
`OTEL_*` variables say. Otherwise nothing is imported, recorded or exported (the SDK costs a
worker ~15 MiB; a request, one check of a module variable).

The W3C `traceparent` is read from each request and passed on by the service clients, so one
sign-up is one trace across users and verify in the split topology; a send carries its
request's through the outbox, and its delivery's span links to it.

Why module state, where clave passes everything else through constructors: a trace is the
process's, as OpenTelemetry's own tracer provider is global; threading a tracer through every
store, client and dispatcher would repeat one argument everywhere for the same object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_tracer: Any = None
_provider: Any = None


def configure(component: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Start tracing this process when an OTLP endpoint is configured; whether it is on."""
    global _tracer, _provider
    if _tracer is not None or not any(environ.get(name) for name in _ENDPOINTS):
        return _tracer is not None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = environ.get("OTEL_SERVICE_NAME") or f"clave-{component}"
    _provider = TracerProvider(resource=Resource.create({"service.name": service}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)
    _tracer = trace.get_tracer("clave")
    return True


def enabled() -> bool:
    """Whether this process traces."""
    return _tracer is not None


def span(
    name: str,
    *,
    headers: Mapping[str, str] | None = None,
    server: bool = False,
    attributes: Mapping[str, Any] | None = None,
    link: str | None = None,
) -> AbstractContextManager[Any]:
    """A span around a block (yielding it, or None when not tracing): a child of the current
    span, or of the request's `traceparent` when `headers` are given; with `link` (a
    traceparent), linked to that span."""
    if _tracer is None:
        return nullcontext()
    from opentelemetry import propagate, trace

    context = propagate.extract(dict(headers)) if headers is not None else None
    links = []
    if link:
        linked = trace.get_current_span(propagate.extract({"traceparent": link}))
        links.append(trace.Link(linked.get_span_context()))
    kind = trace.SpanKind.SERVER if server else trace.SpanKind.INTERNAL
    found: AbstractContextManager[Any] = _tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=dict(attributes or {}), links=links
    )
    return found


def name_current(name: str, attributes: Mapping[str, Any]) -> None:
    """Rename the current span and add `attributes` (a request's, once its route is known)."""
    if _tracer is not None:
        from opentelemetry import trace

        current = trace.get_current_span()
        current.update_name(name)
        current.set_attributes(dict(attributes))


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` to outgoing `headers` (when tracing)."""
    if _tracer is not None:
        from opentelemetry import propagate

        propagate.inject(headers)


def traceparent() -> str | None:
    """The current span's `traceparent`, to carry it past a queue (None when not tracing)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def shutdown() -> None:
    """Export what is buffered (a worker stopping)."""
    if _provider is not None:
        _provider.shutdown()
