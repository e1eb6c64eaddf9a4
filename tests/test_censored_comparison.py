"""Censoring-aware model comparison: the IPCW AUC's influence function (timeROC, bootstrap, finite differences,
type-I error under the null) and NRI/IDI that account for censoring (binary case, simulation truth)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hccrad.evaluate.comparison import censored_nri_idi, ipcw_auc_comparison, nri_idi
from hccrad.evaluate.discrimination import binary_outcome_at, influence_se, ipcw_auc, ipcw_auc_influence

from .conftest import shared_path


def _timeroc_cases():
    return json.loads(shared_path("reference", "stats", "torchsurv_benchmark_auc_R.json").read_text())


def test_influence_se_equals_timeroc_where_its_approximation_holds():
    """timeROC's iid representation approximates the Kaplan-Meier term (at-risk sets by position in the sorted
    data, ties ignored); at the first three horizons of each benchmark case, where little censoring precedes t,
    the two standard errors agree to timeROC's printed 4 decimals."""
    for case in _timeroc_cases():
        time, event = np.array(case["test_time"], float), np.array(case["test_status"], int)
        scores = np.array(case["estimate"], float)
        for horizon, auc_r, se_r in list(zip(case["times_se"], case["auc_cd_Uno_timeROC"],
                                             case["auc_cd_Uno_se_timeROC"], strict=True))[:3]:
            auc, influence = ipcw_auc_influence(time, event, scores, horizon, "timeroc")
            assert auc == pytest.approx(auc_r, abs=1e-4 + 1e-9)  # printed to 4 decimals
            assert influence_se(influence) == pytest.approx(se_r, abs=1e-4), horizon
            assert abs(influence.sum()) < 1e-9


def test_influence_se_agrees_with_the_bootstrap_at_every_benchmark_horizon():
    """Where timeROC's approximation drifts (later horizons, up to 20% above the bootstrap), the exact
    influence function stays within 10% of a 400-resample bootstrap SE."""
    case = _timeroc_cases()[0]
    time, event = np.array(case["test_time"], float), np.array(case["test_status"], int)
    scores = np.array(case["estimate"], float)
    rng = np.random.default_rng(7)
    resamples = [rng.integers(0, len(time), len(time)) for _ in range(400)]
    for horizon in case["times_se"]:
        boot = np.array([ipcw_auc(time[i], event[i], scores[i], horizon) for i in resamples])
        ours = influence_se(ipcw_auc_influence(time, event, scores, horizon)[1])
        assert ours == pytest.approx(np.nanstd(boot), rel=0.10), horizon


def _weighted_ipcw_auc(time, event, scores, horizon, weights, rule="case"):
    """An independent weighted implementation: weighted Kaplan-Meier of the censoring (prodlim's ties: patients
    who progress at u leave the censoring risk set before the censorings at u), then the IPCW AUC."""
    order_times = np.unique(time)
    survival, g_left = 1.0, {}
    for u in order_times:
        g_left[u] = survival
        at_risk = weights[(time > u) | ((time == u) & (event == 0))].sum()
        censored = weights[(time == u) & (event == 0)].sum()
        survival *= 1.0 - censored / at_risk if at_risk > 0 else 1.0
    numerator = denominator_cases = 0.0
    controls = time > horizon
    cases = (time <= horizon) if rule == "case" else (time < horizon)
    for i in np.flatnonzero(cases & (event == 1)):
        w = weights[i] / g_left[time[i]]
        c = (scores[i] > scores[controls]) + 0.5 * (scores[i] == scores[controls])
        numerator += w * np.sum(weights[controls] * c)
        denominator_cases += w
    return numerator / (denominator_cases * weights[controls].sum())


@pytest.mark.parametrize("rule", ["case", "timeroc"])
def test_influence_function_is_the_derivative_of_the_weighted_estimator(rule):
    rng = np.random.default_rng(3)
    n = 40
    time = np.round(rng.exponential(10, n))  # rounded: tied times, tied censorings, events at the horizon
    event = (rng.random(n) < 0.6).astype(int)
    scores = np.round(rng.normal(size=n) - 0.05 * time, 1)  # tied scores
    horizon = 8.0
    assert ((time == horizon) & (event == 1)).any()  # the rules differ on these data
    tied = [u for u in np.unique(time) if ((time == u) & (event == 1)).any() and ((time == u) & (event == 0)).any()]
    assert tied and min(tied) < horizon  # an event and a censoring tie before t: the tie rule matters
    auc, influence = ipcw_auc_influence(time, event, scores, horizon, rule)
    base = np.full(n, 1.0 / n)
    assert _weighted_ipcw_auc(time, event, scores, horizon, base, rule) == pytest.approx(auc, rel=1e-12)
    eps = 1e-6
    for k in range(n):
        tilted = (1 - eps) * base
        tilted[k] += eps
        derivative = (_weighted_ipcw_auc(time, event, scores, horizon, tilted, rule) - auc) / eps
        assert derivative == pytest.approx(influence[k], abs=1e-4), k


