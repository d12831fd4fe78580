"""Metrics values across a fork: prometheus_client's multiprocess mode keeps each process's
values in a file named by its pid, which clave keeps at hand instead of asking the kernel on
every observation; a forked worker must still write under its own pid."""

from __future__ import annotations

import os

from clave.platform import metrics


def test_a_forked_process_reports_its_own_pid() -> None:
    assert metrics._process_identifier() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which exits at once
        os.close(read)
        os.write(write, str(metrics._process_identifier()).encode())
        os._exit(0)
    os.close(write)
    reported = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(child, 0)
    assert reported == str(child)
    assert metrics._process_identifier() == os.getpid()  # the parent's is unchanged
