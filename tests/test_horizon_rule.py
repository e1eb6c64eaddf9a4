"""One rule for an event at the horizon, and prodlim's censoring ties, in every statistic: riskRegression's Score
(shared R references), hand-computed T < t versions, lifelines and scikit-survival; maxstat against pLausen92."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hccrad.evaluate.calibration import brier_score_at, brier_scores, censor_at, km_risk_at
from hccrad.evaluate.comparison import censored_nri_idi, ipcw_auc_comparison
from hccrad.evaluate.discrimination import binary_outcome_at, influence_se, ipcw_auc, ipcw_auc_influence
from hccrad.evaluate.horizon import censoring_survival, censoring_survival_at, horizon_status
from hccrad.evaluate.study import EvaluationConfig, EvaluationSettings, evaluate_study
from hccrad.survival.coxmath import maxstat_p_value
from tests.conftest import shared_path

REFERENCES = ("reference", "stats", "riskregression")


def _reference(name: str) -> pd.DataFrame:
    return pd.read_csv(shared_path(*REFERENCES, name))


def _markers(data: pd.DataFrame, model: str) -> np.ndarray:
    return data["lp1" if model == "m1" else "lp2"].to_numpy(float)


def _scored_set(dataset: str, results: str, n_rows: int):
    """A shared data set (markers, follow-up, event) and its riskRegression result rows."""
    data = _reference(f"{dataset}.csv")
    rows = _reference(results).query("set == @dataset")
    assert len(rows) == n_rows
    return data, data["time"].to_numpy(float), data["status"].to_numpy(int), rows


@pytest.mark.parametrize("dataset", ["gbsg", "pbc"])
def test_ipcw_auc_and_se_equal_riskregression_score(dataset):
    data, time, event, rows = _scored_set(dataset, "score_auc.csv", 6)
    for row in rows.itertuples():
        auc, influence = ipcw_auc_influence(time, event, _markers(data, row.model), row.times)
        assert auc == pytest.approx(row.AUC, abs=1e-8), (row.model, row.times)
        assert influence_se(influence) == pytest.approx(row.se, abs=1e-5), (row.model, row.times)


@pytest.mark.parametrize("dataset", ["gbsg", "pbc"])
def test_paired_auc_difference_equals_riskregression_contrasts(dataset):
    data, time, event, rows = _scored_set(dataset, "score_auc_difference.csv", 3)
    for row in rows.itertuples():
        test = ipcw_auc_comparison(time, event, data["lp1"].to_numpy(float), data["lp2"].to_numpy(float),
                                   row.times)
        assert test.difference == pytest.approx(row._5, abs=1e-8), row.times  # delta.AUC
        assert test.se == pytest.approx(row.se, abs=1e-5), row.times
        assert test.p == pytest.approx(row.p, abs=1e-4), row.times


def test_pbc_has_an_event_at_the_horizon_and_the_rules_differ_there_only():
    data = _reference("pbc.csv")
    time, event, marker = data["time"].to_numpy(float), data["status"].to_numpy(int), data["lp1"].to_numpy(float)
    assert ((time == 1000) & (event == 1)).sum() == 1
    assert ipcw_auc(time, event, marker, 1000, "case") != ipcw_auc(time, event, marker, 1000, "timeroc")
    for horizon in (2000, 3000):  # no event exactly there
        assert not ((time == horizon) & (event == 1)).any()
        assert ipcw_auc(time, event, marker, horizon, "case") == ipcw_auc(time, event, marker, horizon, "timeroc")


def _censoring_km_prodlim(time, event):
    """G with prodlim's ties, built from lifelines: a censoring at u moved just after u, so that patients who
    progress at u leave the censoring risk set first. Returns G(s-) and G(s) as functions."""
    from lifelines import KaplanMeierFitter

    eps = 1e-7
    fitter = KaplanMeierFitter().fit(time + eps * (event == 0), event_observed=(event == 0).astype(int))

    def left(s):
        return np.array([fitter.predict(v - 2 * eps) for v in np.atleast_1d(s)], float)

    def at(s):
        return np.array([fitter.predict(v + 2 * eps) for v in np.atleast_1d(s)], float)

    return left, at


def _tied_whole_months(seed: int, n: int = 120):
    """Follow-up in whole months (events and censorings tie, events fall on the horizons) and a marker."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    progression = rng.exponential(10 * np.exp(-0.7 * latent))
    censoring = rng.uniform(1, 30, n)
    time = np.ceil(np.minimum(progression, censoring))
    event = (progression <= censoring).astype(int)
    return time, event, latent + rng.normal(size=n)


