"""Calibration at a horizon and overall accuracy (Brier score), for survival predictions.

* grouped: patients in quantile groups of predicted risk; observed risk 1 - KM(t) per group with its
  Greenwood 95% CI;
* smooth: the method of Austin, Harrell and van Klaveren (2020) as used by McLernon et al. (2023): a Cox model
  of the outcome, censored at t, on a restricted cubic spline (Hmisc's 3-knot rule) of cloglog(predicted risk)
  estimates each patient's observed risk at t; ICI, E50 and E90 are the mean, median and 90th percentile of
  |predicted - observed|;
* calibration slope: the coefficient of the risk score in a Cox model on the evaluated patients' follow-up
  censored at t (1 = ideal);
* O/E ratio: observed risk 1 - KM(t) over the mean predicted risk, with a CI from the KM standard error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from hccrad.evaluate.horizon import DEFAULT_RULE, EventAtHorizon, ipc_weights, km_event


def restricted_cubic_spline(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Harrell's restricted cubic spline basis (linear beyond the outer knots): columns x, then k-2 terms."""
    x = np.asarray(x, float)
    k = len(knots)
    scale = (knots[-1] - knots[0]) ** 2
    terms = [x]
    for j in range(k - 2):
        term = (np.clip(x - knots[j], 0, None) ** 3
                - np.clip(x - knots[-2], 0, None) ** 3 * (knots[-1] - knots[j]) / (knots[-1] - knots[-2])
                + np.clip(x - knots[-1], 0, None) ** 3 * (knots[-2] - knots[j]) / (knots[-1] - knots[-2]))
        terms.append(term / scale)
    return np.column_stack(terms)


def km_risk_at(time: np.ndarray, event: np.ndarray, horizon: float,
               rule: EventAtHorizon = DEFAULT_RULE) -> tuple[float, float]:
    """Kaplan-Meier risk 1 - S(t) and the Greenwood standard error of S(t) at ``horizon``: the product over event
    times up to it of 1 - deaths / at risk. An event exactly at the horizon counts under ``rule`` ``case`` and not
    under ``timeroc`` (:func:`~hccrad.evaluate.horizon.km_event`). NaN for no patient."""
    time = np.asarray(time, float)
    event = km_event(time, event, horizon, rule)
    if len(time) == 0:
        return np.nan, np.nan
    event_times, deaths = np.unique(time[(event == 1) & (time <= horizon)], return_counts=True)
    at_risk = (len(time) - np.searchsorted(np.sort(time), event_times, side="left")).astype(float)
    survival = float(np.prod(1.0 - deaths / at_risk))
    usable = at_risk > deaths
    greenwood = np.sum(deaths[usable] / (at_risk[usable] * (at_risk[usable] - deaths[usable])))
    return 1.0 - survival, survival * float(np.sqrt(greenwood))


def grouped_calibration(time, event, predicted_risk, horizon: float, n_groups: int = 5,
                        rule: EventAtHorizon = DEFAULT_RULE) -> pd.DataFrame:
    """Mean predicted vs Kaplan-Meier observed risk at ``horizon`` (under ``rule``) in quantile groups of
    predicted risk."""
    predicted_risk = np.asarray(predicted_risk, float)
    groups = pd.qcut(pd.Series(predicted_risk).rank(method="first"), n_groups, labels=False)
    rows = []
    for group in range(n_groups):
        mask = (groups == group).to_numpy()
        observed, se = km_risk_at(np.asarray(time)[mask], np.asarray(event)[mask], horizon, rule)
        rows.append({"group": group + 1, "n": int(mask.sum()), "predicted": float(predicted_risk[mask].mean()),
                     "observed": observed, "observed_ci_low": max(0.0, observed - 1.96 * se),
                     "observed_ci_high": min(1.0, observed + 1.96 * se)})
    return pd.DataFrame(rows)


