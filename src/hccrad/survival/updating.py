"""Updating a saved model's calibration on another hospital's patients (Steyerberg, *Clinical Prediction Models*,
2nd ed., ch. 20; Van Calster et al. 2019), never its covariates or their relative weights:

* ``baseline`` (recalibration in the large): the baseline cumulative hazard is re-estimated on the updating cohort
  by Breslow's estimator with the frozen linear predictor as an offset;
* ``slope``: the linear predictor is multiplied by the calibration slope b, the coefficient of the frozen linear
  predictor in a Cox model on the updating cohort, around the development patients' mean linear predictor c
  (``lp' = c + b (lp - c)``), so that the average development patient's prediction is kept; the development
  baseline hazard is kept (times exp(c (1 - b)), which absorbs the centring);
* ``both``: the slope, then the baseline re-estimated with the new linear predictor.

Each update is monotone in the risk score (b > 0 is required), so the ranking of patients, hence every
discrimination statistic, is unchanged. The updated artifact records its parent's checksum, the method, the
updating cohort and the new parameters (``lineage``).
"""

from __future__ import annotations

import copy
import datetime as dt
import warnings
from typing import Any

import numpy as np
import pandas as pd

from hccrad.io.errors import InputError
from hccrad.survival.coxmath import baseline_variance_terms, breslow_baseline
from hccrad.survival.model import CoxRiskModel

UPDATE_METHODS = ("baseline", "slope", "both")


class UpdateError(InputError, ValueError):
    """A model that cannot be updated on the cohort given (too few events, a slope that is not positive)."""


def calibration_slope(lp: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[float, float]:
    """The coefficient of the linear predictor ``lp`` in a Cox model (Efron's ties) on ``time``/``event``, and its
    standard error."""
    from lifelines import CoxPHFitter

    frame = pd.DataFrame({"lp": lp, "time": time, "event": event})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = CoxPHFitter().fit(frame, "time", "event")
    return float(fitted.params_["lp"]), float(fitted.standard_errors_["lp"])


def _scaled(model: CoxRiskModel, slope: float, center: float) -> None:
    """Multiply ``model``'s linear predictor by ``slope`` around ``center``, in place (coefficients, covariance,
    hazard ratios, cut-off and training percentiles on the new scale; the centring into the baseline hazard)."""
    model.coef_ = slope * np.asarray(model.coef_, float)
    model.baseline_cumhaz_ = np.asarray(model.baseline_cumhaz_, float) * np.exp(center * (1.0 - slope))
    if getattr(model, "covariance_", None) is not None:
        model.covariance_ = slope**2 * np.asarray(model.covariance_, float)
    hazards = model.hazard_ratios_.copy()
    hazards["coef"] = slope * hazards["coef"]
    hazards["hr"] = np.exp(hazards["coef"])
    hazards["ci_low"] = np.exp(slope * np.log(hazards["ci_low"]))
    hazards["ci_high"] = np.exp(slope * np.log(hazards["ci_high"]))
    model.hazard_ratios_ = hazards
    model.cutoff_ = {**model.cutoff_, "value": float(slope * model.cutoff_["value"]),
                     "method": f"{model.cutoff_['method']}, times the calibration slope {slope:.4g}"}
    if getattr(model, "training_risk_percentiles_", None) is not None:
        model.training_risk_percentiles_ = slope * np.asarray(model.training_risk_percentiles_, float)


def update_model(model: CoxRiskModel, table: pd.DataFrame, method: str, cohort: dict[str, Any],
                 parent_checksum: str | None = None) -> CoxRiskModel:
    """A copy of ``model`` whose calibration is updated on the patients of ``table`` (``pfs_months``,
    ``pfs_event`` and the model's inputs), by ``method`` (:data:`UPDATE_METHODS`).

    Parameters
    ----------
    cohort
        What the artifact records of the updating cohort (study name, patients, events, centers).
    parent_checksum
        The SHA-256 of the parent artifact's content.

    Raises
    ------
    UpdateError
        Fewer than 5 events, or a calibration slope that is not positive (the model ranks this cohort's patients
        backwards: updating cannot repair that).
    """
    if method not in UPDATE_METHODS:
        raise UpdateError(f"update method {method!r}: expected one of {', '.join(UPDATE_METHODS)}")
    time = table["pfs_months"].to_numpy(float)
    event = table["pfs_event"].to_numpy(int)
    if event.sum() < 5:
        raise UpdateError(f"model {model.name}: the updating cohort has {int(event.sum())} progressions; at least 5 "
                          "are needed to update a baseline hazard or a slope")
    updated = copy.deepcopy(model)
    lp = model.predict(table)
    parameters: dict[str, Any] = {}
    if method in ("slope", "both"):
        slope, slope_se = calibration_slope(lp, time, event)
        if not slope > 0:
            raise UpdateError(f"model {model.name}: calibration slope {slope:.3f} on the updating cohort is not "
                              "positive; the model ranks these patients backwards and cannot be updated, only refitted")
        center = float(np.asarray(model.covariate_means_, float) @ np.asarray(model.coef_, float))
        _scaled(updated, slope, center)
        parameters.update(slope=slope, slope_se=slope_se, center=center)
    if method in ("baseline", "both"):
        new_lp = updated.predict(table)
        updated.baseline_times_, updated.baseline_cumhaz_ = breslow_baseline(time, event, new_lp)
        design, _ = updated.design(table)
        updated.hazard_terms_, updated.mean_terms_ = baseline_variance_terms(time, event, design.to_numpy(float),
                                                                             updated.coef_)
        parameters["baseline"] = "Breslow on the updating cohort, the linear predictor as an offset"
    else:  # the development baseline, rescaled: its variance terms no longer describe it
        updated.hazard_terms_ = updated.mean_terms_ = None
        updated.covariance_ = None
    updated.lineage_ = {"kind": "update", "method": method, "parent_checksum": parent_checksum,
                        "parent_lineage": getattr(model, "lineage_", None),
                        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                        "updating_cohort": cohort, "parameters": parameters}
    return updated
