"""Comparing models on the same patients.

* censoring-aware (primary): the difference of two IPCW time-dependent AUCs with an influence-function variance
  (:func:`ipcw_auc_comparison`, as ``timeROC::compare``); NRI from Kaplan-Meier estimates (Pencina, D'Agostino
  and Steyerberg 2011) and IDI with inverse-probability-of-censoring weights (Uno et al. 2013)
  (:func:`censored_nri_idi`);
* complete case at t (the paper's analysis): DeLong's paired test and NRI/IDI on a binary outcome;
* nested models: the likelihood-ratio test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from hccrad.evaluate.calibration import km_risk_at
from hccrad.evaluate.discrimination import (
    bootstrap_intervals,
    delong_components,
    influence_se,
    ipcw_auc_influence,
)
from hccrad.evaluate.horizon import DEFAULT_RULE, EventAtHorizon, ipc_weights


@dataclass
class DeLongTest:
    """DeLong's test of two correlated AUCs (pROC's ``roc.test``): both AUCs, their difference, z, p."""
    auc_1: float
    auc_2: float
    difference: float  # auc_2 - auc_1
    ci_low: float
    ci_high: float
    z: float
    p: float
    n_cases: int
    n_controls: int


def delong_test(scores_1: np.ndarray, scores_2: np.ndarray, labels: np.ndarray, level: float = 0.95) -> DeLongTest:
    """DeLong's test for two correlated AUCs (same patients), with Sun and Xu's midrank algorithm.

    The variance of the difference is ``S10/m + S01/n`` projected on (-1, 1), where S10 and S01 are the
    covariance matrices of the two markers' structural components over cases and controls.
    """
    labels = np.asarray(labels, int)
    auc_1, v10_1, v01_1 = delong_components(scores_1, labels)
    auc_2, v10_2, v01_2 = delong_components(scores_2, labels)
    m, n = len(v10_1), len(v01_1)
    s10 = np.cov(np.vstack([v10_1, v10_2]))
    s01 = np.cov(np.vstack([v01_1, v01_2]))
    contrast = np.array([-1.0, 1.0])
    variance = contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n
    difference = auc_2 - auc_1
    se = float(np.sqrt(variance)) if variance > 0 else 0.0
    z = difference / se if se > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(z))) if se > 0 else 1.0
    half = stats.norm.ppf(0.5 + level / 2) * se
    return DeLongTest(auc_1, auc_2, difference, difference - half, difference + half, float(z), p, m, n)


def likelihood_ratio_test(loglik_reduced: float, loglik_full: float, df: int) -> tuple[float, float]:
    """LR statistic 2 (ll_full - ll_reduced) and its chi-square p-value on ``df`` degrees of freedom."""
    statistic = max(0.0, 2.0 * (loglik_full - loglik_reduced))
    return statistic, float(stats.chi2.sf(statistic, df)) if df > 0 else float("nan")


def nri_idi(risk_old: np.ndarray, risk_new: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Category-free (continuous) NRI and IDI of a new model over an old one, on a binary outcome.

    NRI = [P(up | event) - P(down | event)] + [P(down | non-event) - P(up | non-event)];
    IDI = [mean new - mean old | event] - [mean new - mean old | non-event]. Risks are event probabilities.
    """
    risk_old, risk_new, labels = np.asarray(risk_old, float), np.asarray(risk_new, float), np.asarray(labels, int)
    up, down = risk_new > risk_old, risk_new < risk_old
    events, non_events = labels == 1, labels == 0
    nri_events = up[events].mean() - down[events].mean()
    nri_non_events = down[non_events].mean() - up[non_events].mean()
    change = risk_new - risk_old
    idi = change[events].mean() - change[non_events].mean()
    return {"nri": float(nri_events + nri_non_events), "nri_events": float(nri_events),
            "nri_non_events": float(nri_non_events), "idi": float(idi)}


def nri_idi_with_ci(risk_old, risk_new, labels, n_boot: int = 500, seed: int = 0) -> dict[str, float]:
    """Category-free NRI and IDI of ``risk_new`` over ``risk_old`` (risks in [0, 1], shape (n,); ``labels`` 1 =
    event by the horizon) with seeded percentile-bootstrap 95% CIs over ``n_boot`` resamples."""
    risk_old, risk_new, labels = np.asarray(risk_old, float), np.asarray(risk_new, float), np.asarray(labels, int)
    point = nri_idi(risk_old, risk_new, labels)

    def statistic(index):
        if labels[index].min() == labels[index].max():
            return np.nan, np.nan
        result = nri_idi(risk_old[index], risk_new[index], labels[index])
        return result["nri"], result["idi"]

    return _with_intervals(point, bootstrap_intervals(statistic, len(labels), n_boot, seed))


def _with_intervals(point: dict[str, float], intervals: list[tuple[float, float]]) -> dict[str, float]:
    """``point`` with ``nri_ci_low``/``nri_ci_high`` and ``idi_ci_low``/``idi_ci_high`` from ``intervals``."""
    for key, (low, high) in zip(("nri", "idi"), intervals, strict=True):
        point[f"{key}_ci_low"], point[f"{key}_ci_high"] = low, high
    return point


@dataclass
class IPCWComparison:
    """Two IPCW time-dependent AUCs of markers measured on the same patients, and the test of their difference."""
    auc_1: float
    auc_2: float
    difference: float  # auc_2 - auc_1
    se: float
    ci_low: float
    ci_high: float
    z: float
    p: float
    n: int
    n_cases: int  # progression by the horizon, as the event_at_horizon rule says
    n_controls: int  # follow-up beyond the horizon (T > t)
    n_censored_before: int  # censored at or before the horizon: weighted for, not dropped


