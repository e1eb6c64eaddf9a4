"""Patient identifiers as file names: which ids are allowed, and the one function that turns an id into a path.

An id becomes a file name in several output folders (feature cases, predicted masks, QC images), so an id that
could name another folder (``../models/C``), a hidden file, or a second file on a case-insensitive file system
is refused when the manifest is read, and every path built from an id is checked to stay in its folder.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from hccrad.io.errors import InputError

#: The longest id accepted (file systems allow 255 bytes per name; suffixes need the rest).
MAX_ID_LENGTH = 128
#: Characters no id may hold: path separators and the characters Windows forbids in file names.
FORBIDDEN_CHARACTERS = '/\\:*?"<>|'


class UnsafePatientId(InputError, ValueError):
    """A patient id that cannot be used as a file name."""


def patient_id_problem(patient_id: str) -> str | None:
    """Why ``patient_id`` cannot be a file name, or None when it can.

    Refused: an empty or blank id, surrounding spaces, a leading dot (``.``, ``..``, hidden files), path
    separators and the other characters in :data:`FORBIDDEN_CHARACTERS`, control characters, and ids longer than
    :data:`MAX_ID_LENGTH` characters.
    """
    if not patient_id or not patient_id.strip():
        return "is empty"
    if patient_id != patient_id.strip():
        return "has leading or trailing spaces"
    if patient_id.startswith("."):
        return "starts with a dot (it would name a hidden file or a parent folder)"
    bad = sorted({c for c in patient_id if c in FORBIDDEN_CHARACTERS})
    if bad:
        return f"holds {' '.join(repr(c) for c in bad)}; path separators and {FORBIDDEN_CHARACTERS} are not allowed"
    if any(unicodedata.category(c) == "Cc" for c in patient_id):
        return "holds control characters"
    if len(patient_id) > MAX_ID_LENGTH:
        return f"is {len(patient_id)} characters long; at most {MAX_ID_LENGTH} are allowed"
    return None


def case_path(folder: Path | str, patient_id: str, suffix: str) -> Path:
    """The file ``<folder>/<patient_id><suffix>``, after checking that the id is a safe file name.

    Raises
    ------
    UnsafePatientId
        When the id is refused by :func:`patient_id_problem`, or the path would leave ``folder``.
    """
    problem = patient_id_problem(patient_id)
    if problem is not None:
        raise UnsafePatientId(f"patient id {patient_id!r} {problem}")
    folder = Path(folder)
    path = folder / f"{patient_id}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise UnsafePatientId(f"patient id {patient_id!r} would write outside {folder}")
    return path
