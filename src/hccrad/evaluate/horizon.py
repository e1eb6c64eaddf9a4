"""One rule for a patient's status at a horizon, and the censoring weights, for every statistic of the evaluation.

**Status at horizon t** (:func:`horizon_status`), with the rule named by the evaluation setting
``event_at_horizon``:

* ``case`` (the default; riskRegression, scikit-survival, survAUC, Heagerty's cumulative/dynamic definition and a
  clinician reading "progression within 6 months"): a *case* progressed at or before t (T <= t with an event);
* ``timeroc`` (to reproduce R's timeROC): a case progressed strictly before t (T < t); a progression exactly at t
  is neither case nor control.

Under both rules a *control* is followed beyond t without progression (T > t), and a patient censored at or before
t has an unknown status: left out by the complete-case statistics, weighted for by the censoring-aware ones.

**Censoring weights** (:func:`censoring_survival`): the Kaplan-Meier estimate G of the censoring distribution
P(C > s) with prodlim's tie rule, as in riskRegression and timeROC's weights: at a time where progressions and
censorings coincide, the patients who progressed are removed from the censoring risk set first (the censoring
risk set at s is every patient with T > s plus those censored at s). A case is weighted 1 / G(T_i-), a control
1 / G(t).

**Kaplan-Meier risk at t** (:func:`km_event`): under ``case`` the risk 1 - S(t) counts a progression exactly at t;
under ``timeroc`` it does not (1 - S(t-)), which is the Kaplan-Meier risk of the follow-up with a progression at t
read as event-free at t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

EventAtHorizon = Literal["case", "timeroc"]
#: The default rule: an event exactly at the horizon is a case (T <= t).
DEFAULT_RULE: EventAtHorizon = "case"
RULES: tuple[EventAtHorizon, ...] = ("case", "timeroc")

#: How each rule reads, for table captions and the report.
RULE_CAPTIONS = {
    "case": "event_at_horizon = case: cases progressed at or before t (T <= t), controls are progression-free "
            "beyond t (T > t); censored at or before t: status unknown",
    "timeroc": "event_at_horizon = timeroc: cases progressed before t (T < t; a progression exactly at t is "
               "neither case nor control), controls are progression-free beyond t (T > t); censored at or before "
               "t: status unknown",
}


def check_rule(rule: str) -> EventAtHorizon:
    """``rule`` if it is one of :data:`RULES`, else a ValueError that names the choices."""
    if rule not in RULES:
        raise ValueError(f"event_at_horizon must be one of {', '.join(RULES)}; got {rule!r}")
    return rule  # type: ignore[return-value]


@dataclass(frozen=True)
class HorizonStatus:
    """Each patient's status at one horizon: boolean masks, shape (n,). A patient who is neither case nor control
    is unknown: censored at or before t, or (under ``timeroc``) progressed exactly at t."""
    case: np.ndarray
    control: np.ndarray
    progression_at_horizon: np.ndarray  # progressed exactly at t but not a case (``timeroc`` only)

    @property
    def known(self) -> np.ndarray:
        """Case or control (the complete cases at the horizon)."""
        return self.case | self.control

    @property
    def censored_before(self) -> np.ndarray:
        """Censored at or before the horizon: status unknown because follow-up ended."""
        return ~self.known & ~self.progression_at_horizon


def horizon_status(time: np.ndarray, event: np.ndarray, horizon: float,
                   rule: EventAtHorizon = DEFAULT_RULE) -> HorizonStatus:
    """Cases and controls at ``horizon`` under ``rule`` (module docstring).

    Parameters
    ----------
    time, event
        Shape (n,): follow-up (months) and 1 = progression, 0 = censored.
    horizon
        Months.
    rule
        ``case`` (T <= t) or ``timeroc`` (T < t).
    """
    rule = check_rule(rule)
    time, event = np.asarray(time, float), np.asarray(event, int)
    progressed = event == 1
    case = progressed & ((time <= horizon) if rule == "case" else (time < horizon))
    control = time > horizon
    at_horizon = progressed & (time == horizon) & ~case
    return HorizonStatus(case, control, at_horizon)


def binary_outcome(time: np.ndarray, event: np.ndarray, horizon: float,
                   rule: EventAtHorizon = DEFAULT_RULE) -> np.ndarray:
    """The complete-case outcome at ``horizon``: 1 for a case, 0 for a control, NaN when unknown; shape (n,)."""
    status = horizon_status(time, event, horizon, rule)
    outcome = np.full(len(status.case), np.nan)
    outcome[status.case] = 1.0
    outcome[status.control] = 0.0
    return outcome


def km_event(time: np.ndarray, event: np.ndarray, horizon: float,
             rule: EventAtHorizon = DEFAULT_RULE) -> np.ndarray:
    """The event indicator, shape (n,), that makes a Kaplan-Meier estimate at ``horizon`` follow ``rule``: as
    given under ``case``; under ``timeroc`` a progression exactly at t reads as event-free at t."""
    status = horizon_status(time, event, horizon, rule)
    return np.where(status.progression_at_horizon, 0, np.asarray(event, int))


def censoring_survival(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of the censoring survival G(s) = P(C > s), prodlim's tie rule (module docstring).

    Returns
    -------
    times, survival
        The distinct follow-up times, sorted, shape (m,), and G just after each, shape (m,).
    """
    time, event = np.asarray(time, float), np.asarray(event, int)
    unique, inverse = np.unique(time, return_inverse=True)
    censored_here = np.bincount(inverse, weights=(event == 0).astype(float), minlength=len(unique))
    leaving = np.bincount(inverse, minlength=len(unique)).astype(float)
    beyond = len(time) - np.cumsum(leaving)  # patients with T > s
    at_risk = beyond + censored_here
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1.0 - censored_here / at_risk, 1.0)
    return unique, np.cumprod(factor)