def _null_data(rng, n=150):
    """Two exchangeable markers (equal true AUC) of a latent risk; exponential times; 30-40% censored."""
    latent = rng.normal(size=n)
    marker_1, marker_2 = latent + rng.normal(size=n), latent + rng.normal(size=n)
    progression = rng.exponential(12 * np.exp(-0.8 * latent))
    censoring = rng.uniform(2, 40, n)
    return np.minimum(progression, censoring), (progression <= censoring).astype(int), marker_1, marker_2


def test_ipcw_comparison_keeps_its_size_under_the_null_and_its_se_matches_the_spread():
    rng = np.random.default_rng(20240601)
    results = [ipcw_auc_comparison(*_null_data(rng), horizon=10.0) for _ in range(1000)]
    p = np.array([r.p for r in results])
    assert np.isfinite(p).all()
    rejection = np.mean(p < 0.05)
    assert 0.035 <= rejection <= 0.065, rejection
    differences = np.array([r.difference for r in results])
    mean_se = np.mean([r.se for r in results])
    assert mean_se == pytest.approx(differences.std(ddof=1), rel=0.10)
    assert np.mean([r.n_censored_before for r in results]) > 10  # censoring before t is really there


def test_ipcw_comparison_se_matches_a_bootstrap_of_the_difference():
    rng = np.random.default_rng(11)
    time, event, marker_1, marker_2 = _null_data(rng, n=200)
    marker_2 = marker_2 + 1.5 * (time < 10)  # a real difference, so that the test is not only about the null
    test = ipcw_auc_comparison(time, event, marker_1, marker_2, 10.0)
    boot = []
    for _ in range(500):
        i = rng.integers(0, 200, 200)
        boot.append(ipcw_auc(time[i], event[i], marker_2[i], 10.0) - ipcw_auc(time[i], event[i], marker_1[i], 10.0))
    assert test.se == pytest.approx(np.std(boot), rel=0.10)
    assert test.difference > 0 and test.p < 0.05


def test_censored_nri_idi_without_censoring_equals_the_binary_nri_idi():
    rng = np.random.default_rng(5)
    time = rng.exponential(10, 300)
    event = np.ones(300, int)
    old, new = rng.uniform(0.1, 0.9, 300), rng.uniform(0.1, 0.9, 300)
    binary = nri_idi(old, new, binary_outcome_at(time, event, 8.0))
    censored = censored_nri_idi(time, event, old, new, 8.0)
    for key in ("nri", "nri_events", "nri_non_events", "idi"):
        assert censored[key] == pytest.approx(binary[key], rel=1e-12), key


def test_censored_nri_idi_recovers_the_uncensored_truth_where_complete_case_is_biased():
    """30 simulated cohorts of 2000, a third censored before the horizon. Truth: the binary NRI/IDI of the same
    patients before censoring. The censoring-aware estimates are unbiased; the complete-case ones are not."""
    rng = np.random.default_rng(8)
    horizon, errors = 8.0, []
    for _ in range(30):
        n = 2000
        informative, extra = rng.normal(size=n), rng.normal(size=n)
        progression = rng.exponential(10 * np.exp(-0.7 * informative - 0.7 * extra))
        old = 1 - np.exp(-horizon / (10 * np.exp(-0.7 * informative)))
        new = 1 - np.exp(-horizon / (10 * np.exp(-0.7 * informative - 0.7 * extra)))
        truth = nri_idi(old, new, (progression <= horizon).astype(int))
        censoring = rng.uniform(0, 16, n)
        time, event = np.minimum(progression, censoring), (progression <= censoring).astype(int)
        ours = censored_nri_idi(time, event, old, new, horizon)
        labels = binary_outcome_at(time, event, horizon)
        keep = ~np.isnan(labels)
        complete_case = nri_idi(old[keep], new[keep], labels[keep])
        errors.append([ours["nri"] - truth["nri"], complete_case["nri"] - truth["nri"],
                       ours["idi"] - truth["idi"], complete_case["idi"] - truth["idi"]])
    nri_ours, nri_complete, idi_ours, idi_complete = np.mean(errors, axis=0)
    assert abs(nri_ours) < 0.01 and abs(nri_complete) > 0.015
    assert abs(idi_ours) < 0.002 and abs(idi_complete) > 0.003


def test_kaplan_meier_risk_and_greenwood_se_equal_lifelines_with_ties_and_censoring_at_the_horizon():
    from lifelines import KaplanMeierFitter

    from hccrad.evaluate.calibration import km_risk_at

    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 60))
        time = np.round(rng.exponential(10, n))  # ties, and times exactly at the horizon
        event = (rng.random(n) < 0.6).astype(int)
        horizon = float(rng.integers(1, 20))
        fitter = KaplanMeierFitter().fit(time, event)
        survival = fitter.survival_function_at_times(horizon).iloc[0]
        risk, se = km_risk_at(time, event, horizon)
        assert risk == pytest.approx(1 - survival, abs=1e-12)
        # Greenwood's formula over lifelines' own counts of patients at risk and events
        table = fitter.event_table[fitter.event_table.index <= horizon]
        at_risk, deaths = table["at_risk"].to_numpy(float), table["observed"].to_numpy(float)
        usable = at_risk > deaths
        greenwood = np.sum(deaths[usable] / (at_risk[usable] * (at_risk[usable] - deaths[usable])))
        assert se == pytest.approx(survival * np.sqrt(greenwood), abs=1e-12)
