"""Atomic file writing: a crash never leaves a half-written output behind."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from hccrad.io.errors import InputError


class OutputError(InputError, OSError):
    """An output folder or file that cannot be written."""


#: Write faults a user can fix (free space, permissions, a read-only mount): one line and status 2, not a traceback.
FIXABLE_WRITE_ERRORS = {errno.ENOSPC: "the disk is full: free space",
                        errno.EDQUOT: "the disk quota is exceeded: free space",
                        errno.EROFS: "the file system is read-only: mount it writable or choose another output_dir",
                        errno.EACCES: "permission denied: make the folder writable or choose another output_dir",
                        errno.EPERM: "operation not permitted: make the folder writable or choose another output_dir"}


def write_fault_message(error: BaseException) -> str | None:
    """One line for a write fault the user can fix (:data:`FIXABLE_WRITE_ERRORS`), naming the file, what happened
    and the remedy; None for any other error."""
    if not isinstance(error, OSError) or error.errno not in FIXABLE_WRITE_ERRORS:
        return None
    where = f" {error.filename}" if error.filename else ""
    return (f"cannot write{where}: {FIXABLE_WRITE_ERRORS[error.errno]}, then run the same command again (finished "
            "work is kept and reused)")


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


def _write_temporary(path: Path, data: bytes | str) -> str:
    """``data`` in a new temporary file beside ``path`` (readable as an ordinary output); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide outputs from other users
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return temporary


def write_atomic(path: Path | str, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    write_atomic_group({Path(path): data})


def write_atomic_group(files: dict[Path, bytes | str]) -> None:
    """Write several files that belong together (one result in several formats): every file is written to a
    temporary file first, and only when all are written are they renamed into place. A full disk or any other
    failure while writing leaves every earlier file as it was, never a new one beside an old one."""
    temporaries: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            temporaries.append((_write_temporary(Path(path), data), Path(path)))
        for temporary, path in temporaries:
            os.replace(temporary, path)
    finally:
        for temporary, _path in temporaries:
            if os.path.exists(temporary):
                os.unlink(temporary)
