"""Center shift: how far each validation center's patients lie from the training centers', in the models' own
inputs (standardized mean differences) and in their applicability domains."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hccrad.survival.model import CoxRiskModel
from hccrad.survival.transformers import numeric_columns


def standardized_mean_difference(group: np.ndarray, reference: np.ndarray) -> float:
    """``(mean_group - mean_reference) / sqrt((sd_group^2 + sd_reference^2) / 2)`` (Austin 2009), NaN-aware; NaN
    when both SDs are 0."""
    group, reference = np.asarray(group, float), np.asarray(reference, float)
    pooled = np.sqrt((np.nanvar(group, ddof=1) + np.nanvar(reference, ddof=1)) / 2) if (
        np.sum(~np.isnan(group)) > 1 and np.sum(~np.isnan(reference)) > 1) else np.nan
    return float((np.nanmean(group) - np.nanmean(reference)) / pooled) if pooled and pooled > 0 else np.nan


def center_shift(models: dict[str, CoxRiskModel], table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model and validation center: patients, the share outside the model's applicability domain and the
    largest |SMD| of its inputs (first table); per model, center and input: the SMD against the training
    centers, and for a model that harmonizes its features by ComBat, the SMD of the raw feature before ComBat
    too (second table).

    Parameters
    ----------
    table
        Every patient (``dataset``, ``center`` and the models' inputs), as the models were fitted on.
    """
    training = table["dataset"] == "training"
    summary, inputs = [], []
    for name, model in models.items():
        design, _ = model.design(table)
        place = model.applicability(table)
        raw = None
        if model.combat_ and model.feature_inputs_:
            needed = [c for c in model.covariates_ if c in model.feature_inputs_]
            raw = numeric_columns(table, needed)
        for center in sorted(table.loc[~training, "center"].astype(str).unique()):
            members = ((table["center"].astype(str) == center) & ~training).to_numpy()
            smds = {}
            for covariate in model.covariates_:
                smd = standardized_mean_difference(design.loc[members, covariate], design.loc[training, covariate])
                smds[covariate] = smd
                row = {"model": name, "center": center, "input": covariate, "smd": smd}
                if raw is not None and covariate in raw:
                    row["smd_before_combat"] = standardized_mean_difference(raw.loc[members, covariate],
                                                                            raw.loc[training, covariate])
                inputs.append(row)
            outside = place.loc[members, "outside"]
            recorded = outside.notna().any()
            summary.append({"model": name, "center": center, "patients": int(members.sum()),
                            "share_outside_domain": float(outside.fillna(False).astype(bool).mean()) if recorded
                            else np.nan,
                            "max_abs_smd": float(np.nanmax(np.abs(list(smds.values())))) if smds else np.nan,
                            "largest_shift_input": max(smds, key=lambda c: abs(np.nan_to_num(smds[c])))
                            if smds else ""})
    return pd.DataFrame(summary), pd.DataFrame(inputs)
