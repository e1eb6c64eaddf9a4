"""Discrimination at a horizon: binary AUC with DeLong's variance, IPCW cumulative/dynamic AUC, C-indices.

Two time-dependent AUC definitions are reported (docs/evaluation.md):

* **binary** at horizon t: cases and controls by the evaluation's ``event_at_horizon`` rule
  (:mod:`hccrad.evaluate.horizon`); patients whose status is unknown (censored at or before t) are excluded.
  This is an ordinary ROC analysis, to which DeLong's test applies.
* **cumulative/dynamic with IPCW** (riskRegression's ``Score`` under ``case``, timeROC under ``timeroc``): the
  same cases, weighted 1 / G(T_i-); controls T > t, weighted 1 / G(t); G is the Kaplan-Meier estimate of the
  censoring distribution on the evaluated set, with prodlim's tie rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from hccrad.evaluate.horizon import (
    DEFAULT_RULE,
    EventAtHorizon,
    binary_outcome,
    censoring_at_risk,
    censoring_survival,
    censoring_survival_at,
    horizon_status,
    ipc_weights,
)


@dataclass
class AUCResult:
    """An AUC with its 95% confidence interval."""
    auc: float
    ci_low: float
    ci_high: float
    n_cases: int
    n_controls: int
    se: float = np.nan


def binary_outcome_at(time: np.ndarray, event: np.ndarray, horizon: float,
                      rule: EventAtHorizon = DEFAULT_RULE) -> np.ndarray:
    """The complete-case outcome at ``horizon`` (months) under the evaluation's ``event_at_horizon`` rule
    (:mod:`hccrad.evaluate.horizon`): 1 case, 0 control (T > t), NaN unknown (censored at or before t)."""
    return binary_outcome(time, event, horizon, rule)


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


def ipcw_auc(time: np.ndarray, event: np.ndarray, scores: np.ndarray, horizon: float,
             rule: EventAtHorizon = DEFAULT_RULE) -> float:
    """Cumulative/dynamic AUC at ``horizon`` with inverse-probability-of-censoring weights.

    Cases and controls follow ``rule`` (:func:`~hccrad.evaluate.horizon.horizon_status`); cases are weighted
    1 / G(T_i-), controls 1 / G(t) (:func:`~hccrad.evaluate.horizon.ipc_weights`). Ties in score count one half.
    Under ``case`` this is riskRegression's ``Score`` AUC, under ``timeroc`` timeROC's.
    """
    time, event, scores = np.asarray(time, float), np.asarray(event, int), np.asarray(scores, float)
    weights = ipc_weights(time, event, horizon, rule)
    cases, controls = weights.status.case, weights.status.control
    if not cases.any() or not controls.any():
        return np.nan
    case_weight = weights.case[cases]
    case_scores, control_scores = scores[cases], scores[controls]
    greater = (case_scores[:, None] > control_scores[None, :]).astype(float)
    ties = (case_scores[:, None] == control_scores[None, :]).astype(float)
    concordant = (greater + 0.5 * ties).sum(axis=1)
    # The controls' common weight 1 / G(t) cancels between numerator and denominator.
    return float(np.sum(case_weight * concordant) / (case_weight.sum() * controls.sum()))


def _censoring_influence_sums(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Influence of each patient k on log G(at_i-) for the Kaplan-Meier censoring survival, with sign flipped.

    Returns ``S`` of shape (n, len(at)) with ``S[k, i] = sum over censoring times u < at_i`` of
    ``(1{T_k = u, censored} - h(u) 1{T_k >= u}) / (Y(u)/n (1 - h(u)))``, where h(u) is the censoring hazard
    (censored at u over at risk at u) and Y(u) the number in the censoring risk set at u (prodlim's rule:
    T > u, or censored at u; :func:`~hccrad.evaluate.horizon.censoring_at_risk`). This is the exact Gateaux derivative
    (infinitesimal jackknife) of the product-limit estimator: d log G(at_i-) in the direction of patient k is
    ``-S[k, i]``.
    """
    n = len(time)
    censoring_times = np.unique(time[event == 0])
    if censoring_times.size == 0:
        return np.zeros((n, len(at)))
    at_risk = censoring_at_risk(time, event, censoring_times)
    censored_here = (time[:, None] == censoring_times[None, :]) & (event[:, None] == 0)
    y = at_risk.sum(axis=0).astype(float)
    hazard = censored_here.sum(axis=0) / y
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(hazard < 1.0, 1.0 / (y / n * (1.0 - hazard)), 0.0)
    increments = (censored_here - hazard[None, :] * at_risk) * scale[None, :]
    cumulative = np.cumsum(increments, axis=1)
    index = np.searchsorted(censoring_times, np.asarray(at, float), side="left") - 1
    return np.where(index[None, :] >= 0, cumulative[:, np.clip(index, 0, None)], 0.0)


