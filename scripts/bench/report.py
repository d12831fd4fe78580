"""The table: one line per server measured, the ratio and the goal on clave's line."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Line:
    work: str
    who: str
    # req/s, p50_ms, p99_ms, non2xx (+ socket errors); None: not measured, `note` says why.
    result: dict[str, float] | None = None
    note: str = ""
    ratio: str = ""
    goal: str = ""
    met: bool | None = None


def ratio(value: float, goal: float, *, share: bool = False) -> tuple[str, str, bool]:
    """(the ratio's text, the goal's text, whether it is met)."""
    if share:
        return f"{value:.0%} bare", f">= {goal:.0%} bare", value >= goal
    return f"{value:.2f}x", f">= {goal:.1f}x", value >= goal


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


HEADER = (
    f"{'work':31} {'server':27} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}"
    f" {'others':>6}"
    f"  {'clave/anchor':>12}  {'goal':<12} met"
)


def render(lines: list[Line]) -> str:
    out = [HEADER, "-" * len(HEADER)]
    last_work = ""
    for line in lines:
        work = line.work if line.work != last_work else ""
        last_work = line.work
        met = "" if line.met is None else ("yes" if line.met else "NO")
        r = line.result
        if r is None:
            figures = f"{line.note:>47}" if line.note else " " * 47
        else:
            bad = int(r.get("non2xx", 0) + r.get("socket_errors", 0) + r.get("errors", 0))
            others = r.get("other_cores", math.nan)
            figures = (
                f"{r['rps']:8.0f} {fmt(r['p50_ms']):>7} {fmt(r['p99_ms']):>7} {bad:7d}"
                f" {'-' if math.isnan(others) else f'{others:.0%}':>6}"
            )
        out.append(
            f"{work:31} {line.who:27} {figures}  {line.ratio:>12}  {line.goal:<12} {met}".rstrip()
        )
    return "\n".join(out)
