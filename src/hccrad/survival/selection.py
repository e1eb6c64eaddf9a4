"""Preprocessing and feature selection, fitted on training data only.

The classic radiomics path: median imputation -> near-constant removal -> standardisation -> univariate
Cox screen -> correlation filter -> LASSO-Cox with k-fold cross-validation -> multivariable Cox (optionally
backward elimination by AIC). Every step appends to a selection log.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from hccrad.io.errors import InputError
from hccrad.survival.config import ModelConfig
from hccrad.survival.coxmath import partial_loglik


@dataclass
class SelectionLog:
    """Features entering and leaving each step, with the statistic that decided."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, step: str, feature: str, action: str, statistic: str = "", value: float | None = None,
            note: str = "") -> None:
        """Record one selection step for one feature (kept, removed, ...), with its statistic."""
        self.rows.append({"step": step, "feature": feature, "action": action, "statistic": statistic,
                          "value": None if value is None else float(value), "note": note})

    def table(self) -> pd.DataFrame:
        """The selection log as a table (step, feature, action, statistic, value, note)."""
        return pd.DataFrame(self.rows, columns=["step", "feature", "action", "statistic", "value", "note"])


def near_constant(frame: pd.DataFrame, max_mode_fraction: float) -> list[str]:
    """Columns whose most frequent value (NaN counted as a value) covers more than ``max_mode_fraction`` of rows,
    or with no spread; in one sort of the whole table rather than a count per column."""
    if not len(frame):
        return list(frame.columns)
    values = np.sort(frame.to_numpy(float), axis=0)  # NaN sort last, so equal values (and NaNs) are adjacent
    same = (values[1:] == values[:-1]) | (np.isnan(values[1:]) & np.isnan(values[:-1]))
    longest = np.ones(values.shape[1], dtype=np.int64)
    run = np.ones(values.shape[1], dtype=np.int64)
    for row in same:  # the longest run of equal values per column
        run = np.where(row, run + 1, 1)
        longest = np.maximum(longest, run)
    share = longest / len(frame)
    spread = frame.std(ddof=0).to_numpy(float)
    flagged = (share > max_mode_fraction) | ~np.isfinite(spread) | (spread == 0)
    return [column for column, flag in zip(frame.columns, flagged, strict=True) if flag]


def correlation_filter(frame: pd.DataFrame, strength: pd.Series, threshold: float,
                       log: SelectionLog) -> list[str]:
    """Greedy: walk features from the strongest outcome association down, dropping any feature whose
    |Pearson r| with an already kept one exceeds ``threshold``."""
    order = strength.loc[frame.columns].abs().sort_values(ascending=False).index.tolist()
    correlation = frame[order].corr().abs().to_numpy()
    kept: list[int] = []
    for index, name in enumerate(order):
        partners = [k for k in kept if correlation[index, k] > threshold]
        if partners:
            partner = order[partners[0]]
            log.add("correlation", name, "removed", "|r|", correlation[index, partners[0]],
                    f"correlated with {partner}, which is more associated with PFS")
        else:
            kept.append(index)
    return [order[k] for k in kept]


@dataclass
class LassoResult:
    """The LASSO-Cox path, its cross-validated deviance and the chosen penalty and coefficients."""
    alphas: np.ndarray
    cv_mean: np.ndarray
    cv_se: np.ndarray
    alpha_min: float
    alpha_1se: float
    alpha_chosen: float
    coefficients: pd.Series  # at alpha_chosen, standardised scale


def _coxnet(x: np.ndarray, time: np.ndarray, event: np.ndarray, penalty: np.ndarray,
            alphas: np.ndarray | None = None, tol: float = 1e-7, alpha_min_ratio: float | str = "auto"):
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.util import Surv

    model = CoxnetSurvivalAnalysis(l1_ratio=1.0, alphas=alphas, penalty_factor=penalty, max_iter=200_000, tol=tol,
                                   alpha_min_ratio=alpha_min_ratio,
                                   fit_baseline_model=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, Surv.from_arrays(event.astype(bool), time))
    return model


def saturated_loglik(event_time: np.ndarray, event: np.ndarray) -> float:
    """The saturated Cox log-likelihood with Breslow ties, as glmnet's ``coxnet.deviance``: ``-sum d log d``
    over the distinct event times, d the number of events tied at each (0 without ties)."""
    _, deaths = np.unique(np.asarray(event_time, float)[np.asarray(event) == 1], return_counts=True)
    return float(-np.sum(deaths * np.log(deaths)))


def cox_deviance(time: np.ndarray, event: np.ndarray, lp: np.ndarray) -> float:
    """glmnet's Cox deviance ``2 (loglik_saturated - loglik(lp))`` (Breslow ties, unit weights)."""
    return 2.0 * (saturated_loglik(time, event) - partial_loglik(time, event, lp))


