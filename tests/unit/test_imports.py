"""No import cycle among clave's modules, counting every import (also those under
TYPE_CHECKING or inside functions): a cycle means two modules that cannot be read, changed or
tested apart."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import clave

ROOT = Path(clave.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, whether it is a package's __init__)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def _imports(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the clave modules it imports (a name imported from a module counts as that
    module unless it is a submodule)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, package) in modules.items():
        here = name if package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_walker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_clave_modules() -> None:
    graph = _imports(_modules())
    assert "clave.verify.bootstrap" in graph
    assert "clave.verify.api" in graph["clave.verify.bootstrap"]
    assert _cycles(graph) == []


# A worker on SQLite builds its app without loading a driver for a store it does not use:
# redis-py costs each worker ~8 MiB, asyncpg ~3 MiB (README, Performance). The worker is forked
# from `clave serve`'s process, so what the CLI imports counts too.
_WORKER_ON_SQLITE = """
import sys
import clave.cli
from clave.bootstrap import Settings, create_app, prepare
prepare(Settings.load())
create_app()
print(" ".join(m for m in ("redis", "asyncpg") if m in sys.modules) or "-")
"""


def test_a_sqlite_worker_loads_neither_redis_nor_asyncpg(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAVE_")}
    env |= {"CLAVE_DATA_DIR": str(tmp_path), "CLAVE_DEV_INBOX": "true", "CLAVE_SEED": "true"}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_ON_SQLITE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["-"], done.stdout + done.stderr
