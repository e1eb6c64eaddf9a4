"""Input: the study manifest, clinical table, CT images, masks and acquisition metadata."""

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