def ipcw_auc_comparison(time: np.ndarray, event: np.ndarray, scores_1: np.ndarray, scores_2: np.ndarray,
                        horizon: float, level: float = 0.95, rule: EventAtHorizon = DEFAULT_RULE) -> IPCWComparison:
    """Compare two cumulative/dynamic IPCW AUCs at ``horizon`` on the same patients, as riskRegression's
    ``Score(..., contrasts = TRUE)`` (rule ``case``) or ``timeROC::compare`` (rule ``timeroc``).

    The variance of the difference is ``sd(IF_2 - IF_1)^2 / n`` from the two AUCs' influence functions
    (:func:`~hccrad.evaluate.discrimination.ipcw_auc_influence`), which include the estimation of the
    censoring distribution; the test is a two-sided Wald test (Blanche, Dartigues and Jacqmin-Gadda 2013).

    Parameters
    ----------
    time, event, scores_1, scores_2
        Shape (n,): follow-up (months), 1 = event, and the two risk scores.
    horizon
        Months.
    rule
        The ``event_at_horizon`` rule (:mod:`hccrad.evaluate.horizon`): who is a case; controls are T > t.
    """
    time, event = np.asarray(time, float), np.asarray(event, int)
    auc_1, influence_1 = ipcw_auc_influence(time, event, scores_1, horizon, rule)
    auc_2, influence_2 = ipcw_auc_influence(time, event, scores_2, horizon, rule)
    status = ipc_weights(time, event, horizon, rule).status
    difference = auc_2 - auc_1
    se = influence_se(influence_2 - influence_1)
    if np.isfinite(difference) and se > 0:
        z = difference / se
        p = float(2 * stats.norm.sf(abs(z)))
    else:
        z, p = np.nan, np.nan
    half = stats.norm.ppf(0.5 + level / 2) * se
    return IPCWComparison(float(auc_1), float(auc_2), float(difference), se, difference - half, difference + half,
                          float(z), p, len(time), int(status.case.sum()), int(status.control.sum()),
                          int(status.censored_before.sum()))


def censored_nri_idi(time: np.ndarray, event: np.ndarray, risk_old: np.ndarray, risk_new: np.ndarray,
                     horizon: float, rule: EventAtHorizon = DEFAULT_RULE) -> dict[str, float]:
    """Category-free NRI and IDI of a new model over an old one at ``horizon``, accounting for censoring.

    NRI (Pencina, D'Agostino and Steyerberg 2011, survival form): with ``up`` = new risk above old, ``down`` =
    below (ties neither) and Kaplan-Meier risks ``P(E) = 1 - S(t)``, ``P(E | up)``, ``P(E | down)``:

    * NRI(events) = [P(E | up) P(up) - P(E | down) P(down)] / P(E);
    * NRI(non-events) = [(1 - P(E | down)) P(down) - (1 - P(E | up)) P(up)] / (1 - P(E)).

    IDI (Uno et al. 2013): the mean risk change in events minus that in non-events, where events (the cases of
    ``rule``) are weighted 1 / G(T-) and non-events (T > t) 1 / G(t), G the Kaplan-Meier censoring survival
    (:func:`~hccrad.evaluate.horizon.ipc_weights`). The Kaplan-Meier risks follow ``rule`` too. Without censoring
    before t both equal :func:`nri_idi` on the binary outcome of the same rule.

    Parameters
    ----------
    time, event
        Shape (n,): follow-up (months) and 1 = progression.
    risk_old, risk_new
        Shape (n,): predicted risks of progression by the horizon, in [0, 1].
    """
    time, event = np.asarray(time, float), np.asarray(event, int)
    risk_old, risk_new = np.asarray(risk_old, float), np.asarray(risk_new, float)
    up, down = risk_new > risk_old, risk_new < risk_old
    p_event = km_risk_at(time, event, horizon, rule)[0]
    p_up, p_down = up.mean(), down.mean()
    event_up = km_risk_at(time[up], event[up], horizon, rule)[0] if up.any() else 0.0
    event_down = km_risk_at(time[down], event[down], horizon, rule)[0] if down.any() else 0.0
    nri_events = (event_up * p_up - event_down * p_down) / p_event if p_event > 0 else np.nan
    nri_non_events = (((1 - event_down) * p_down - (1 - event_up) * p_up) / (1 - p_event)
                      if p_event < 1 else np.nan)
    weights = ipc_weights(time, event, horizon, rule)
    events, non_events = weights.status.case, weights.status.control
    change = risk_new - risk_old
    idi = np.nan
    if events.any() and non_events.any():
        idi = float(np.average(change[events], weights=weights.case[events]) - change[non_events].mean())
    return {"nri": float(nri_events + nri_non_events), "nri_events": float(nri_events),
            "nri_non_events": float(nri_non_events), "idi": idi}


def censored_nri_idi_with_ci(time, event, risk_old, risk_new, horizon: float, n_boot: int = 500, seed: int = 0,
                             rule: EventAtHorizon = DEFAULT_RULE) -> dict[str, float]:
    """:func:`censored_nri_idi` with seeded percentile-bootstrap 95% CIs over ``n_boot`` resamples of patients
    (shapes (n,); risks of progression by ``horizon`` months)."""
    time, event = np.asarray(time, float), np.asarray(event, int)
    risk_old, risk_new = np.asarray(risk_old, float), np.asarray(risk_new, float)
    point = censored_nri_idi(time, event, risk_old, risk_new, horizon, rule)

    def statistic(index):
        result = censored_nri_idi(time[index], event[index], risk_old[index], risk_new[index], horizon, rule)
        return result["nri"], result["idi"]

    return _with_intervals(point, bootstrap_intervals(statistic, len(time), n_boot, seed))
