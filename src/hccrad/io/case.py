"""One patient's CT and label mask, kept together with their geometry.

Stages used to pass a bare (array, spacing) pair around and reorder the spacing by hand; a :class:`CTCase`
holds the SimpleITK image (origin, spacing, direction), the labels on the same grid, and the study's regions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad.io.config import SeriesRule
from hccrad.io.images import check_geometry, read_image, spacing_zyx
from hccrad.io.mask_sources import MaskSource, ct_reference, read_case_mask
from hccrad.io.masks import (
    LABEL_LIVER,
    LABEL_PORTAL_VEIN,
    LABEL_TUMOR,
    remnant_liver_mask,
    tumor_mask,
)


@dataclass(frozen=True, eq=False)
class CTCase:
    """A CT in HU with its label mask (0 background, 1 liver, 2 tumor, 3 portal vein) on the same grid.

    Parameters
    ----------
    image
        The CT, any pixel type, with its geometry.
    labels
        The labels, uint8, shape (z, y, x) = the image's size reversed.
    exclude_portal_vein
        Leave the intrahepatic portal vein out of :attr:`remnant_liver` (default: keep it, as the paper's
        liver label included its vessels).
    mask_mapping
        How the labels were read (:class:`hccrad.io.mask_sources.CaseMask`'s ``mapping``); empty for arrays.
    """

    image: sitk.Image
    labels: np.ndarray
    exclude_portal_vein: bool = False
    mask_mapping: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels.shape != self.image.GetSize()[::-1]:
            raise ValueError(f"labels of shape {self.labels.shape} are not on the CT's grid "
                             f"{self.image.GetSize()[::-1]} (z, y, x)")

    @classmethod
    def read(cls, ct: Path | str, mask: MaskSource | Path | str, rule: SeriesRule | None = None,
             exclude_portal_vein: bool = False) -> CTCase:
        """Read a CT (file or DICOM folder) and its mask (a path: an hccrad label map, DICOM SEG or RTSTRUCT; or a
        :class:`~hccrad.io.mask_sources.MaskSource` with its convention) onto the CT's grid
        (:func:`~hccrad.io.mask_sources.read_case_mask`)."""
        image = read_image(ct, rule)
        source = MaskSource.of(mask)
        reference = ct_reference(ct, image, rule) if any(_is_dicom_object(p) for p in source.files) else None
        case_mask = read_case_mask(source, image, reference)
        return cls(image, case_mask.labels, exclude_portal_vein, case_mask.mapping)

    @classmethod
    def from_arrays(cls, image: sitk.Image, labels: np.ndarray, exclude_portal_vein: bool = False) -> CTCase:
        """A case from a CT and a label array already on its grid."""
        return cls(image, np.asarray(labels, dtype=np.uint8), exclude_portal_vein)

    def check_same_space(self, other: sitk.Image) -> None:
        """Raise ``GeometryMismatchError`` naming each difference when ``other`` is not on this CT's grid."""
        check_geometry(self.image, other)

    @property
    def hu(self) -> np.ndarray:
        """The CT's voxels (z, y, x) in its stored type, a read-only view."""
        return sitk.GetArrayViewFromImage(self.image)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing (z, y, x) in mm, in the arrays' axis order."""
        return spacing_zyx(self.image)

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL."""
        return float(np.prod(self.image.GetSpacing())) / 1000.0

    @cached_property
    def tumor(self) -> np.ndarray:
        """The tumor: the largest 26-connected component of label 2 (boolean, z y x)."""
        return tumor_mask(self.labels)

    @cached_property
    def remnant_liver(self) -> np.ndarray:
        """The remnant liver (Rliver): label 1 with the intrahepatic portal vein unless excluded, no tumor voxel."""
        return remnant_liver_mask(self.labels, self.exclude_portal_vein)

    @property
    def liver(self) -> np.ndarray:
        """Label 1 (boolean, z y x)."""
        return self.labels == LABEL_LIVER

    @property
    def any_tumor(self) -> np.ndarray:
        """Every label-2 voxel, all components (boolean, z y x)."""
        return self.labels == LABEL_TUMOR

    @property
    def portal_vein(self) -> np.ndarray:
        """Label 3 (boolean, z y x)."""
        return self.labels == LABEL_PORTAL_VEIN

    def volume_ml(self, region: np.ndarray) -> float:
        """Volume of a boolean region on this grid, in mL."""
        return float(np.count_nonzero(region)) * self.voxel_ml


def _is_dicom_object(path: Path) -> bool:
    """Whether a mask path may be a DICOM SEG or RTSTRUCT (whose references to the CT series are checked)."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in (".dcm", "") or not path.name.lower().endswith(
        (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"))
