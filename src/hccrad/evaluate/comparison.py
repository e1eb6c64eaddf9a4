"""Comparing models on the same patients: DeLong's paired test, likelihood ratio, NRI and IDI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from hccrad.evaluate.discrimination import bootstrap_ci, delong_components


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

    def resample(key):
        def statistic(index):
            if labels[index].min() == labels[index].max():
                return np.nan
            return nri_idi(risk_old[index], risk_new[index], labels[index])[key]
        return statistic

    for key in ("nri", "idi"):
        point[f"{key}_ci_low"], point[f"{key}_ci_high"] = bootstrap_ci(resample(key), len(labels), n_boot, seed)
    return point
