"""Which image family a feature column belongs to: tumor (T) or remnant liver (L). Used by the models, their
selection and the study (no survival module imports another for it)."""

from __future__ import annotations


def feature_family(column: str) -> str | None:
    """``T`` for tumor features, ``L`` for liver-parenchyma features, None for anything else.

    The tumor / parenchyma volume ratio is a liver-parenchyma factor in the paper (Supplementary Table 3).
    """
    if column == "Tumor_to_Rliver_volume_ratio":
        return "L"
    if column.startswith("Tumor_"):
        return "T"
    if column.startswith("Rliver_") or column == "PV_max_diameter_mm":
        return "L"
    return None