def ipcw_auc_influence(time: np.ndarray, event: np.ndarray, scores: np.ndarray, horizon: float,
                       rule: EventAtHorizon = DEFAULT_RULE) -> tuple[float, np.ndarray]:
    """The IPCW cumulative/dynamic AUC at ``horizon`` and each patient's influence on it.

    The estimator is :func:`ipcw_auc`'s (timeROC's marginal weighting). The influence function is its exact
    infinitesimal-jackknife derivative, including the estimation of the censoring distribution G by
    Kaplan-Meier (Blanche, Dartigues and Jacqmin-Gadda 2013 derive the same first-order representation).
    ``var(AUC) = sd(influence)^2 / n``, as timeROC and riskRegression compute it.

    Parameters
    ----------
    time, event, scores
        Shape (n,): follow-up (months), 1 = event, risk score (higher = earlier event).
    horizon
        Months.
    rule
        The ``event_at_horizon`` rule (:mod:`hccrad.evaluate.horizon`).

    Returns
    -------
    auc, influence
        The AUC and the influence function, shape (n,), which sums to 0. NaN and zeros when the horizon has no
        case or no control.
    """
    time, event, scores = np.asarray(time, float), np.asarray(event, int), np.asarray(scores, float)
    n = len(time)
    weights = ipc_weights(time, event, horizon, rule)
    cases, controls = weights.status.case, weights.status.control
    if not cases.any() or not controls.any():
        return np.nan, np.zeros(n)
    case_weight = weights.case  # 1 / G(T_i-) for cases; G(t) cancels between numerator and denominator
    concordance = (scores[:, None] > scores[None, :]) + 0.5 * (scores[:, None] == scores[None, :])
    per_case = concordance[:, controls].sum(axis=1) / n  # (1/n) sum over controls j of c_ij
    per_control = case_weight @ concordance / n  # (1/n) sum over cases i of a_i c_ij
    case_share, control_share = case_weight.mean(), controls.mean()
    u_statistic = float(np.mean(case_weight * per_case))
    auc = u_statistic / (case_share * control_share)
    # d a_i in the direction of patient k: a_i * S[k, i] (from d log G(T_i-) = -S[k, i]).
    weight_change = case_weight[None, :] * _censoring_influence_sums(time, event, time)
    d_u = case_weight * per_case + controls * per_control - 2 * u_statistic + weight_change @ per_case / n
    d_case_share = case_weight - case_share + weight_change.sum(axis=1) / n
    d_control_share = controls - control_share
    influence = (d_u - auc * control_share * d_case_share - auc * case_share * d_control_share) / (
        case_share * control_share)
    return float(auc), influence


def influence_se(influence: np.ndarray) -> float:
    """Standard error ``sd(influence) / sqrt(n)`` (timeROC's convention, sd with n - 1)."""
    n = len(influence)
    return float(np.std(influence, ddof=1) / np.sqrt(n)) if n > 1 else np.nan