def censor_at(time, event, horizon: float, rule: EventAtHorizon = DEFAULT_RULE) -> tuple[np.ndarray, np.ndarray]:
    """Follow-up administratively censored at ``horizon``: time min(T, t), event only if it happened by t (an
    event exactly at t counts under ``rule`` ``case``, not under ``timeroc``)."""
    time = np.asarray(time, float)
    event = km_event(time, event, horizon, rule)
    return np.minimum(time, horizon), np.where(time <= horizon, event, 0)


def hmisc_knots(x: np.ndarray, n_knots: int = 3) -> np.ndarray:
    """Knots of a restricted cubic spline by Hmisc's ``rcspline.eval`` default rule (3 knots).

    * With at most ``n_knots + 2`` distinct values, the knots are the distinct values without the extremes.
    * Otherwise the 10th, 50th and 90th percentiles; when n < 100 the outer knots are the 5th smallest and the
      5th largest values.
    * Duplicate knots are removed, so fewer knots than asked may come back (two or fewer: no spline term).
    """
    x = np.sort(np.asarray(x, float))
    distinct = np.unique(x)
    if len(distinct) <= n_knots + 2:
        return distinct[1:-1] if len(distinct) > 2 else distinct
    knots = np.percentile(x, [10, 50, 90])
    if len(x) < 100:
        knots[0], knots[-1] = x[4], x[-5]
    return np.unique(knots)


#: The baseline hazards of the smooth calibration's Cox model: ``breslow`` (R ``coxph`` + ``survfit(ctype = 1)``)
#: and ``efron`` (``survfit(ctype = 2)``, as rms ``cph`` + ``survest``); they differ only where event times tie.
CALIBRATION_BASELINES = ("breslow", "efron")
DEFAULT_CALIBRATION_BASELINE = "breslow"


def complementary_log_log(predicted_risk: np.ndarray) -> np.ndarray:
    """``log(-log(1 - risk))``, computed as ``log(-log1p(-risk))`` so that tiny risks keep their value (no clip);
    -inf at a risk of exactly 0 and +inf at exactly 1."""
    risk = np.asarray(predicted_risk, float)
    with np.errstate(divide="ignore"):
        return np.log(-np.log1p(-risk))


def _cox_survival_at(design: np.ndarray, time: np.ndarray, event: np.ndarray, horizon: float,
                     baseline: str) -> np.ndarray:
    """Each patient's S(horizon) from a Cox model of ``design`` (shape (n, p)): Efron's partial likelihood for the
    coefficients (as R ``coxph``), then the Breslow or Efron baseline hazard."""
    from lifelines import CoxPHFitter

    from hccrad.survival.coxmath import breslow_baseline, efron_baseline, step_value

    columns = [f"x{k}" for k in range(design.shape[1])]
    frame = pd.DataFrame(design, columns=columns)
    frame["time"], frame["event"] = time, event
    fitted = None
    for penalizer in (0.0, 1e-6):  # a ridge of 1e-6 only where the unpenalized fit fails (separation)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = CoxPHFitter(penalizer=penalizer).fit(frame, "time", "event",
                                                              fit_options={"precision": 1e-12})
            if np.all(np.isfinite(fitted.params_)):
                break
        except Exception:  # lifelines' ConvergenceError and linear-algebra failures: try the ridge
            fitted = None
    if fitted is None:
        raise ValueError("the calibration model (Cox on the cloglog spline) did not converge")
    lp = design @ fitted.params_.to_numpy(float)
    estimator = efron_baseline if baseline == "efron" else breslow_baseline
    event_times, cumhaz = estimator(time, event, lp)
    return np.exp(-np.exp(lp) * float(step_value(event_times, cumhaz, horizon)))


