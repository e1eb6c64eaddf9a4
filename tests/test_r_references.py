"""hccrad's statistics against R, on R's own data sets with tied times (references made by
tests/data/r_reference/make_references.R and stored with it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hccrad.evaluate.calibration import calibration_summary, complementary_log_log, hmisc_knots, smooth_observed_risk
from hccrad.evaluate.comparison import censored_nri_idi
from hccrad.evaluate.discrimination import uno_c
from hccrad.evaluate.groups import decision_curve
from hccrad.evaluate.horizon import km_median
from hccrad.survival.config import ModelConfig
from hccrad.survival.coxmath import logrank_scores, maxstat_cutoff
from hccrad.survival.selection import SelectionLog, lasso_cox_cv

FOLDER = Path(__file__).parent / "data" / "r_reference"
REFERENCE = json.loads((FOLDER / "r_references.json").read_text())
DATA = {name: pd.read_csv(FOLDER / f"{name}.csv") for name in ("veteran", "colon")}


def _survival(case: dict) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame = DATA[case["data"]]
    return frame, frame[case["time"]].to_numpy(float), frame["status"].to_numpy(int)


@pytest.mark.parametrize("name", sorted(REFERENCE["maxstat"]))
def test_maxstat_cutoff_equals_maxstat_test(name):
    case = REFERENCE["maxstat"][name]
    frame, time, event = _survival(case)
    result = maxstat_cutoff(frame[case["score"]].to_numpy(float), time, event)
    assert result.cutoff == pytest.approx(case["cutoff"], rel=1e-12, abs=1e-12)
    assert result.statistic == pytest.approx(case["statistic"], rel=1e-10)
    assert result.p_value == pytest.approx(case["p"], rel=1e-8)
    assert result.n_candidates == case["n_cuts"]


def test_logrank_scores_by_hand_and_maxstat_refuses_without_events():
    # a_i = event_i - cumulative Nelson-Aalen hazard at T_i: 1 - 1/4, -1/4, 1 - (1/4 + 1/2), -(1/4 + 1/2)
    scores = logrank_scores(np.array([1.0, 2, 3, 4]), np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(scores, [0.75, -0.25, 0.25, -0.75], atol=1e-15)
    with pytest.raises(ValueError, match="no patient had an event"):
        maxstat_cutoff(np.arange(20.0), np.arange(1.0, 21), np.zeros(20))


def test_cv_glmnet_grouped_deviance_with_tied_times():
    case = REFERENCE["cv_glmnet"]
    frame, time, event = _survival(case)
    x = frame[case["columns"]]
    x = (x - x.mean()) / x.std(ddof=0)
    result = lasso_cox_cv(x, time, event, [], ModelConfig(max_features=50), SelectionLog(),
                          foldid=np.array(case["foldid"]), alphas=np.array(case["lambda"]), tol=1e-13)
    assert len(np.unique(time[event == 1])) < event.sum()  # the case is about ties
    np.testing.assert_allclose(result.alphas, case["lambda"], rtol=1e-12)
    np.testing.assert_allclose(result.cv_mean, case["cvm"], rtol=1e-7)
    np.testing.assert_allclose(result.cv_se, case["cvsd"], rtol=1e-5)
    assert result.alpha_min == pytest.approx(case["lambda_min"], rel=1e-12)
    assert result.alpha_1se == pytest.approx(case["lambda_1se"], rel=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCE["calibration"]))
@pytest.mark.parametrize(("baseline", "ctype"), [("breslow", "ctype1"), ("efron", "ctype2")])
def test_smooth_calibration_equals_r_under_each_baseline(name, baseline, ctype):
    case = REFERENCE["calibration"][name]
    _, time, event = _survival(case)
    risk = np.asarray(case["risk"], float)
    np.testing.assert_allclose(hmisc_knots(complementary_log_log(risk)), case["knots"], rtol=1e-12)
    observed = smooth_observed_risk(time, event, risk, case["horizon"], baseline=baseline)
    np.testing.assert_allclose(observed, case[ctype]["observed"], atol=1e-7)
    summary = calibration_summary(time, event, np.log(-np.log1p(-risk)), risk, case["horizon"], baseline=baseline)
    for key in ("ici", "e50", "e90"):
        assert summary[key] == pytest.approx(case[ctype][key], abs=1e-7), key
    assert summary["n_risk_0_or_1"] == 0


def test_calibration_takes_tiny_risks_as_they_are_and_counts_risks_of_0_or_1():
    case = REFERENCE["calibration"]["veteran_100"]
    _, time, event = _survival(case)
    risk = np.asarray(case["risk"], float).copy()
    risk[0], risk[1] = 1e-9, 0.0  # a clip at 1e-6 would move the first; the second has no cloglog
    observed = smooth_observed_risk(time, event, risk, case["horizon"])
    assert np.isnan(observed[1]) and np.isfinite(observed[0]) and np.isfinite(observed[2:]).all()
    assert complementary_log_log(np.array([1e-9]))[0] == pytest.approx(np.log(1e-9), abs=1e-8)
    summary = calibration_summary(time, event, np.zeros(len(risk)) + np.arange(len(risk)), risk, case["horizon"])
    assert summary["n_risk_0_or_1"] == 1 and np.isfinite(summary["ici"])


@pytest.mark.parametrize("name", sorted(REFERENCE["km_median"]))
def test_km_median_equals_survfit(name):
    case = REFERENCE["km_median"][name]
    if "data" in case:
        _, time, event = _survival(case)
    else:
        time, event = np.asarray(case["time"], float), np.asarray(case["status"], int)
    expected = np.nan if case["median"] in (None, "NA") else case["median"]
    assert km_median(time, event) == pytest.approx(expected, nan_ok=True)
    if "follow_up" in case:
        expected = np.nan if case["follow_up"] in (None, "NA") else case["follow_up"]
        assert km_median(time, 1 - event) == pytest.approx(expected, nan_ok=True)


def test_km_median_plateau_midpoint_as_the_issue_reports():
    time = np.array([5.0, 10, 29, 35, 30, 40, 50, 60])
    event = np.array([1, 1, 1, 0, 1, 0, 0, 1])
    # S(29) = 5/8; the event at 30 with 5 at risk gives S = 1/2 exactly, flat until the event at 60: (30 + 60) / 2
    assert km_median(time, event) == pytest.approx(45.0)
    plateau_time = np.array([1.0, 2, 3, 29, 31, 33, 40, 41])
    plateau_event = np.array([1, 1, 1, 1, 0, 0, 1, 0])
    # S(29) = 4/8 exactly, flat until the event at 40: median (29 + 40) / 2
    assert km_median(plateau_time, plateau_event) == pytest.approx(34.5)


@pytest.mark.parametrize("name", sorted(REFERENCE["uno_c"]))
def test_uno_c_equals_survival_concordance_n_over_g2(name):
    case = REFERENCE["uno_c"][name]
    frame = DATA[name]
    value = uno_c(frame[case["time"]].to_numpy(float), frame["status"].to_numpy(int),
                  frame[case["score"]].to_numpy(float), case["tau"])
    assert value == pytest.approx(case["c"], abs=1e-12)


def test_censoring_aware_nri_idi_equal_the_published_formulas_in_r():
    case = REFERENCE["nri_idi"]
    frame, time, event = _survival(case)
    result = censored_nri_idi(time, event, frame["risk_old"].to_numpy(float), frame["risk_new"].to_numpy(float),
                              case["horizon"])
    for key in ("nri", "nri_events", "nri_non_events", "idi"):
        assert result[key] == pytest.approx(case[key], abs=1e-12), key


def test_net_benefit_equals_the_formula_in_r():
    case = REFERENCE["net_benefit"]
    frame, time, event = _survival(case)
    table = pd.DataFrame({"pfs_months": time, "pfs_event": event, "risk": frame["risk_new"].to_numpy(float)})
    thresholds = np.asarray(case["thresholds"], float)
    curves = decision_curve(table, {"model": "risk"}, case["horizon"], thresholds)
    model = curves[curves["model"] == "model"]["net_benefit"].to_numpy(float)
    treat_all = curves[curves["model"] == "all"]["net_benefit"].to_numpy(float)
    np.testing.assert_allclose(treat_all, case["all"], atol=1e-12)
    # where the test-positive group's follow-up ends before the horizon, hccrad (as dcurves) says nothing
    positive_follow_up = np.array([time[table["risk"] >= p].max() if (table["risk"] >= p).any() else np.inf
                                   for p in thresholds])
    defined = positive_follow_up >= case["horizon"]
    assert np.isnan(model[~defined]).all()
    assert defined.sum() >= 10
    np.testing.assert_allclose(model[defined], np.asarray(case["model"], float)[defined], atol=1e-12)
