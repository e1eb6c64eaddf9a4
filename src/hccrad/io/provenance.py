"""Provenance shared by the artifacts and the report: software versions and file checksums."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

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
    """SHA-256 of a file's bytes (hex), or ``missing`` when there is no such file."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