def bootstrap_intervals(statistic, n: int, n_boot: int = 500, seed: int = 0, level: float = 0.95
                        ) -> list[tuple[float, float]]:
    """Percentile bootstrap intervals of the values ``statistic(indices)`` returns (a sequence), from one pass of
    ``n_boot`` seeded resamples of the n patients with replacement. Each value's interval uses its finite draws;
    fewer than 10 give (NaN, NaN)."""
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(n_boot)], float).reshape(n_boot, -1)
    alpha = (1 - level) / 2
    intervals = []
    for column in draws.T:
        finite = column[np.isfinite(column)]
        low, high = np.quantile(finite, [alpha, 1 - alpha]) if len(finite) >= 10 else (np.nan, np.nan)
        intervals.append((float(low), float(high)))
    return intervals


def bootstrap_ci(statistic, n: int, n_boot: int = 500, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the number ``statistic(indices)`` (see :func:`bootstrap_intervals`)."""
    return bootstrap_intervals(lambda index: (statistic(index),), n, n_boot, seed, level)[0]


def ipcw_auc_with_ci(time, event, scores, horizon, n_boot: int = 500, seed: int = 0,
                     rule: EventAtHorizon = DEFAULT_RULE) -> AUCResult:
    """Cumulative/dynamic IPCW AUC at ``horizon`` (months; time and event shape (n,)) under ``rule`` with a
    seeded percentile-bootstrap 95% CI over ``n_boot`` resamples."""
    time, event, scores = np.asarray(time, float), np.asarray(event, int), np.asarray(scores, float)
    auc = ipcw_auc(time, event, scores, horizon, rule)
    low, high = bootstrap_ci(lambda idx: ipcw_auc(time[idx], event[idx], scores[idx], horizon, rule), len(time),
                             n_boot, seed)
    status = horizon_status(time, event, horizon, rule)
    return AUCResult(auc, low, high, int(status.case.sum()), int(status.control.sum()))


def harrell_c(time, event, scores) -> float:
    """Harrell's C-index of risk ``scores`` (higher = shorter time; shape (n,)), lifelines' tie handling."""
    from lifelines.utils import concordance_index

    return float(concordance_index(time, -np.asarray(scores, float), event))


def uno_c(time, event, scores, tau: float | None = None) -> float:
    """Uno's IPCW C-index of risk ``scores`` up to ``tau``, as R ``survival::concordance(timewt = "n/G2",
    ymax = tau, reverse = TRUE)``.

    ``C = sum_i sum_j w_i I(i ~ j) [I(s_i > s_j) + I(s_i = s_j) / 2] / sum_i sum_j w_i I(i ~ j)`` over patients
    i with an event at ``T_i <= tau``, where j is comparable with i (``i ~ j``) when ``T_j > T_i`` or j was censored
    at ``T_i``, and ``w_i = 1 / G(T_i-)^2`` with G the censoring Kaplan-Meier of the evaluated set by prodlim's tie
    rule (:func:`~hccrad.evaluate.horizon.censoring_survival`), as every censoring weight of the evaluation.

    Parameters
    ----------
    time, event, scores
        Shape (n,): follow-up (months), 1 = event, risk score (higher = shorter time).
    tau
        Truncation time (months); default the last event time.
    """
    time, event, scores = np.asarray(time, float), np.asarray(event, int), np.asarray(scores, float)
    tau = tau if tau is not None else float(time[event == 1].max())
    cases = np.flatnonzero((event == 1) & (time <= tau))
    if not len(cases):
        return np.nan
    times, survival = censoring_survival(time, event)
    weight = 1.0 / censoring_survival_at(times, survival, time[cases], left=True) ** 2
    comparable = ((time[None, :] > time[cases, None])
                  | ((time[None, :] == time[cases, None]) & (event[None, :] == 0)))
    concordant = ((scores[cases, None] > scores[None, :]) + 0.5 * (scores[cases, None] == scores[None, :]))
    denominator = float(np.sum(weight * comparable.sum(axis=1)))
    if denominator == 0:
        return np.nan
    return float(np.sum(weight * (comparable * concordant).sum(axis=1)) / denominator)


def roc_curve_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the empirical ROC curve (all thresholds, from (0,0) to (1,1))."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels, int), np.asarray(scores, float))
    return fpr, tpr
