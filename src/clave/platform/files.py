"""Files under the data directory: databases, the dev inbox, key files. Only clave reads them."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("clave.files")

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private(path: Path) -> None:
    """Make `path` readable and writable by its owner only, saying so when it was not."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    wanted = DIRECTORY_MODE if path.is_dir() else FILE_MODE
    if mode & ~wanted & 0o777:
        os.chmod(path, wanted)
        log.warning("tightened %s from %03o to %03o", path, mode, wanted)


def secure_data_dir(data_dir: Path) -> None:
    """Create the data directory 0700, and tighten it and every file in it that is more open
    (a database copied in, or made by an older clave with the default umask)."""
    data_dir.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    private(data_dir)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            private(Path(root) / name)
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                private(path)
