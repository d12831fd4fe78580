"""Traces only with an OTLP endpoint: otherwise no span, no import, no header."""

from __future__ import annotations

import subprocess
import sys


def test_without_an_endpoint_nothing_is_traced_or_imported() -> None:
    # A fresh interpreter: whether OpenTelemetry is loaded at all is the point.
    script = (
        "import sys\n"
        "from clave.platform import tracing\n"
        "assert tracing.configure('verify', {}) is False\n"
        "assert not tracing.enabled()\n"
        "with tracing.span('x') as s: assert s is None\n"
        "h = {}; tracing.inject(h); assert h == {}\n"
        "assert tracing.traceparent() is None\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), sorted(sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_with_an_endpoint_spans_nest_and_carry_the_traceparent() -> None:
    script = (
        "from clave.platform import tracing\n"
        "assert tracing.configure('verify', {'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9'})\n"
        "parent = '00-' + 'a' * 32 + '-' + 'b' * 16 + '-01'\n"
        "with tracing.span('GET', headers={'traceparent': parent}, server=True):\n"
        "    with tracing.span('inner'):\n"
        "        carried = tracing.traceparent()\n"
        "assert carried.startswith('00-' + 'a' * 32 + '-'), carried\n"
        "assert carried.split('-')[2] != 'b' * 16\n"
        "h = {}\n"
        "with tracing.span('outer'):\n"
        "    tracing.inject(h)\n"
        "assert 'traceparent' in h and 'a' * 32 not in h['traceparent']\n"
        "import json, logging\n"
        "from clave.platform.logs import JsonLines\n"
        "record = logging.LogRecord('clave', 20, 'f', 1, 'in a request', None, None)\n"
        "with tracing.span('GET', headers={'traceparent': parent}, server=True):\n"
        "    line = json.loads(JsonLines().format(record))\n"
        "assert line['trace_id'] == 'a' * 32 and len(line['span_id']) == 16, line\n"
        "import os; os._exit(0)  # no export to the made-up endpoint at exit\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
