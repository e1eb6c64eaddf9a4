"""Input: the study manifest, clinical table, CT images, masks and acquisition metadata.

The names below load on first use (PEP 562), so that a worker reading images does not load the manifest's
table machinery (pandas, pyarrow).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ManifestError": "hccrad.io.config",
    "SeriesRule": "hccrad.io.config",
    "SplitConfig": "hccrad.io.config",
    "StudyConfig": "hccrad.io.config",
    "load_config": "hccrad.io.config",
    "GeometryMismatchError": "hccrad.io.images",
    "ImageReadError": "hccrad.io.images",
    "array_with_spacing": "hccrad.io.images",
    "check_geometry": "hccrad.io.images",
    "read_image": "hccrad.io.images",
    "read_mask": "hccrad.io.images",
    "PatientRecord": "hccrad.io.manifest",
    "Study": "hccrad.io.manifest",
    "ValidationIssue": "hccrad.io.manifest",
    "load_study": "hccrad.io.manifest",
}

__all__ = [
    "GeometryMismatchError",
    "ImageReadError",
    "ManifestError",
    "PatientRecord",
    "SeriesRule",
    "SplitConfig",
    "Study",
    "StudyConfig",
    "ValidationIssue",
    "array_with_spacing",
    "check_geometry",
    "load_config",
    "load_study",
    "read_image",
    "read_mask",
]

if TYPE_CHECKING:
    from hccrad.io.config import ManifestError, SeriesRule, SplitConfig, StudyConfig, load_config
    from hccrad.io.images import (
        GeometryMismatchError,
        ImageReadError,
        array_with_spacing,
        check_geometry,
        read_image,
        read_mask,
    )
    from hccrad.io.manifest import PatientRecord, Study, ValidationIssue, load_study


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hccrad.io' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
