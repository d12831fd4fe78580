"""What `pip install .` (the container image) installs: every file clave reads at run time."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "clave"


def test_every_data_file_of_the_package_is_installed() -> None:
    """A file beside the code that no package-data pattern names is missing from the wheel
    (the Lua scripts of the Redis store were, once): clave would fail only where it is
    installed, never in an editable checkout."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["clave"]
    data = [
        p.relative_to(PACKAGE)
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert any(p.suffix == ".lua" for p in data)
    missing = [str(p) for p in data if not any(p.match(pattern) for pattern in patterns)]
    assert missing == []
