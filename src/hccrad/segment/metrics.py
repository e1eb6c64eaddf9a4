"""Segmentation metrics: Dice (DSC) and the 95th-percentile Hausdorff distance (HD95) in millimetres.

HD95 is MedPy's ``hd95``: the surface voxels of both masks are found, the distance (with the image's real
spacing) from every surface voxel of each mask to the nearest surface voxel of the other is computed, and the
95th percentile of the two directed sets pooled together is reported. (MONAI instead takes the larger of the
two directed 95th percentiles; DeepMind's surface-distance weights surface elements by area.)

Empty masks: both empty -> DSC 1, HD95 0; one empty -> DSC 0, HD95 missing (NaN) with the reason in ``note``.
"""

from __future__ import annotations

import math

import numpy as np

#: Evaluated regions: the whole liver (labels 1, 2, 3: the organ) and the tumor (label 2).
REGIONS = {"liver": (1, 2, 3), "tumor": (2,)}


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice similarity coefficient of two masks of the same shape (1.0 when both are empty)."""
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    total = prediction.sum() + reference.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(prediction, reference).sum() / total)


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """MedPy's pooled HD95 in mm; NaN when exactly one mask is empty, 0 when both are."""
    from medpy.metric.binary import hd95 as medpy_hd95

    prediction, reference = prediction.astype(bool), reference.astype(bool)
    if not prediction.any() and not reference.any():
        return 0.0
    if not prediction.any() or not reference.any():
        return math.nan
    return float(medpy_hd95(prediction, reference, voxelspacing=spacing_zyx))


def compare_labels(prediction: np.ndarray, reference: np.ndarray, spacing_zyx: tuple[float, float, float]
                   ) -> list[dict]:
    """DSC and HD95 of every region, with a note explaining any missing value."""
    rows = []
    for region, labels in REGIONS.items():
        predicted, expected = np.isin(prediction, labels), np.isin(reference, labels)
        note = ""
        if predicted.any() != expected.any():
            note = "prediction empty" if not predicted.any() else "reference empty"
        elif not predicted.any():
            note = "both empty"
        rows.append({"region": region, "dsc": dice(predicted, expected), "hd95_mm": hd95(predicted, expected,
                                                                                          spacing_zyx),
                     "note": note})
    return rows