def test_censoring_survival_uses_prodlims_tie_rule():
    time, event, _ = _tied_whole_months(1)
    times, survival = censoring_survival(time, event)
    left, at = _censoring_km_prodlim(time, event)
    np.testing.assert_allclose(censoring_survival_at(times, survival, times, left=False), at(times), atol=1e-12)
    np.testing.assert_allclose(censoring_survival_at(times, survival, times, left=True), left(times), atol=1e-12)
    # survfit's rule (events stay in the censoring risk set at their time) gives another G on these data.
    from lifelines import KaplanMeierFitter

    survfit = KaplanMeierFitter().fit(time, event_observed=1 - event).predict(times).to_numpy()
    assert np.abs(survfit - censoring_survival_at(times, survival, times, left=False)).max() > 1e-3


@pytest.mark.parametrize("rule", ["case", "timeroc"])
def test_ipcw_auc_equals_a_hand_computed_version_of_each_rule(rule):
    time, event, marker = _tied_whole_months(2)
    left, at = _censoring_km_prodlim(time, event)
    for horizon in (6.0, 12.0):
        is_case = (event == 1) & ((time <= horizon) if rule == "case" else (time < horizon))
        assert ((time == horizon) & (event == 1)).any()
        numerator = denominator = 0.0
        for i in np.flatnonzero(is_case):
            for j in np.flatnonzero(time > horizon):
                weight = 1.0 / (left(time[i])[0] * at(horizon)[0])
                numerator += weight * ((marker[i] > marker[j]) + 0.5 * (marker[i] == marker[j]))
                denominator += weight
        assert ipcw_auc(time, event, marker, horizon, rule) == pytest.approx(numerator / denominator, rel=1e-10)


def test_kaplan_meier_risk_and_censoring_at_the_horizon_follow_the_rule():
    from lifelines import KaplanMeierFitter

    time, event, _ = _tied_whole_months(3)
    fitter = KaplanMeierFitter().fit(time, event)
    for horizon in (6.0, 12.0):
        assert ((time == horizon) & (event == 1)).any()
        assert km_risk_at(time, event, horizon, "case")[0] == pytest.approx(1 - fitter.predict(horizon), abs=1e-12)
        assert km_risk_at(time, event, horizon, "timeroc")[0] == pytest.approx(
            1 - fitter.predict(horizon - 1e-9), abs=1e-12)  # S(t-)
        _, censored_event = censor_at(time, event, horizon, "timeroc")
        assert not (censored_event[time == horizon]).any()
        _, censored_event = censor_at(time, event, horizon, "case")
        np.testing.assert_array_equal(censored_event[time == horizon], event[time == horizon])


@pytest.mark.parametrize("rule", ["case", "timeroc"])
def test_censored_idi_weights_are_the_rules_cases_and_prodlim_weights(rule):
    time, event, marker = _tied_whole_months(4)
    rng = np.random.default_rng(0)
    old, new = rng.uniform(0.1, 0.9, len(time)), rng.uniform(0.1, 0.9, len(time))
    left, _ = _censoring_km_prodlim(time, event)
    horizon = 6.0
    is_case = (event == 1) & ((time <= horizon) if rule == "case" else (time < horizon))
    weights = 1.0 / left(time[is_case])
    change = new - old
    expected = np.sum(weights * change[is_case]) / weights.sum() - change[time > horizon].mean()
    assert censored_nri_idi(time, event, old, new, horizon, rule)["idi"] == pytest.approx(expected, rel=1e-10)


