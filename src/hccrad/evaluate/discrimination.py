"""Discrimination at a horizon: binary AUC with DeLong's variance, IPCW cumulative/dynamic AUC, C-indices.

Two time-dependent AUC definitions are reported (docs/evaluation.md):

* **binary** at horizon t: cases progressed by t (T <= t, event), controls progression-free beyond t (T > t);
  patients censored before t are excluded. This is an ordinary ROC analysis, to which DeLong's test applies.
* **cumulative/dynamic with IPCW**, as R's timeROC computes it (marginal weighting): cases T < t with an
  event, weighted 1 / G(T_i-); controls T > t, weighted 1 / G(t); G is the Kaplan-Meier estimate of the
  censoring distribution on the evaluated set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class AUCResult:
    """An AUC with its 95% confidence interval."""
    auc: float
    ci_low: float
    ci_high: float
    n_cases: int
    n_controls: int
    se: float = np.nan


def binary_outcome_at(time: np.ndarray, event: np.ndarray, horizon: float) -> np.ndarray:
    """The complete-case outcome at ``horizon`` (months), with timeROC's tie rules.

    1 (case) for progression at or before the horizon; 0 (control) for follow-up beyond it, or censored exactly
    at it (progression-free at t is known); NaN (left out) when censored before it.
    """
    time, event = np.asarray(time, float), np.asarray(event, int)
    outcome = np.full(len(time), np.nan)
    outcome[(time <= horizon) & (event == 1)] = 1.0
    outcome[(time > horizon) | ((time == horizon) & (event == 0))] = 0.0
    return outcome


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (1-based)."""
    return stats.rankdata(values, method="average")


def delong_components(scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components (V10 for cases, V01 for controls) via midranks (Sun and Xu 2014).

    V10_i = P(score_i > control) + 0.5 P(tie); V01_j = P(case > score_j) + 0.5 P(tie).
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    cases, controls = scores[labels == 1], scores[labels == 0]
    m, n = len(cases), len(controls)
    combined = np.concatenate([cases, controls])
    rank_all = midranks(combined)
    rank_cases, rank_controls = midranks(cases), midranks(controls)
    v10 = (rank_all[:m] - rank_cases) / n
    v01 = 1.0 - (rank_all[m:] - rank_controls) / m
    auc = float(v10.mean())
    return auc, v10, v01


def delong_auc(scores: np.ndarray, labels: np.ndarray, level: float = 0.95) -> AUCResult:
    """AUC with DeLong's variance and a Wald confidence interval (clipped to [0, 1])."""
    labels = np.asarray(labels, int)
    auc, v10, v01 = delong_components(scores, labels)
    m, n = len(v10), len(v01)
    variance = np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n if m > 1 and n > 1 else np.nan
    se = float(np.sqrt(variance))
    z = stats.norm.ppf(0.5 + level / 2)
    return AUCResult(auc, max(0.0, auc - z * se), min(1.0, auc + z * se), m, n, se)


def censoring_survival(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of the censoring survival G(t) = P(C > t): (times, G just after each)."""
    time, event = np.asarray(time, float), np.asarray(event, int)
    censored = 1 - event
    unique = np.unique(time)
    at_risk = np.array([(time >= t).sum() for t in unique], float)
    drops = np.array([((time == t) & (censored == 1)).sum() for t in unique], float)
    return unique, np.cumprod(1.0 - drops / at_risk)


def _g_at(times: np.ndarray, survival: np.ndarray, at: np.ndarray, left: bool) -> np.ndarray:
    side = "left" if left else "right"
    index = np.searchsorted(times, np.asarray(at, float), side=side) - 1
    return np.where(index >= 0, survival[np.clip(index, 0, None)], 1.0)


def ipcw_auc(time: np.ndarray, event: np.ndarray, scores: np.ndarray, horizon: float) -> float:
    """Cumulative/dynamic AUC at ``horizon`` with inverse-probability-of-censoring weights, as timeROC.

    Like timeROC, cases are T < t with an event (an event exactly at t is neither case nor control),
    weighted 1 / G(T_i-); controls are T > t, weighted 1 / G(t). Ties in score count one half.
    """
    time, event, scores = np.asarray(time, float), np.asarray(event, int), np.asarray(scores, float)
    g_times, g_survival = censoring_survival(time, event)
    cases = (time < horizon) & (event == 1)
    controls = time > horizon
    if not cases.any() or not controls.any():
        return np.nan
    case_weight = 1.0 / _g_at(g_times, g_survival, time[cases], left=True)
    control_weight = 1.0 / _g_at(g_times, g_survival, np.array([horizon]), left=False)[0]
    case_scores, control_scores = scores[cases], scores[controls]
    greater = (case_scores[:, None] > control_scores[None, :]).astype(float)
    ties = (case_scores[:, None] == control_scores[None, :]).astype(float)
    concordant = (greater + 0.5 * ties).sum(axis=1)
    numerator = np.sum(case_weight * concordant) * control_weight
    denominator = case_weight.sum() * control_weight * controls.sum()
    return float(numerator / denominator)


def bootstrap_ci(statistic, n: int, n_boot: int = 500, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` over patients resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        value = statistic(rng.integers(0, n, n))
        if np.isfinite(value):
            values.append(value)
    if len(values) < 10:
        return np.nan, np.nan
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def ipcw_auc_with_ci(time, event, scores, horizon, n_boot: int = 500, seed: int = 0) -> AUCResult:
    """Cumulative/dynamic IPCW AUC at ``horizon`` (months; time and event shape (n,)) with a seeded
    percentile-bootstrap 95% CI over ``n_boot`` resamples."""
    time, event, scores = np.asarray(time, float), np.asarray(event, int), np.asarray(scores, float)
    auc = ipcw_auc(time, event, scores, horizon)
    low, high = bootstrap_ci(lambda idx: ipcw_auc(time[idx], event[idx], scores[idx], horizon), len(time),
                             n_boot, seed)
    return AUCResult(auc, low, high, int(((time < horizon) & (event == 1)).sum()), int((time > horizon).sum()))


def harrell_c(time, event, scores) -> float:
    """Harrell's C-index of risk ``scores`` (higher = shorter time; shape (n,)), lifelines' tie handling."""
    from lifelines.utils import concordance_index

    return float(concordance_index(time, -np.asarray(scores, float), event))


def uno_c(time, event, scores, tau: float | None = None) -> float:
    """Uno's IPCW C-index (scikit-survival), censoring estimated on the evaluated set, up to ``tau``."""
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    y = Surv.from_arrays(np.asarray(event, bool), np.asarray(time, float))
    tau = tau if tau is not None else float(np.asarray(time)[np.asarray(event, bool)].max())
    return float(concordance_index_ipcw(y, y, np.asarray(scores, float), tau=tau)[0])


def roc_curve_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the empirical ROC curve (all thresholds, from (0,0) to (1,1))."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels, int), np.asarray(scores, float))
    return fpr, tpr
