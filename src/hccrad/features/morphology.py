"""Morphological factors of the tumor and the liver parenchyma (the paper's Supplementary Table 2).

Column names carry their units. HU statistics are computed on the CT's native grid, on the voxels of each
region, with numpy's linear-interpolation percentiles (type 7, as R's default and PyRadiomics).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from hccrad.io.masks import inscribed_diameter_mm

#: Paper factor (Supplementary Table 2) -> hccrad column.
PAPER_MORPHOLOGY_NAMES: dict[str, str] = {
    "Tumor volume": "Tumor_volume_mL",
    "Mean CT attenuation of the tumor": "Tumor_HU_mean",
    "Median CT attenuation of the tumor": "Tumor_HU_median",
    "25th percentile of the CT attenuation of the tumor": "Tumor_HU_p25",
    "75th percentile of the CT attenuation of the tumor": "Tumor_HU_p75",
    "Interquartile CT attenuation of the tumor": "Tumor_HU_IQR",
    "CT attenuation of the tumor at a rate of 25%": "Tumor_HU_rate25",
    "CT attenuation of the tumor at a rate of 75%": "Tumor_HU_rate75",
    "Ratio between the liver parenchyma volume and the maximum diameter of the portal vein":
        "Rliver_volume_to_PV_diameter_mL_per_mm",
    "Ratio between the tumor volume and the liver parenchyma volume": "Tumor_to_Rliver_volume_ratio",
    "Mean CT attenuation of the liver parenchyma": "Rliver_HU_mean",
    "Median CT attenuation of the liver parenchyma": "Rliver_HU_median",
    "25th percentile of the CT attenuation of the liver parenchyma": "Rliver_HU_p25",
    "75th percentile of the CT attenuation of the liver parenchyma": "Rliver_HU_p75",
    "Interquartile CT attenuation of the liver parenchyma": "Rliver_HU_IQR",
    "CT attenuation of the liver parenchyma at a rate of 25%": "Rliver_HU_rate25",
    "CT attenuation of the liver parenchyma at a rate of 75%": "Rliver_HU_rate75",
}


def attenuation_statistics(
    values: np.ndarray,
    prefix: str,
    rates: tuple[float, float] = (0.25, 0.75),
    rate_definition: Literal["range", "robust_range"] = "robust_range",
) -> dict[str, float]:
    """Seven HU statistics of a region: mean, median, 25th/75th percentiles, IQR and the two "rates".

    The rate statistic is the HU value a fraction ``q`` of the way through the region's HU range:
    ``p1 + q (p99 - p1)`` (``robust_range``, the default: a few stray voxels cannot move it) or
    ``min + q (max - min)`` (``range``).
    """
    values = np.asarray(values, dtype=np.float64)
    p1, p25, median, p75, p99 = np.percentile(values, [1, 25, 50, 75, 99])  # one partition for all five
    if rate_definition == "range":
        low, high = float(values.min()), float(values.max())
    else:
        low, high = float(p1), float(p99)
    stats = {
        f"{prefix}_HU_mean": float(values.mean()),
        f"{prefix}_HU_median": float(median),
        f"{prefix}_HU_p25": float(p25),
        f"{prefix}_HU_p75": float(p75),
        f"{prefix}_HU_IQR": float(p75 - p25),
    }
    for rate in rates:
        stats[f"{prefix}_HU_rate{round(rate * 100)}"] = low + rate * (high - low)
    return stats


#: The portal vein's largest inscribed diameter (mm): :func:`hccrad.io.masks.inscribed_diameter_mm`, which the
#: label-3 checks share.
largest_inscribed_diameter_mm = inscribed_diameter_mm


def morphological_factors(
    ct: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    tumor: np.ndarray,
    rliver: np.ndarray,
    portal_vein_diameter_mm: float | None,
    rates: tuple[float, float] = (0.25, 0.75),
    rate_definition: Literal["range", "robust_range"] = "robust_range",
) -> tuple[dict[str, float], dict[str, str]]:
    """All morphological factors of one case, and notes explaining any missing value.

    Parameters
    ----------
    ct
        HU array (z, y, x).
    spacing_zyx
        Voxel spacing in mm, same axis order.
    tumor, rliver
        Boolean region masks on the CT's grid.
    portal_vein_diameter_mm
        Maximum portal-vein diameter (from the clinical table or the label-3 mask); None or NaN when
        unknown, in which case the volume / diameter ratio is NaN with a note.
    """
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    tumor_ml = float(tumor.sum()) * voxel_ml
    rliver_ml = float(rliver.sum()) * voxel_ml
    factors: dict[str, float] = {"Tumor_volume_mL": tumor_ml, "Rliver_volume_mL": rliver_ml}
    notes: dict[str, str] = {}
    factors.update(attenuation_statistics(ct[tumor], "Tumor", rates, rate_definition))
    factors.update(attenuation_statistics(ct[rliver], "Rliver", rates, rate_definition))
    factors["Tumor_to_Rliver_volume_ratio"] = tumor_ml / rliver_ml if rliver_ml > 0 else math.nan
    if portal_vein_diameter_mm is None or not math.isfinite(portal_vein_diameter_mm) or portal_vein_diameter_mm <= 0:
        factors["PV_max_diameter_mm"] = math.nan
        factors["Rliver_volume_to_PV_diameter_mL_per_mm"] = math.nan
        notes["Rliver_volume_to_PV_diameter_mL_per_mm"] = (
            "no portal-vein diameter: give portal_vein_diameter_mm in the clinical table or label 3 in the mask"
        )
    else:
        factors["PV_max_diameter_mm"] = float(portal_vein_diameter_mm)
        factors["Rliver_volume_to_PV_diameter_mL_per_mm"] = rliver_ml / portal_vein_diameter_mm
    return factors, notes