def test_brier_score_equals_scikit_survival_without_ties_and_the_hand_formula_with_them():
    from sksurv.metrics import brier_score
    from sksurv.util import Surv

    rng = np.random.default_rng(5)
    n = 200
    time, event = rng.exponential(10, n), (rng.random(n) < 0.7).astype(int)
    survival = rng.uniform(0.2, 0.9, n)
    y = Surv.from_arrays(event.astype(bool), time)
    expected = brier_score(y, y, survival[:, None], [6.0])[1][0]
    assert brier_score_at(time, event, survival, 6.0) == pytest.approx(expected, rel=1e-10)

    time, event, _ = _tied_whole_months(6, n)
    left, at = _censoring_km_prodlim(time, event)
    for rule in ("case", "timeroc"):
        is_case = (event == 1) & ((time <= 6) if rule == "case" else (time < 6))
        terms = np.zeros(n)
        terms[is_case] = survival[is_case] ** 2 / left(time[is_case])
        terms[time > 6] = (1 - survival[time > 6]) ** 2 / at(6.0)[0]
        assert brier_score_at(time, event, survival, 6.0, rule) == pytest.approx(terms.mean(), rel=1e-10)


def test_integrated_brier_equals_scikit_survival_without_ties():
    from sksurv.metrics import integrated_brier_score
    from sksurv.util import Surv

    from hccrad.evaluate.calibration import ibs_grid

    rng = np.random.default_rng(8)
    n = 150
    time, event = rng.exponential(15, n) + 0.5, (rng.random(n) < 0.7).astype(int)
    grid = ibs_grid([6.0, 12.0])
    rate = rng.uniform(0.02, 0.2, n)
    survival = pd.DataFrame(np.exp(-np.outer(rate, grid)), columns=grid)
    y = Surv.from_arrays(event.astype(bool), time)
    expected = integrated_brier_score(y, y, survival.to_numpy(), grid)
    assert brier_scores(time, event, survival, [6.0, 12.0])["integrated_brier"] == pytest.approx(expected, rel=1e-9)


def test_the_binary_outcome_is_the_same_status_the_censoring_aware_statistics_use():
    time, event, _ = _tied_whole_months(7)
    for rule in ("case", "timeroc"):
        status = horizon_status(time, event, 6.0, rule)
        outcome = binary_outcome_at(time, event, 6.0, rule)
        np.testing.assert_array_equal(outcome == 1, status.case)
        np.testing.assert_array_equal(outcome == 0, status.control)
        assert not (status.case & status.control).any()


def test_the_setting_is_validated():
    assert EvaluationConfig().event_at_horizon == "case"
    assert EvaluationConfig.model_validate({"event_at_horizon": "timeroc"}).event_at_horizon == "timeroc"
    with pytest.raises(ValueError, match="event_at_horizon"):
        EvaluationConfig.model_validate({"event_at_horizon": "T<t"})


def test_maxstat_equals_plausen92_over_the_shared_table():
    table = _reference("maxstat_plausen92.csv")
    assert (table["b"] < 1).any() and (table["b"] >= 1).any()
    for row in table.itertuples():
        assert maxstat_p_value(row.b**2, row.minprop, row.maxprop) == pytest.approx(row.p, abs=1e-12), row.b


def test_every_horizon_table_of_a_study_names_its_rule_and_follows_it(fitted_demo):
    """On the demo study's predictions with follow-up rounded to whole months (events on the horizons), the
    two rules give different tables wherever an event sits at t, and each table names the rule it used."""
    _study, _table, fitted = fitted_demo
    predictions = fitted.predictions.copy()
    predictions["pfs_months"] = np.ceil(predictions["pfs_months"])
    on_horizon = ((predictions["pfs_months"].isin([6.0, 12.0])) & (predictions["pfs_event"] == 1)).sum()
    assert on_horizon > 0
    tables = {}
    for rule in ("case", "timeroc"):
        settings = EvaluationSettings(n_bootstrap=10, event_at_horizon=rule)
        tables[rule] = evaluate_study(predictions, fitted.models, None, settings).tables
    for name in ("discrimination", "auc_comparison", "delong", "nri_idi", "calibration", "brier",
                 "risk_score_boxes", "decision_curves"):
        for rule in ("case", "timeroc"):
            assert set(tables[rule][name]["event_at_horizon"]) == {rule}, name
        numeric = tables["case"][name].select_dtypes("number").columns
        assert not np.allclose(tables["case"][name][numeric].to_numpy(float),
                               tables["timeroc"][name][numeric].to_numpy(float), equal_nan=True), name
    cases = tables["case"]["discrimination"]["n_cases"].sum()
    assert cases > tables["timeroc"]["discrimination"]["n_cases"].sum()
