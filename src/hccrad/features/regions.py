"""The two regions of the study: the tumor and the remnant liver (Rliver)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hccrad.io.errors import InputError
from hccrad.io.masks import LABEL_LIVER, LABEL_PORTAL_VEIN, LABEL_TUMOR, bounding_box, largest_component


class RegionError(InputError, ValueError):
    """A region is empty or too small for features."""


def tumor_mask(labels: np.ndarray) -> np.ndarray:
    """``Tumor``: the largest 26-connected component of label 2."""
    return largest_component(labels == LABEL_TUMOR)


def intrahepatic_portal_vein(labels: np.ndarray) -> np.ndarray:
    """Label-3 voxels enclosed by liver or tumor in their axial slice (2D hole filling).

    Intrahepatic branches are islands inside the liver's cross-section; the extrahepatic trunk at the hilum
    lies on the liver's border and is not enclosed.
    """
    liver_or_tumor = np.isin(labels, (LABEL_LIVER, LABEL_TUMOR))
    enclosed = np.zeros_like(liver_or_tumor)
    box = bounding_box(liver_or_tumor)
    if box is None:
        return enclosed
    # hole filling on the liver's box gives the same result as on the whole slice, which is outside-connected
    for index in range(box[0].start, box[0].stop):
        enclosed[index][box[1:]] = ndimage.binary_fill_holes(liver_or_tumor[index][box[1:]])
    return enclosed & (labels == LABEL_PORTAL_VEIN)


def remnant_liver_mask(labels: np.ndarray, exclude_portal_vein: bool = False) -> np.ndarray:
    """``Rliver``: the liver without any tumor voxel.

    Label 1, plus the intrahepatic portal vein (label 3 enclosed by the liver) unless
    ``exclude_portal_vein``. No label-2 voxel is ever included, whichever tumor component it belongs to.
    """
    liver = labels == LABEL_LIVER
    if not exclude_portal_vein:
        liver = liver | intrahepatic_portal_vein(labels)
    return liver & (labels != LABEL_TUMOR)


def check_region(mask: np.ndarray, name: str, min_voxels: int) -> None:
    """Raise :class:`RegionError` when the boolean ``mask`` (z, y, x) is empty or has fewer than ``min_voxels``."""
    count = int(mask.sum())
    if count == 0:
        raise RegionError(f"{name} region is empty")
    if count < min_voxels:
        raise RegionError(f"{name} region has {count} voxels, fewer than the minimum {min_voxels}")


#: A region whose mean lies below this (HU) is in air or lung: the mask does not lie on the CT's anatomy.
REGION_HU_MEAN_AT_LEAST = -200.0
#: A region whose mean lies above this (HU) is in bone, metal or lipiodol; the features are computed, with a warning.
REGION_HU_MEAN_WARNING = 300.0


def region_attenuation_problems(ct: np.ndarray, region: np.ndarray, name: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) about a region's mean HU, by the rules in docs/manifest.md ("Image checks").

    Parameters
    ----------
    ct
        CT voxels in HU (z, y, x).
    region
        Boolean mask of the region, same shape.
    """
    mean = float(np.mean(ct[region], dtype=np.float64))
    if mean < REGION_HU_MEAN_AT_LEAST:
        return [f"{name} mean attenuation is {mean:.0f} HU, in air or lung (below {REGION_HU_MEAN_AT_LEAST:g}): "
                "the mask does not lie on the CT's anatomy"], []
    if mean > REGION_HU_MEAN_WARNING:
        return [], [f"{name} mean attenuation is {mean:.0f} HU (above {REGION_HU_MEAN_WARNING:g}): bone, metal or "
                    "lipiodol in the region; check the mask"]
    return [], []
