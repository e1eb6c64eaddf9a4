"""The two regions of the study: the tumor and the remnant liver (Rliver)."""

from __future__ import annotations

import numpy as np

from hccrad.io.errors import InputError
from hccrad.io.masks import intrahepatic_portal_vein, remnant_liver_mask, tumor_mask

__all__ = ["RegionError", "check_region", "intrahepatic_portal_vein", "region_attenuation_problems",
           "remnant_liver_mask", "tumor_mask"]


class RegionError(InputError, ValueError):
    """A region is empty or too small for features."""


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
