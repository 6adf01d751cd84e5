"""Output files that are never seen half-written: write beside the target, then rename over it.

``os.replace`` within one directory is atomic on POSIX and Windows, so a reader (or a sweep
resumed after a crash) finds either the old file or the complete new one.

The result has the permissions a plain ``open(path, "w")`` would give it: a new file gets
``0o666`` less the process umask (``tempfile.mkstemp`` would make every output ``0o600``, which
collaborators on shared storage cannot read), and a file that is replaced keeps its mode.
"""

from __future__ import annotations

import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that infer the format from it
    work) that replaces ``path`` when the block ends without an exception; removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically; returns ``path``."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def _create_beside(path: Path) -> Path:
    """Create an empty, uniquely named file in ``path``'s directory with a normal write's mode.

    Opening with mode ``0o666`` lets the kernel apply the umask (and any default ACL), which
    reading the umask ourselves could not do without briefly changing it for every thread.
    """
    try:
        keep_mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        keep_mode = None
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{path.suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        if keep_mode is not None:
            try:
                os.chmod(tmp, keep_mode)
            except OSError:
                os.unlink(tmp)
                raise
        return tmp
    raise FileExistsError(f"{path.parent}: could not create a temporary file for {path.name}")