def censoring_at_risk(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Whether each patient is in the censoring risk set at each of ``at``, prodlim's rule: T > s, or censored at
    s. Shape (n, len(at))."""
    time, event = np.asarray(time, float), np.asarray(event, int)
    at = np.asarray(at, float)
    return (time[:, None] > at[None, :]) | ((time[:, None] == at[None, :]) & (event[:, None] == 0))


def censoring_survival_at(times: np.ndarray, survival: np.ndarray, at: np.ndarray, left: bool) -> np.ndarray:
    """G at each of ``at`` from :func:`censoring_survival`'s step function: G(at-) when ``left``, else G(at)."""
    side = "left" if left else "right"
    index = np.searchsorted(times, np.asarray(at, float), side=side) - 1
    return np.where(index >= 0, survival[np.clip(index, 0, None)], 1.0)


@dataclass(frozen=True)
class IPCWeights:
    """Inverse-probability-of-censoring weights at one horizon: ``case`` is 1 / G(T_i-) for cases and 0 for every
    other patient, shape (n,); ``control`` is the controls' common weight 1 / G(t)."""
    status: HorizonStatus
    case: np.ndarray
    control: float


def ipc_weights(time: np.ndarray, event: np.ndarray, horizon: float,
                rule: EventAtHorizon = DEFAULT_RULE) -> IPCWeights:
    """The weights of every censoring-aware statistic at ``horizon`` (time, event shape (n,); months)."""
    time, event = np.asarray(time, float), np.asarray(event, int)
    status = horizon_status(time, event, horizon, rule)
    g_times, g_survival = censoring_survival(time, event)
    case_weight = np.zeros(len(time))
    if status.case.any():
        case_weight[status.case] = 1.0 / censoring_survival_at(g_times, g_survival, time[status.case], left=True)
    g_horizon = censoring_survival_at(g_times, g_survival, np.array([horizon]), left=False)[0]
    return IPCWeights(status, case_weight, float(1.0 / g_horizon) if g_horizon > 0 else np.inf)


#: Written in every table for a Kaplan-Meier median that the curve never reaches.
MEDIAN_NOT_REACHED = "not reached"


def km_median(time: np.ndarray, event: np.ndarray) -> float:
    """The Kaplan-Meier median as R's ``survfit`` prints it; NaN where the curve never reaches 0.5 ("not reached").

    The median is the first time at which S(t) <= 0.5 (R's tolerance sqrt(machine eps) on the comparison). Where
    S is exactly 0.5 on a plateau that a later event ends, it is the midpoint of the plateau's start and the time
    of that later drop (survfit's rule: 29 and 30 give 29.5); a plateau at 0.5 to the end of follow-up gives its
    start. For the median follow-up by reverse Kaplan-Meier, pass ``1 - event``.

    Parameters
    ----------
    time, event
        Shape (n,): follow-up (months) and 1 = event.
    """
    time, event = np.asarray(time, float), np.asarray(event, int)
    if not len(time):
        return np.nan
    times, first = np.unique(time, return_index=True)
    deaths = np.array([event[time == t].sum() for t in times], float)
    at_risk = len(time) - np.searchsorted(np.sort(time), times, side="left")
    survival = np.cumprod(1.0 - deaths / at_risk)
    tolerance = np.sqrt(np.finfo(float).eps)
    reached = np.flatnonzero(survival < 0.5 + tolerance)
    if not len(reached):
        return np.nan
    start = reached[0]
    later_drop = np.flatnonzero(survival[start:] < survival[start])
    if abs(survival[start] - 0.5) < tolerance and len(later_drop):
        return float((times[start] + times[start + later_drop[0]]) / 2)
    return float(times[start])


def format_median(value: float, digits: int = 1) -> str:
    """A Kaplan-Meier median for a table: the number, or :data:`MEDIAN_NOT_REACHED` where it is NaN."""
    return MEDIAN_NOT_REACHED if not np.isfinite(value) else f"{value:.{digits}f}"
