"""Cox partial likelihood pieces that no library offers in vectorised form.

* :func:`partial_loglik` - Breslow partial log-likelihood of a linear predictor (used for glmnet's
  cross-validated deviance);
* :func:`univariate_cox` - one Cox model per column, all columns at once (Newton-Raphson on each
  coefficient, Wald test), checked against lifelines in the tests;
* :func:`breslow_baseline` - the Breslow cumulative baseline hazard of an uncentred linear predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def _event_risk_matrix(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique event times, deaths at each, and the risk-set indicator matrix (event times x patients)."""
    event_times, deaths = np.unique(time[event.astype(bool)], return_counts=True)
    deaths = deaths.astype(float)
    at_risk = (time[None, :] >= event_times[:, None]).astype(float)
    return event_times, deaths, at_risk


def partial_loglik(time: np.ndarray, event: np.ndarray, lp: np.ndarray) -> float:
    """Breslow partial log-likelihood of linear predictor ``lp`` (O(n log n), stable for any spread of lp)."""
    time, event, lp = np.asarray(time, float), np.asarray(event, int), np.asarray(lp, float)
    order = np.argsort(time, kind="stable")
    sorted_time, sorted_lp = time[order], lp[order]
    # log sum of exp(lp) over everyone with time >= sorted_time[i], accumulated from the end
    tail = np.logaddexp.accumulate(sorted_lp[::-1])[::-1]
    events = event[order] == 1
    first_at_time = np.searchsorted(sorted_time, sorted_time[events], side="left")
    return float(np.sum(sorted_lp[events]) - np.sum(tail[first_at_time]))


@dataclass
class UnivariateCox:
    """Per-column univariate Cox results (arrays aligned with the input columns)."""

    coef: np.ndarray
    se: np.ndarray
    z: np.ndarray
    p: np.ndarray


def univariate_cox(x: np.ndarray, time: np.ndarray, event: np.ndarray, max_iter: int = 50,
                   tol: float = 1e-9) -> UnivariateCox:
    """Fit ``y ~ x_j`` for every column j (Breslow ties) and return coefficients and Wald tests.

    Columns with no variance get coefficient 0 and p = 1.
    """
    x = np.asarray(x, float)
    time, event = np.asarray(time, float), np.asarray(event, int)
    n, p = x.shape
    _, deaths, at_risk = _event_risk_matrix(time, event)
    event_sum = x[event == 1].sum(axis=0)
    beta = np.zeros(p)
    constant = x.std(axis=0) == 0
    information = np.ones(p)
    for _ in range(max_iter):
        eta = x * beta
        eta -= eta.max(axis=0)
        weights = np.exp(eta)
        s0 = at_risk @ weights
        s1 = at_risk @ (x * weights)
        s2 = at_risk @ (x * x * weights)
        mean = s1 / s0
        gradient = event_sum - deaths @ mean
        information = deaths @ (s2 / s0 - mean**2)
        information = np.where(information > 1e-12, information, np.nan)
        step = np.where(constant, 0.0, np.nan_to_num(gradient / information))
        step = np.clip(step, -2.0, 2.0)
        beta = beta + step
        if np.all(np.abs(step) < tol * (1 + np.abs(beta))):
            break
    se = np.where(constant, np.inf, 1.0 / np.sqrt(information))
    z = np.where(constant, 0.0, beta / se)
    pvalue = np.where(constant, 1.0, 2.0 * stats.norm.sf(np.abs(z)))
    return UnivariateCox(beta, se, z, pvalue)


