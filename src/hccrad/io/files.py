"""Atomic file writing: a crash never leaves a half-written output behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hccrad.io.errors import InputError


class OutputError(InputError, OSError):
    """An output folder or file that cannot be written."""


def ensure_writable_dir(path: Path | str) -> Path:
    """Create the folder ``path`` if needed and check that files can be written in it.

    Raises
    ------
    OutputError
        Naming the folder and the reason (a file in the way, no permission, a read-only file system).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".hccrad-write-test.", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot write to the output folder {path}: {reason}"
                          + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else "")) from exc
    return path


def write_atomic(path: Path | str, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide outputs from other users
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