def cv_folds(event: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold numbers 1..K per patient (cv.glmnet's ``foldid``), stratified by event, seeded; K is at most the number
    of events and of censored patients."""
    event = np.asarray(event, int)
    k = min(n_folds, int(event.sum()), int((1 - event).sum()) or 2)
    foldid = np.zeros(len(event), dtype=int)
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for number, (_, held_out) in enumerate(folds.split(np.zeros(len(event)), event), start=1):
        foldid[held_out] = number
    return foldid


def lasso_cox_cv(x: pd.DataFrame, time: np.ndarray, event: np.ndarray, forced: list[str], config: ModelConfig,
                 log: SelectionLog, foldid: np.ndarray | None = None,
                 alphas: np.ndarray | None = None, tol: float = 1e-7) -> LassoResult:
    """LASSO-Cox path on standardised ``x`` with cv.glmnet's cross-validated partial-likelihood deviance.

    Forced columns have penalty factor 0 (always in). The fold deviance is cv.glmnet's "grouped" one:
    ``D_full(beta_-k) - D_-k(beta_-k)``, where ``D = 2 (loglik_saturated - loglik)`` (:func:`cox_deviance`; the
    saturated term ``-sum d log d`` over tied event times differs between the full set and the fold's training
    part, so it does not cancel), divided by the fold's events; ``cvm`` is the event-weighted mean over folds and
    ``cvsd`` its standard error, ``lambda.1se`` the largest penalty within one ``cvsd`` of the minimum.

    Parameters
    ----------
    foldid
        Shape (n,): fold numbers 1..K as cv.glmnet's ``foldid``; default :func:`cv_folds` with ``config.seed``.
    alphas
        The penalty path (glmnet's ``lambda``), decreasing; default the path scikit-survival chooses on all of
        ``x`` with ``config.lasso_alpha_min_ratio``.
    tol
        scikit-survival's coordinate-descent tolerance (glmnet's ``thresh``).
    """
    penalty = np.array([0.0 if column in forced else 1.0 for column in x.columns])
    values = x.to_numpy(float)
    time, event = np.asarray(time, float), np.asarray(event, int)
    full = _coxnet(values, time, event, penalty, alphas=alphas, tol=tol, alpha_min_ratio=config.lasso_alpha_min_ratio)
    alphas = full.alphas_
    foldid = cv_folds(event, config.lasso_folds, config.seed) if foldid is None else np.asarray(foldid, int)
    n_folds = int(foldid.max())
    deviances, weights = [], []
    for number in range(1, n_folds + 1):
        train_index = np.flatnonzero(foldid != number)
        fold_model = _coxnet(values[train_index], time[train_index], event[train_index], penalty, alphas, tol)
        n_fit = fold_model.coef_.shape[1]
        fold_deviance = np.full(len(alphas), np.nan)
        for k in range(n_fit):
            beta = fold_model.coef_[:, k]
            fold_deviance[k] = (cox_deviance(time, event, values @ beta)
                                - cox_deviance(time[train_index], event[train_index], values[train_index] @ beta))
        deviances.append(fold_deviance)
        weights.append(event.sum() - event[train_index].sum())
    deviances, weights = np.array(deviances), np.array(weights, float)
    usable = ~np.isnan(deviances).any(axis=0)
    per_event = deviances / weights[:, None]
    cv_mean = np.average(per_event, axis=0, weights=weights)
    cv_se = np.sqrt(np.average((per_event - cv_mean) ** 2, axis=0, weights=weights) / (len(weights) - 1))
    cv_mean[~usable] = np.inf
    best = int(np.argmin(cv_mean))
    within = np.where(cv_mean <= cv_mean[best] + np.nan_to_num(cv_se[best]))[0]
    one_se = int(within.min())  # alphas decrease along the path: the smallest index is the largest alpha
    chosen = best if config.lasso_rule == "lambda.min" else one_se
    coefficients = full.coef_[:, chosen]
    penalized_nonzero = (np.abs(coefficients) > 0) & (penalty > 0)
    if penalized_nonzero.sum() > config.max_features:
        counts = ((np.abs(full.coef_) > 0) & (penalty[:, None] > 0)).sum(axis=0)
        capped = capped_path_step(counts, config.max_features)
        log.add("lasso", "-", "note", "alpha", alphas[capped],
                f"{penalized_nonzero.sum()} features at {config.lasso_rule}; capped at max_features "
                f"{config.max_features} (the last path step before the path first keeps more)")
        chosen = capped
        coefficients = full.coef_[:, chosen]
    series = pd.Series(coefficients, index=x.columns)
    for column, value in series.items():
        if column in forced:
            continue
        log.add("lasso", column, "kept" if value != 0 else "removed", "coefficient", value,
                f"{config.lasso_rule}, alpha {alphas[chosen]:.4g}, {n_folds}-fold CV")
    return LassoResult(alphas, cv_mean, cv_se, float(alphas[best]), float(alphas[one_se]), float(alphas[chosen]),
                       series)


def capped_path_step(counts: np.ndarray, max_features: int) -> int:
    """The path step used when the chosen penalty keeps more than ``max_features`` penalised features: the last
    step (from the largest penalty down) before the path first keeps more.

    ``counts`` (shape (steps,)) need not grow along the path: a feature can leave it and another enter, so a
    later step may again keep no more than the cap; it is never used, as it lies past the cap's first crossing.
    """
    exceeding = np.flatnonzero(np.asarray(counts) > max_features)
    return int(max(exceeding[0] - 1, 0)) if exceeding.size else len(counts) - 1


def fit_lifelines(frame: pd.DataFrame, time: np.ndarray, event: np.ndarray):
    """Multivariable Cox (lifelines, Efron's method for tied event times), with a small ridge penalty only if it
    fails to converge."""
    from lifelines import CoxPHFitter

    data = frame.copy()
    data["__time"], data["__event"] = time, event
    for penalizer in (0.0, 0.01, 0.1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = CoxPHFitter(penalizer=penalizer).fit(data, "__time", "__event")
            if np.all(np.isfinite(fitted.params_)):
                return fitted, penalizer
        except Exception:  # convergence failures of ill-conditioned designs: retry with a ridge
            continue
    raise CoxFitError("the multivariable Cox model did not converge, even with a ridge penalty: "
                      + explain_cox_failure(frame, time, event))


class CoxFitError(InputError, ValueError):
    """A Cox model that cannot be fitted on the training data; the message names the column at fault and why."""


def _separated(values: np.ndarray, time: np.ndarray, event: np.ndarray) -> str | None:
    """``highest``/``lowest`` when every progressing patient has the highest (lowest) value of ``values`` among
    those still at risk (a monotone likelihood: the coefficient runs to infinity), else None."""
    event_index = np.flatnonzero(event == 1)
    if not len(event_index):
        return None
    at_risk = time[None, :] >= time[event_index, None]
    own = values[event_index]
    highest = all(own[k] >= values[at_risk[k]].max() for k in range(len(event_index)))
    lowest = all(own[k] <= values[at_risk[k]].min() for k in range(len(event_index)))
    if highest and np.ptp(values) > 0:
        return "highest"
    if lowest and np.ptp(values) > 0:
        return "lowest"
    return None


def explain_cox_failure(frame: pd.DataFrame, time: np.ndarray, event: np.ndarray) -> str:
    """Why a Cox model of ``frame`` (shape (n, p), training patients) cannot be fitted, naming the columns: a column
    missing for every patient or constant, a category without a progression, complete separation, or collinear
    columns; otherwise "cause not identified"."""
    time, event = np.asarray(time, float), np.asarray(event, int)
    reasons = []
    if not event.any():
        return "no training patient progressed"
    for column in frame.columns:
        values = frame[column].to_numpy(float)
        present = ~np.isnan(values)
        if not present.any():
            reasons.append(f"column {column!r} is missing for every training patient (is it mapped to the right "
                           "table column, and filled in?)")
            continue
        if not present.all():
            reasons.append(f"column {column!r} is missing for {int((~present).sum())} training patients")
            continue
        if np.ptp(values) == 0:
            reasons.append(f"column {column!r} is constant ({values[0]:g}) in every training patient")
            continue
        levels = np.unique(values)
        if len(levels) <= 5:
            for level in levels:
                members = values == level
                if not event[members].any():
                    reasons.append(f"column {column!r} = {level:g} ({int(members.sum())} training patients) has no "
                                   "progression")
        side = _separated(values, time, event)
        if side is not None:
            reasons.append(f"column {column!r} separates the outcome completely: every patient who progressed had "
                           f"the {side} value among those still at risk")
    if not reasons:
        values = frame.to_numpy(float)
        rank = np.linalg.matrix_rank(values - values.mean(axis=0)) if values.size else 0
        if rank < frame.shape[1]:
            reasons.append(f"the columns {', '.join(map(repr, frame.columns))} are collinear (rank {rank} of "
                           f"{frame.shape[1]})")
    return "; ".join(reasons) if reasons else "cause not identified (no constant, empty, separated or collinear column)"


def backward_aic(frame: pd.DataFrame, time: np.ndarray, event: np.ndarray, forced: list[str],
                 log: SelectionLog) -> list[str]:
    """Drop, one at a time, the non-forced covariate whose removal lowers the partial AIC most."""
    columns = list(frame.columns)
    current, _ = fit_lifelines(frame[columns], time, event)
    while True:
        candidates = [c for c in columns if c not in forced]
        if len(columns) <= 1 or not candidates:
            return columns
        trials = {}
        for column in candidates:
            rest = [c for c in columns if c != column]
            fitted, _ = fit_lifelines(frame[rest], time, event)
            trials[column] = fitted.AIC_partial_
        best = min(trials, key=trials.get)
        if trials[best] >= current.AIC_partial_:
            return columns
        log.add("backward_aic", best, "removed", "AIC", trials[best],
                f"AIC {current.AIC_partial_:.2f} -> {trials[best]:.2f}")
        columns.remove(best)
        current, _ = fit_lifelines(frame[columns], time, event)