def breslow_baseline(time: np.ndarray, event: np.ndarray, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breslow estimate of the cumulative baseline hazard H0 at each unique event time, for ``lp`` uncentred.

    Survival of a patient with linear predictor ``l`` is ``exp(-H0(t) exp(l))``.
    """
    time, event, lp = np.asarray(time, float), np.asarray(event, int), np.asarray(lp, float)
    event_times, deaths, at_risk = _event_risk_matrix(time, event)
    increments = deaths / (at_risk @ np.exp(lp))
    return event_times, np.cumsum(increments)


def efron_baseline(time: np.ndarray, event: np.ndarray, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Efron's estimate of the cumulative baseline hazard (R's ``survfit.coxph(ctype = 2)``, as rms' ``cph``).

    At an event time with d tied events, risk-set sum R of exp(lp) and tied-event sum D, the increment is
    ``sum_{k=0}^{d-1} 1 / (R - k D / d)``; without ties it equals :func:`breslow_baseline`'s ``1 / R``. Returns
    the unique event times and H0 there, shape (times,), for ``lp`` uncentred.
    """
    time, event, lp = np.asarray(time, float), np.asarray(event, int), np.asarray(lp, float)
    event_times, deaths, at_risk = _event_risk_matrix(time, event)
    risk_sum = at_risk @ np.exp(lp)
    tied = (time[None, :] == event_times[:, None]) & (event[None, :] == 1)
    tied_sum = tied.astype(float) @ np.exp(lp)
    increments = np.array([np.sum(1.0 / (r - np.arange(d) / d * t))
                           for r, t, d in zip(risk_sum, tied_sum, deaths.astype(int), strict=True)])
    return event_times, np.cumsum(increments)


def baseline_variance_terms(time: np.ndarray, event: np.ndarray, design: np.ndarray, coef: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """The training-set sums behind the variance of a predicted cumulative hazard (Tsiatis 1981; R's
    ``survfit.coxph`` with the Breslow estimator), at each unique event time t_k (as :func:`breslow_baseline`).

    With ``S0(t) = sum over the risk set of exp(z'beta)`` and ``zbar(t)`` the risk set's exp(z'beta)-weighted
    mean covariate vector:

    * ``A(t) = sum over t_k <= t of d_k / S0(t_k)^2`` (the baseline hazard's own variance), shape (events,);
    * ``B(t) = sum over t_k <= t of zbar(t_k) d_k / S0(t_k)``, shape (events, covariates).

    For a patient with covariates x and ``eta = x'beta``: ``Var H(t | x) = exp(2 eta) [A(t) + q' V q]`` with
    ``q = x H0(t) - B(t)`` and V the coefficients' covariance (see :func:`cumulative_hazard_variance`).
    """
    time, event = np.asarray(time, float), np.asarray(event, int)
    design = np.asarray(design, float).reshape(len(time), -1)
    _, deaths, at_risk = _event_risk_matrix(time, event)
    weights = np.exp(design @ np.asarray(coef, float))
    s0 = at_risk @ weights
    zbar = (at_risk * weights[None, :]) @ design / s0[:, None]
    return np.cumsum(deaths / s0**2), np.cumsum(zbar * (deaths / s0)[:, None], axis=0)


def cumulative_hazard_variance(baseline_times: np.ndarray, baseline_cumhaz: np.ndarray, hazard_terms: np.ndarray,
                               mean_terms: np.ndarray, covariance: np.ndarray, x: np.ndarray, coef: np.ndarray,
                               times: np.ndarray | list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Predicted cumulative hazard ``H(t | x)`` and its variance at ``times`` (months), shapes (times,).

    ``hazard_terms`` and ``mean_terms`` are :func:`baseline_variance_terms`' A and B at the baseline's event
    times; ``covariance`` (covariates x covariates) is that of the coefficients.
    """
    x, coef = np.asarray(x, float), np.asarray(coef, float)
    index = np.searchsorted(np.asarray(baseline_times), np.asarray(times, float), side="right") - 1
    seen = index >= 0
    safe = np.clip(index, 0, None)
    h0 = np.where(seen, np.asarray(baseline_cumhaz, float)[safe], 0.0)
    a = np.where(seen, np.asarray(hazard_terms, float)[safe], 0.0)
    b = np.where(seen[:, None], np.asarray(mean_terms, float).reshape(len(baseline_times), -1)[safe], 0.0)
    q = h0[:, None] * x[None, :] - b
    risk = np.exp(x @ coef)
    variance = risk**2 * (a + np.einsum("ti,ij,tj->t", q, np.asarray(covariance, float), q))
    return h0 * risk, variance


def survival_confidence_band(cumhaz: np.ndarray, variance: np.ndarray, level: float = 0.95
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Survival ``exp(-H)`` with a log-log confidence interval (``S ** exp(+-z se(log H))``, always in [0, 1];
    R's ``conf.type = "log-log"``), from the delta method: ``se(log H) = sqrt(Var H) / H``."""
    from scipy import stats

    cumhaz, variance = np.asarray(cumhaz, float), np.asarray(variance, float)
    survival = np.exp(-cumhaz)
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        se_log = np.where(cumhaz > 0, np.sqrt(np.maximum(variance, 0.0)) / cumhaz, 0.0)
    return survival, survival ** np.exp(z * se_log), survival ** np.exp(-z * se_log)


def step_value(times: np.ndarray, values: np.ndarray, at: np.ndarray | float, before: float = 0.0) -> np.ndarray:
    """Right-continuous step function (``values`` at ``times``) evaluated at ``at``."""
    index = np.searchsorted(np.asarray(times), np.asarray(at, float), side="right") - 1
    values = np.asarray(values, float)
    return np.where(index >= 0, values[np.clip(index, 0, None)], before)


def survival_probability(baseline_times: np.ndarray, baseline_cumhaz: np.ndarray, risk_scores: np.ndarray,
                         times: np.ndarray | list[float]) -> np.ndarray:
    """Cox model survival ``S(t | x) = exp(-H0(t) exp(lp))``, shape (patients, times).

    Parameters
    ----------
    baseline_times, baseline_cumhaz
        The Breslow baseline cumulative hazard H0 as a right-continuous step function (months, unitless).
    risk_scores
        Linear predictors lp, shape (patients,).
    times
        Months at which to evaluate, shape (times,).
    """
    cumhaz = step_value(baseline_times, baseline_cumhaz, times)
    return np.exp(-np.outer(np.exp(np.asarray(risk_scores, float)), np.atleast_1d(cumhaz)))


def maxstat_p_value(statistic: float, min_proportion: float = 0.1, max_proportion: float = 0.9) -> float:
    """Lausen and Schumacher's (1992) approximate p-value of a maximally selected log-rank statistic.

    The maximum over cut-offs between the ``min_proportion`` and ``max_proportion`` quantiles of the standardized
    log-rank statistic ``b = sqrt(chi-square)`` exceeds b with probability about
    ``4 phi(b) / b + phi(b) (b - 1/b) log(max (1 - min) / ((1 - max) min))`` (R maxstat's ``pLausen92``),
    clipped to [0, 1], and 1 for b < 1, where the approximation does not hold (as ``pLausen92``). The plain
    log-rank p-value of the chosen cut-off ignores the search and is too small.

    Parameters
    ----------
    statistic
        The maximal log-rank chi-square (b is its square root).
    """
    b = float(np.sqrt(max(statistic, 0.0)))
    if b < 1:
        return 1.0
    density = stats.norm.pdf(b)
    span = np.log(max_proportion * (1 - min_proportion) / ((1 - max_proportion) * min_proportion))
    return float(np.clip(4 * density / b + density * (b - 1 / b) * span, 0.0, 1.0))


def logrank_scores(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Log-rank scores of Hothorn and Lausen (2003), as R's ``exactRankTests::cscores.Surv``.

    ``a_i = event_i - sum_{j: T_j <= T_i} event_j / (N - r_j + 1)``, where ``r_j`` is the number of patients
    with a time at or before ``T_j`` (tied times share the largest rank, as ``irank`` gives them).

    Parameters
    ----------
    time, event
        Shape (n,): follow-up (any unit) and 1 = event.

    Returns
    -------
    Shape (n,): one score per patient, summing to 0.
    """
    time = np.asarray(time, float)
    event = np.asarray(event, float)
    n = len(time)
    order = np.argsort(time, kind="stable")
    rank_max = np.searchsorted(time[order], time, side="right")  # 1-based rank, ties share the largest
    increments = event / (n - rank_max + 1)
    return event - np.cumsum(increments[order])[rank_max - 1]


@dataclass(frozen=True)
class MaxstatResult:
    """A cut-off chosen by the maximally selected log-rank statistic (R ``maxstat.test``).

    ``cutoff`` splits the score into ``<= cutoff`` (low) and ``> cutoff`` (high); ``statistic`` is the largest
    standardized log-rank statistic M over the candidate cut-offs; ``p_value`` Lausen and Schumacher's (1992)
    approximation for that maximum (``pLausen92``); ``n_candidates`` how many cut-offs were tried.
    """
    cutoff: float
    statistic: float
    p_value: float
    n_candidates: int


def maxstat_cutoff(score: np.ndarray, time: np.ndarray, event: np.ndarray, minprop: float = 0.1,
                   maxprop: float = 0.9) -> MaxstatResult:
    """The cut-off of ``score`` that maximises the standardized log-rank statistic, as R's
    ``maxstat.test(Surv(time, event) ~ score, smethod = "LogRank", pmethod = "Lau92")``.

    Candidates are every distinct score value ``x`` whose count of patients with score < the next distinct value
    (that is, with score <= x), ``m``, lies in ``[max(1, floor(N minprop)), floor(N maxprop)]``. For each, with
    log-rank scores ``a`` (:func:`logrank_scores`), ``S = sum_{score <= x} a``, ``E = m / N sum a`` and
    ``V = m (N - m) / (N^2 (N - 1)) (N sum a^2 - (sum a)^2)``, the statistic is ``|S - E| / sqrt(V)``. The
    first maximum (smallest cut-off) wins, as ``maxstat``. The p-value is ``pLausen92(M, minprop, maxprop)``.

    Parameters
    ----------
    score
        Shape (n,): the risk score (any monotone scale).
    time, event
        Shape (n,): follow-up and 1 = event.

    Raises
    ------
    ValueError
        No candidate lies between the two proportions, or no event (the statistic is undefined); the message says
        which.
    """
    score, time, event = (np.asarray(a, float) for a in (score, time, event))
    n = len(score)
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    scores = logrank_scores(time, event)[order]
    first_of_value = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    m = first_of_value  # patients strictly below each distinct value = below-or-at the previous one
    m = m[(m >= max(1, int(np.floor(n * minprop)))) & (m <= int(np.floor(n * maxprop)))]
    if not len(m):
        raise ValueError(f"no cut-off of the score lies between the {minprop:g} and {maxprop:g} quantiles "
                         f"({n} patients, {len(first_of_value)} distinct scores)")
    total = scores.sum()
    spread = n * np.sum(scores**2) - total**2
    if not spread > 0:
        raise ValueError("the log-rank statistic is undefined: no patient had an event")
    expected = m / n * total
    variance = m * (n - m) / (n**2 * (n - 1)) * spread
    statistics = np.abs((np.cumsum(scores)[m - 1] - expected) / np.sqrt(variance))
    best = int(np.flatnonzero(statistics == statistics.max())[0])
    statistic = float(statistics[best])
    return MaxstatResult(float(sorted_score[m[best] - 1]), statistic, maxstat_p_value(statistic**2, minprop, maxprop),
                         len(m))
