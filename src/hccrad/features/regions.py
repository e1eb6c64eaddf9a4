"""The two regions of the study: the tumor and the remnant liver (Rliver)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hccrad.io.masks import LABEL_LIVER, LABEL_PORTAL_VEIN, LABEL_TUMOR, largest_component


class RegionError(ValueError):
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
    for index in range(labels.shape[0]):
        if liver_or_tumor[index].any():
            enclosed[index] = ndimage.binary_fill_holes(liver_or_tumor[index])
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
    count = int(mask.sum())
    if count == 0:
        raise RegionError(f"{name} region is empty")
    if count < min_voxels:
        raise RegionError(f"{name} region has {count} voxels, fewer than the minimum {min_voxels}")
