"""Log lines (platform/logs.py): readable text or JSON objects, destinations masked in both."""

from __future__ import annotations

import json
import logging
import sys

from clave.platform.logs import JsonLines, access_log_config, formatter


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("sent to ana@example.com")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("clave.verify", logging.WARNING, __file__, 1, message, args, info)


def test_json_lines_carry_the_fields_and_mask_destinations() -> None:
    line = JsonLines().format(record("sent to %s via %s", "+14155552671", "sms", exc=True))
    assert "\n" not in line
    found = json.loads(line)
    assert set(found) >= {"time", "level", "logger", "pid", "message", "exception"}
    assert (found["level"], found["logger"]) == ("warning", "clave.verify")
    assert found["time"].endswith("+00:00")
    assert "+14155552671" not in found["message"]
    assert "sms" in found["message"]
    assert "ana@example.com" not in found["exception"]
    assert "trace_id" not in found  # no span recording here


def test_the_format_is_chosen_by_the_setting() -> None:
    assert isinstance(formatter("json"), JsonLines)
    assert not isinstance(formatter("text"), JsonLines)
    text = access_log_config("text")["formatters"]["access"]
    assert text == {"()": "logging.Formatter", "fmt": "%(message)s"}
    assert access_log_config("json")["formatters"]["access"] == {
        "()": "clave.platform.logs.JsonLines"
    }
