"""One patient's CT and label mask, kept together with their geometry.

Stages used to pass a bare (array, spacing) pair around and reorder the spacing by hand; a :class:`CTCase`
holds the SimpleITK image (origin, spacing, direction), the labels on the same grid, and the study's regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hccrad.io.config import SeriesRule
from hccrad.io.images import HCCRAD_LABELS, check_geometry, read_image, read_mask, spacing_zyx
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
    """

    image: sitk.Image
    labels: np.ndarray
    exclude_portal_vein: bool = False

    def __post_init__(self) -> None:
        if self.labels.shape != self.image.GetSize()[::-1]:
            raise ValueError(f"labels of shape {self.labels.shape} are not on the CT's grid "
                             f"{self.image.GetSize()[::-1]} (z, y, x)")

    @classmethod
    def read(cls, ct: Path | str, mask: Path | str, rule: SeriesRule | None = None,
             allowed_labels: tuple[int, ...] | None = HCCRAD_LABELS, exclude_portal_vein: bool = False) -> CTCase:
        """Read a CT (file or DICOM folder) and its mask, checked and aligned (see :func:`read_mask`)."""
        image = read_image(ct, rule)
        labels = sitk.GetArrayFromImage(read_mask(mask, image, allowed_labels))
        return cls(image, labels, exclude_portal_vein)

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