def smooth_observed_risk(time, event, predicted_risk, horizon: float,
                         rule: EventAtHorizon = DEFAULT_RULE,
                         baseline: str = DEFAULT_CALIBRATION_BASELINE) -> np.ndarray:
    """Each patient's observed risk at ``horizon`` (McLernon et al.): a Cox model, on follow-up censored at the
    horizon, of a restricted cubic spline of cloglog(predicted risk) with Hmisc's knots (:func:`hmisc_knots`),
    its coefficients by Efron's partial likelihood and its baseline hazard as ``baseline`` says
    (:data:`CALIBRATION_BASELINES`).

    No risk is clipped. The cloglog is computed as :func:`complementary_log_log`; a predicted risk of exactly 0 or
    1 (a survival that rounds to 1 or 0 in double precision) has no finite cloglog: such patients are left out of
    the calibration model and get NaN here (:func:`calibration_summary` counts them). With fewer than three
    distinct knots the spline term is dropped (a linear term only); with a single distinct prediction every
    patient's observed risk is the Kaplan-Meier risk at the horizon. An event exactly at the horizon counts as
    ``rule`` says (:func:`censor_at`).

    Parameters
    ----------
    time, event, predicted_risk
        Shape (n,): follow-up (months), 1 = event, predicted risk of an event by the horizon.

    Returns
    -------
    Shape (n,): observed risk, NaN where the predicted risk is exactly 0 or 1.
    """
    if baseline not in CALIBRATION_BASELINES:
        raise ValueError(f"calibration baseline {baseline!r}: expected one of {', '.join(CALIBRATION_BASELINES)}")
    time, event = censor_at(time, event, horizon, rule)
    cll = complementary_log_log(predicted_risk)
    usable = np.isfinite(cll)
    observed = np.full(len(cll), np.nan)
    if not usable.any():
        return observed
    time, event, cll = time[usable], event[usable], cll[usable]
    if len(np.unique(cll)) < 2:
        observed[usable] = km_risk_at(time, event, horizon, rule)[0]
        return observed
    knots = hmisc_knots(cll)
    basis = restricted_cubic_spline(cll, knots) if len(knots) >= 3 else cll[:, None]
    observed[usable] = 1.0 - _cox_survival_at(basis, time, event, horizon, baseline)
    return observed


def calibration_summary(time, event, risk_score, predicted_risk, horizon: float,
                        rule: EventAtHorizon = DEFAULT_RULE,
                        baseline: str = DEFAULT_CALIBRATION_BASELINE) -> dict[str, float]:
    """ICI, E50, E90, calibration slope (with 95% CI) and the O/E ratio (with 95% CI) at ``horizon``.

    Follow-up is censored at the horizon inside (McLernon et al. 2023), so the result is the same whether or not
    the caller did so. ICI, E50 and E90 use :func:`smooth_observed_risk` with ``baseline``; patients whose
    predicted risk is exactly 0 or 1 are left out of them and counted in ``n_risk_0_or_1``. The slope is the risk
    score's coefficient in a Cox model on that follow-up; O/E is the Kaplan-Meier risk at the horizon over the
    mean predicted risk. An event exactly at the horizon counts as ``rule`` says.
    """
    from lifelines import CoxPHFitter

    predicted_risk = np.asarray(predicted_risk, float)
    observed = smooth_observed_risk(time, event, predicted_risk, horizon, rule, baseline)
    calibrated = np.isfinite(observed)
    error = np.abs(predicted_risk - observed)[calibrated]
    if not calibrated.any():
        error = np.array([np.nan])
    censored_time, censored_event = censor_at(time, event, horizon, rule)
    frame = pd.DataFrame({"lp": np.asarray(risk_score, float), "time": censored_time, "event": censored_event})
    slope, slope_se = np.nan, np.nan  # undefined when every patient has the same risk score
    if len(np.unique(frame["lp"])) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slope_fit = CoxPHFitter().fit(frame, "time", "event")
        slope = float(slope_fit.params_["lp"])
        slope_se = float(slope_fit.standard_errors_["lp"])
    observed_km, km_se = km_risk_at(time, event, horizon, rule)
    expected = float(predicted_risk.mean())
    oe = observed_km / expected
    log_se = km_se / observed_km if observed_km > 0 else np.nan
    z = stats.norm.ppf(0.975)
    return {"ici": float(error.mean()), "e50": float(np.median(error)), "e90": float(np.percentile(error, 90)),
            "n_risk_0_or_1": int((~calibrated).sum()),
            "slope": slope, "slope_ci_low": slope - z * slope_se, "slope_ci_high": slope + z * slope_se,
            "observed_risk": observed_km, "expected_risk": expected, "oe_ratio": oe,
            "oe_ci_low": oe * float(np.exp(-z * log_se)), "oe_ci_high": oe * float(np.exp(z * log_se))}


