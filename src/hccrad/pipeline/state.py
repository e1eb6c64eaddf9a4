"""What a run may reuse, and one run per output folder at a time.

* :class:`RunState` (``run_state.json``): for each finished stage, the digest of the inputs and settings that
  made it, and the SHA-256 of every file the stage wrote (its output folders, listed after it finished). A stage
  is reused only when its inputs are unchanged and every recorded output exists with its recorded hash;
  otherwise :meth:`RunState.why_not_reusable` names the reason (the file that is missing or changed).
* :func:`output_lock` (``hccrad.lock``): a second run on the same output folder stops with a one-line error
  naming the process that holds it; a lock left by a dead process is taken over, with a note.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from hccrad.io.errors import InputError
from hccrad.io.files import write_atomic
from hccrad.io.provenance import file_sha256

log = logging.getLogger("hccrad.run")

#: Version of ``run_state.json``'s layout; a state of another version is not trusted (every stage runs once).
STATE_VERSION = 2


def folder_digests(root: Path, folders: list[Path]) -> dict[str, str]:
    """SHA-256 of every file under ``folders`` (recursively; temporary ``.*`` files skipped), keyed by its path
    relative to ``root``."""
    digests = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                digests[path.relative_to(root).as_posix()] = file_sha256(path)
    return digests


class RunState:
    """Each finished stage's input fingerprint and output hashes, written atomically after each stage.

    An unreadable ``run_state.json`` is set aside as ``run_state.json.corrupt`` with a warning (``note``), and
    every stage is then checked as if it had never run: features reuse their finished cases on their own, the
    other stages run again.
    """

    def __init__(self, path: Path):
        self.path = path
        self.root = path.parent
        self.note: str | None = None
        self.stages: dict[str, dict] = {}
        if not path.is_file():
            return
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            self.note = (f"{path} was unreadable ({type(exc).__name__}: {exc}); set aside as {aside.name}, "
                         "so every stage is checked afresh")
            log.warning("%s", self.note)
            return
        if data.get("version") == STATE_VERSION and isinstance(data.get("stages"), dict):
            self.stages = data["stages"]
        else:
            self.note = f"{path} is from an older hccrad (no output hashes): every stage is checked afresh"
            log.info("%s", self.note)

    def why_not_reusable(self, stage: str, fingerprint: str) -> str | None:
        """None when ``stage`` may be reused, else why not: never finished, inputs or settings changed, or a
        recorded output missing or changed (named)."""
        record = self.stages.get(stage)
        if record is None:
            return "it has not finished in this output folder before"
        if record.get("inputs") != fingerprint:
            return "its inputs or settings changed"
        outputs = record.get("outputs") or {}
        if not outputs:
            return "no outputs are recorded"
        for relative, recorded in sorted(outputs.items()):
            path = self.root / relative
            if not path.is_file():
                return f"its output {path} is missing"
            if file_sha256(path) != recorded:
                return f"its output {path} changed since it was written"
        return None

    def forget(self, stage: str) -> None:
        """Drop ``stage``'s record before it runs again, so that an interrupted stage is never reused."""
        if self.stages.pop(stage, None) is not None:
            self._write()

    def done(self, stage: str, fingerprint: str, folders: list[Path]) -> None:
        """Record that ``stage`` finished from inputs ``fingerprint``, with the hash of every file in ``folders``."""
        self.stages[stage] = {"inputs": fingerprint, "outputs": folder_digests(self.root, folders),
                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._write()

    def _write(self) -> None:
        write_atomic(self.path, json.dumps({"version": STATE_VERSION, "stages": self.stages}, indent=2))


class RunLockedError(InputError):
    """Another live hccrad run holds the output folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read_lock(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


@contextlib.contextmanager
def output_lock(path: Path, folder: Path, command: str = "hccrad run") -> Iterator[str | None]:
    """Hold the lock file ``path`` of output ``folder`` for the duration of the block; yields a note when a stale
    lock (its process dead, on this host) was taken over. Every command that writes into the output folder
    (``run`` and each stage command) takes it, so no two write one folder at once.

    Parameters
    ----------
    command
        The command that holds the lock (``hccrad evaluate``), named to a second command that finds it held.

    Raises
    ------
    RunLockedError
        ``another hccrad command (hccrad run, pid N on HOST, started T) holds FOLDER``, while that process lives.
    """
    host = socket.gethostname()
    note = None
    for _attempt in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            pid, holder_host = holder.get("pid"), holder.get("host")
            started = holder.get("started", "at an unknown time")
            same_host = holder_host in (None, host)
            if isinstance(pid, int) and (not same_host or _alive(pid)):
                raise RunLockedError(
                    f"another hccrad command ({holder.get('command', 'hccrad run')}, pid {pid} on "
                    f"{holder_host or host}, started {started}) holds {folder}; wait for it to finish, or delete "
                    f"{path} if that process is gone") from None
            note = (f"took over a stale lock of {folder} (pid {pid}, started {started}, no longer running)"
                    if isinstance(pid, int) else f"took over an unreadable lock file {path}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        with os.fdopen(handle, "w") as stream:
            json.dump({"pid": os.getpid(), "host": host, "command": command,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, stream)
        break
    else:
        holder = _read_lock(path)
        raise RunLockedError(f"another hccrad command ({holder.get('command', 'hccrad run')}, pid {holder.get('pid')}) "
                             f"took {folder} at the same moment")
    if note:
        log.warning("%s", note)
    try:
        yield note
    finally:
        if _read_lock(path).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
