"""Provenance shared by the artifacts and the report: software versions and file checksums."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from hccrad import __version__

#: The libraries whose versions a model's or a report's numbers depend on.
PROVENANCE_PACKAGES = ("numpy", "pandas", "scipy", "scikit-survival", "lifelines", "scikit-learn",
                       "pyradiomics-bhklab", "SimpleITK", "PyWavelets", "numba")


def software_versions() -> dict[str, str]:
    """Versions of Python, hccrad and the libraries in :data:`PROVENANCE_PACKAGES` that are installed."""
    versions = {"hccrad": __version__, "python": platform.python_version()}
    for package in PROVENANCE_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes (hex, read in 1 MiB blocks), or ``missing`` when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def update_with_content(digest: Any, path: Path | str) -> None:
    """Add a file, or every file of a folder (a DICOM series) in name order, to the hashlib ``digest``: each file's
    name and every byte of it, read in 1 MiB blocks. Names, sizes and modification times alone are not enough: a
    restored backup, ``rsync -t`` or a PACS re-export keeps them while the voxels change."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)


def content_digest(*paths: Path | str) -> str:
    """SHA-256 (hex) of the contents of ``paths`` in order (:func:`update_with_content`)."""
    digest = hashlib.sha256()
    for path in paths:
        update_with_content(digest, path)
    return digest.hexdigest()