#: The integrated Brier score runs from this time (months) to the last horizon, on a grid of this step.
IBS_START_MONTHS = 1.0
IBS_STEP_MONTHS = 0.25


def ibs_grid(horizons: list[float] | tuple[float, ...]) -> np.ndarray:
    """The integrated Brier score's time grid: :data:`IBS_START_MONTHS` to the last horizon, step
    :data:`IBS_STEP_MONTHS` (months); the same for every model and data set."""
    return np.arange(IBS_START_MONTHS, max(horizons) + IBS_STEP_MONTHS / 2, IBS_STEP_MONTHS)


def brier_score_at(time, event, survival: np.ndarray, horizon: float,
                   rule: EventAtHorizon = DEFAULT_RULE) -> float:
    """The IPCW Brier score at ``horizon`` (Graf et al. 1999), with the evaluation's weights and rule.

    ``mean_i [ case_i S_i(t)^2 / G(T_i-) + control_i (1 - S_i(t))^2 / G(t) ]``, cases and controls as ``rule``
    says and G the censoring Kaplan-Meier with prodlim's ties (:func:`~hccrad.evaluate.horizon.ipc_weights`), as
    riskRegression's ``Score``; patients whose status is unknown contribute 0 but count in n. Where no event and
    censoring tie, this equals scikit-survival's ``brier_score``.

    Parameters
    ----------
    time, event
        Shape (n,): follow-up (months), 1 = event.
    survival
        Shape (n,): predicted S(t) at the horizon.
    """
    survival = np.asarray(survival, float)
    weights = ipc_weights(time, event, horizon, rule)
    control = np.where(weights.status.control, weights.control, 0.0)
    return float(np.mean(weights.case * survival**2 + control * (1.0 - survival) ** 2))


def brier_scores(time, event, survival_at: pd.DataFrame, horizons: list[float],
                 rule: EventAtHorizon = DEFAULT_RULE) -> dict[str, float]:
    """Brier score at each horizon, exactly, and the integrated Brier score over :func:`ibs_grid`
    (:func:`brier_score_at` on each time, integrated by the trapezoid rule over the grid's span, as
    scikit-survival's ``integrated_brier_score``; censoring estimated on the evaluated set).

    Parameters
    ----------
    time, event
        Follow-up (months) and event indicator, shape (n,).
    survival_at
        Predicted S(t), one row per patient and one column per time (months); it must hold a column at each
        horizon, and the IBS grid's columns for the integrated score.
    horizons
        Months at which the Brier score is reported.
    rule
        The ``event_at_horizon`` rule, applied at every time of the grid too.

    Returns
    -------
    ``brier_<h>m`` per horizon and ``integrated_brier``: NaN when ``survival_at`` lacks the grid's times or the
    set's follow-up does not cover the grid, never a score over another range.
    """
    time, event = np.asarray(time, float), np.asarray(event, int)
    columns = np.asarray(survival_at.columns, float)

    def column_at(t: float) -> np.ndarray:
        matches = np.flatnonzero(np.isclose(columns, t, rtol=0, atol=1e-9))
        if not matches.size:
            raise ValueError(f"no predicted survival at {t:g} months")
        return survival_at.iloc[:, int(matches[0])].to_numpy(float)

    out = {f"brier_{horizon:g}m": brier_score_at(time, event, column_at(horizon), horizon, rule)
           for horizon in horizons}
    grid = ibs_grid(horizons)
    has_grid = all(np.isclose(columns, t, rtol=0, atol=1e-9).any() for t in grid)
    if has_grid and grid[0] >= time.min() and grid[-1] < time.max():
        scores = [brier_score_at(time, event, column_at(t), t, rule) for t in grid]
        out["integrated_brier"] = float(np.trapezoid(scores, grid) / (grid[-1] - grid[0]))
    else:
        out["integrated_brier"] = np.nan
    return out
