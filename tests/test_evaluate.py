"""Evaluation statistics against R (timeROC, pROC), independent computation, simulation truth and
textbook cases; the study-level tables and figures."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from scipy import stats

from hccrad.evaluate import EvaluationSettings, evaluate_study
from hccrad.evaluate.calibration import brier_scores, calibration_summary
from hccrad.evaluate.comparison import delong_test, likelihood_ratio_test, nri_idi
from hccrad.evaluate.discrimination import (
    binary_outcome_at,
    delong_auc,
    delong_components,
    influence_se,
    ipcw_auc,
    ipcw_auc_influence,
)
from hccrad.evaluate.groups import decision_curve, subgroup_auc
from hccrad.survival.coxmath import partial_loglik

from .conftest import shared_path


def test_ipcw_auc_reproduces_r_timeroc_on_the_six_benchmark_cases():
    cases = json.loads(shared_path("reference", "stats", "torchsurv_benchmark_auc_R.json").read_text())
    for case in cases:
        time, event = np.array(case["test_time"], float), np.array(case["test_status"], int)
        scores = np.array(case["estimate"], float)
        ours = [ipcw_auc(time, event, scores, horizon, "timeroc") for horizon in case["times_se"]]
        # timeROC's values are printed to 4 decimals.
        np.testing.assert_allclose(ours, case["auc_cd_Uno_timeROC"], atol=1e-4 + 1e-9)


@pytest.fixture(scope="module")
def asah():
    data = pd.read_csv(shared_path("reference", "stats", "aSAH.csv"))
    return data, (data["outcome"] == "Poor").astype(int).to_numpy()


def test_delong_auc_and_ci_equal_proc_on_asah(asah):
    data, labels = asah
    # pROC: auc(aSAH$outcome, aSAH$s100b) = 0.7314, 95% CI 0.6301-0.8326 (DeLong); wfns 0.8237; ndka 0.6120.
    s100b = delong_auc(data["s100b"], labels)
    assert s100b.auc == pytest.approx(0.7314, abs=5e-5)
    assert (s100b.ci_low, s100b.ci_high) == pytest.approx((0.6301, 0.8326), abs=5e-5)
    assert delong_auc(data["wfns"], labels).auc == pytest.approx(0.8237, abs=5e-5)
    assert delong_auc(data["ndka"], labels).auc == pytest.approx(0.6120, abs=5e-5)
    # Mann-Whitney: AUC = U / (m n).
    cases, controls = data["s100b"][labels == 1], data["s100b"][labels == 0]
    u = stats.mannwhitneyu(cases, controls).statistic
    assert s100b.auc == pytest.approx(u / (len(cases) * len(controls)))


def test_delong_paired_test_equals_proc_and_independent_computation(asah):
    data, labels = asah
    # pROC: roc.test(roc(outcome, s100b), roc(outcome, wfns)): Z = -2.209, p = 0.02718 (sign: s100b - wfns).
    test = delong_test(data["s100b"], data["wfns"], labels)
    assert test.z == pytest.approx(2.209, abs=5e-4) and test.p == pytest.approx(0.02718, abs=5e-5)
    # roc.test(s100b, ndka): Z = 1.3908, p = 0.1643.
    other = delong_test(data["s100b"], data["ndka"], labels)
    assert abs(other.z) == pytest.approx(1.3908, abs=5e-4) and other.p == pytest.approx(0.1643, abs=5e-4)
    # Structural components by their definition (O(m n) loops) equal the midrank algorithm's.
    _, v10, v01 = delong_components(data["wfns"], labels)
    scores = data["wfns"].to_numpy()
    cases, controls = scores[labels == 1], scores[labels == 0]
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    np.testing.assert_allclose(v10, psi.mean(axis=1))
    np.testing.assert_allclose(v01, psi.mean(axis=0))
    # A large stratified bootstrap agrees with DeLong's standard error of the difference.
    rng = np.random.default_rng(1)
    case_index, control_index = np.where(labels == 1)[0], np.where(labels == 0)[0]
    differences = []
    for _ in range(2000):
        index = np.concatenate([rng.choice(case_index, len(case_index)), rng.choice(control_index, len(control_index))])
        y = labels[index]
        differences.append(delong_components(data["wfns"].to_numpy()[index], y)[0]
                           - delong_components(data["s100b"].to_numpy()[index], y)[0])
    delong_se = (test.ci_high - test.ci_low) / (2 * 1.959964)
    assert np.std(differences) == pytest.approx(delong_se, rel=0.1)


def test_binary_outcome_excludes_patients_censored_before_the_horizon():
    time = np.array([2.0, 5.0, 6.0, 7.0, 4.0, 9.0])
    event = np.array([1, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(binary_outcome_at(time, event, 6.0), [1, np.nan, 1, 0, 1, 0])


def test_likelihood_ratio_test_equals_lifelines_refits():
    rossi = load_rossi()
    # Tie-free times, so that the Breslow likelihood used here equals lifelines' Efron likelihood exactly.
    rossi["week"] = rossi["week"] + np.random.default_rng(0).uniform(0, 1e-3, len(rossi))
    full = CoxPHFitter().fit(rossi, "week", "arrest")
    reduced = CoxPHFitter().fit(rossi[["week", "arrest", "fin", "age"]], "week", "arrest")
    lp_full = rossi.drop(columns=["week", "arrest"]).to_numpy() @ full.params_.to_numpy()
    lp_reduced = rossi[["fin", "age"]].to_numpy() @ reduced.params_.to_numpy()
    ll_full = partial_loglik(rossi["week"], rossi["arrest"], lp_full)
    ll_reduced = partial_loglik(rossi["week"], rossi["arrest"], lp_reduced)
    statistic, p = likelihood_ratio_test(ll_reduced, ll_full, 5)
    reference = 2 * (full.log_likelihood_ - reduced.log_likelihood_)
    assert statistic == pytest.approx(reference, rel=1e-6)
    assert p == pytest.approx(stats.chi2.sf(statistic, 5))


def test_nri_and_idi_on_a_hand_computed_case():
    old = np.array([0.2, 0.4, 0.6, 0.3, 0.5, 0.1])
    new = np.array([0.3, 0.3, 0.7, 0.2, 0.6, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    result = nri_idi(old, new, labels)
    # events: up 2/3, down 1/3 -> 1/3; non-events: down 1/3, up 1/3 -> 0.
    assert result["nri"] == pytest.approx(1 / 3)
    # IDI: mean change in events (0.1 - 0.1 + 0.1)/3 minus in non-events (-0.1 + 0.1 + 0)/3.
    assert result["idi"] == pytest.approx(0.1 / 3)


def simulate(n, seed, beta=0.8):
    """Cox-Weibull data with a known survival function: returns x, time, event and the true S(t | x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    scale, shape = 0.05, 1.2
    true_time = (rng.exponential(size=n) / (scale * np.exp(beta * x))) ** (1 / shape)
    censor = rng.uniform(5, 40, n)
    time, event = np.minimum(true_time, censor), (true_time <= censor).astype(int)

    def survival(t, lp):
        return np.exp(-scale * t**shape * np.exp(lp))

    return x, time, event, survival


def test_calibration_is_ideal_for_true_probabilities_and_detects_overfitting():
    x, time, event, survival = simulate(3000, 5)
    horizon = 10.0
    true_lp = 0.8 * x
    ideal = calibration_summary(time, event, true_lp, 1 - survival(horizon, true_lp), horizon)
    assert ideal["slope"] == pytest.approx(1.0, abs=0.08)
    assert ideal["oe_ratio"] == pytest.approx(1.0, abs=0.06)
    assert ideal["ici"] < 0.02 and ideal["e90"] < 0.05
    overfit_lp = 2 * true_lp  # an overconfident model: risks too extreme, slope 0.5
    overfit = calibration_summary(time, event, overfit_lp, 1 - survival(horizon, overfit_lp), horizon)
    assert overfit["slope"] == pytest.approx(0.5, abs=0.05)
    assert overfit["ici"] > 3 * ideal["ici"]


def mclernon_cohorts():
    rotterdam = pd.read_csv(shared_path("reference", "stats", "mclernon_rotterdam.csv"))
    gbsg = pd.read_csv(shared_path("reference", "stats", "mclernon_gbsg.csv"))
    # McLernon et al.: recurrence-free survival, administratively censored at 5 years, node-positive patients.
    rotterdam["ryear"] = rotterdam["rtime"] / 365.25
    rotterdam["rfs"] = np.maximum(rotterdam["recur"], rotterdam["death"])
    death_first = (rotterdam["rfs"] == 1) & (rotterdam["recur"] == 0)
    rotterdam.loc[death_first, "ryear"] = rotterdam.loc[death_first, "dtime"] / 365.25
    gbsg["ryear"], gbsg["rfs"] = gbsg["rfstime"] / 365.25, gbsg["status"]
    out = []
    for frame, size in ((rotterdam[rotterdam["nodes"] > 0].copy(), None), (gbsg, "numeric")):
        frame.loc[frame["ryear"] > 5, "rfs"] = 0
        frame["ryear"] = frame["ryear"].clip(upper=5)
        category = (pd.cut(frame["size"], [-np.inf, 20, 50, np.inf], labels=False) if size
                    else frame["size"].map({"<=20": 0, "20-50": 1, ">50": 2}))
        out.append(pd.DataFrame({"size_20_50": (category == 1).astype(float),
                                 "size_gt50": (category == 2).astype(float),
                                 "nodes": frame["nodes"].clip(upper=19).astype(float),
                                 "grade3": (frame["grade"] == 3).astype(float),
                                 "ryear": frame["ryear"].to_numpy(), "rfs": frame["rfs"].to_numpy()}))
    return out


def test_calibration_on_the_mclernon_external_validation():
    from lifelines.calibration import survival_probability_calibration

    development, validation = mclernon_cohorts()
    model = CoxPHFitter().fit(development, "ryear", "rfs")
    lp = validation[model.params_.index].to_numpy() @ model.params_.to_numpy()
    risk = 1 - model.predict_survival_function(validation, times=[5]).to_numpy()[0]
    ours = calibration_summary(validation["ryear"], validation["rfs"], lp, risk, 5.0)
    import matplotlib

    matplotlib.use("Agg")
    _, lifelines_ici, lifelines_e50 = survival_probability_calibration(model, validation, t0=5)
    # Two smoothers of the same quantity (Cox + RCS here, a flexible parametric model in lifelines).
    assert ours["ici"] == pytest.approx(lifelines_ici, abs=0.02)
    assert ours["e50"] == pytest.approx(lifelines_e50, abs=0.025)
    # O/E: Kaplan-Meier risk at 5 years over the mean prediction, computed independently.
    from lifelines import KaplanMeierFitter

    observed = 1 - KaplanMeierFitter().fit(validation["ryear"], validation["rfs"]).survival_function_at_times(5).iloc[0]
    assert ours["oe_ratio"] == pytest.approx(observed / risk.mean(), rel=1e-9)
    assert ours["slope_ci_low"] < 1 < ours["slope_ci_high"]


def test_brier_score_without_censoring_is_the_mean_squared_error():
    rng = np.random.default_rng(2)
    time = rng.exponential(10, 200)
    event = np.ones(200, int)
    survival = pd.DataFrame({6.0: np.full(200, 0.6), 12.0: np.full(200, 0.3)})
    scores = brier_scores(time, event, survival, [6.0, 12.0])
    assert scores["brier_6m"] == pytest.approx(np.mean(((time > 6) - 0.6) ** 2))
    assert scores["brier_12m"] == pytest.approx(np.mean(((time > 12) - 0.3) ** 2))


def test_decision_curve_treat_all_matches_the_formula():
    x, time, event, survival = simulate(400, 8)
    table = pd.DataFrame({"pfs_months": time, "pfs_event": event, "risk": 1 - survival(10.0, 0.8 * x)})
    curves = decision_curve(table, {"model": "risk"}, 10.0, np.array([0.2, 0.4]))
    from lifelines import KaplanMeierFitter

    prevalence = 1 - KaplanMeierFitter().fit(time, event).survival_function_at_times(10.0).iloc[0]
    treat_all = curves[curves["model"] == "all"].set_index("threshold")["net_benefit"]
    for threshold in (0.2, 0.4):
        assert treat_all[threshold] == pytest.approx(prevalence - (1 - prevalence) * threshold / (1 - threshold),
                                                     abs=1e-6)
    assert (curves[curves["model"] == "none"]["net_benefit"] == 0).all()


def test_subgroup_heterogeneity_with_two_groups_is_the_squared_z_of_the_difference():
    x, time, event, _ = simulate(600, 9)
    table = pd.DataFrame({"pfs_months": time, "pfs_event": event, "score": x,
                          "afp": np.where(np.arange(600) % 2, 1000.0, 10.0), "bclc": "B", "child_pugh": "A",
                          "treatment": "TACE"})
    rows, tests = subgroup_auc(table, "score", 10.0)
    afp_rows = rows[rows["factor"] == "AFP level"]
    afp_test = tests.set_index("factor").loc["AFP level"]
    outcome = binary_outcome_at(time, event, 10.0)
    binary, ipcw = [], []
    for parity in (0, 1):
        members = np.arange(600) % 2 == parity
        complete = members & ~np.isnan(outcome)
        binary.append(delong_auc(x[complete], outcome[complete]))
        auc, influence = ipcw_auc_influence(time[members], event[members], x[members], 10.0)
        ipcw.append((auc, influence_se(influence)))
    # Primary: the subgroups' own IPCW AUCs (censoring estimated within each) and their influence SEs.
    z2 = (ipcw[0][0] - ipcw[1][0]) ** 2 / (ipcw[0][1] ** 2 + ipcw[1][1] ** 2)
    assert afp_test["q"] == pytest.approx(z2, rel=1e-9)
    assert sorted(afp_rows["auc"].round(10)) == sorted(round(a, 10) for a, _ in ipcw)
    assert sorted(afp_rows["auc"].round(10)) == sorted(round(ipcw_auc(time[np.arange(600) % 2 == p],
                                                                      event[np.arange(600) % 2 == p],
                                                                      x[np.arange(600) % 2 == p], 10.0), 10)
                                                       for p in (0, 1))
    # Beside it: the paper's complete-case AUC with DeLong variances.
    z2_binary = (binary[0].auc - binary[1].auc) ** 2 / (binary[0].se**2 + binary[1].se**2)
    assert afp_test["p_complete_case"] == pytest.approx(stats.chi2.sf(z2_binary, 1), rel=1e-9)
    assert sorted(afp_rows["auc_complete_case"].round(10)) == sorted(round(r.auc, 10) for r in binary)
    assert (afp_rows["censored_before"] > 0).all()


@pytest.fixture(scope="module")
def evaluated(fitted_demo, tmp_path_factory):
    study, table, fitted = fitted_demo
    out = tmp_path_factory.mktemp("evaluation")
    evaluation = evaluate_study(fitted.predictions, fitted.models, study.table(), EvaluationSettings(n_bootstrap=100),
                                out_dir=out)
    return evaluation, out


def test_study_evaluation_writes_every_table(evaluated):
    evaluation, out = evaluated
    expected = {"hazard_ratios", "discrimination", "concordance", "auc_comparison", "delong", "likelihood_ratio",
                "nri_idi",
                "calibration", "calibration_groups", "calibration_smooth", "brier", "risk_score_boxes",
                "risk_groups", "decision_curves", "subgroups", "subgroup_tests"}
    assert expected <= {p.stem for p in (out / "tables").glob("*.csv")}
    delong = pd.read_csv(out / "tables" / "delong.csv")
    # Supplementary Table 4: three comparisons x two data sets x two horizons.
    assert len(delong) == 12 and set(delong["comparison"]) == {"T vs T&L", "C vs C-T&L", "T&L vs C-T&L"}
    discrimination = pd.read_csv(out / "tables" / "discrimination.csv")
    assert len(discrimination) == 4 * 2 * 2
    assert (discrimination["auc_binary_ci_low"] <= discrimination["auc_binary"]).all()
    lrt = pd.read_csv(out / "tables" / "likelihood_ratio.csv").set_index(["reduced", "full"])
    assert lrt.loc[("C", "C-T&L"), "nested"] and lrt.loc[("C", "C-T&L"), "p"] < 0.05
    # The primary comparison: IPCW AUCs of every scored patient, the same AUCs as the discrimination table.
    comparison = pd.read_csv(out / "tables" / "auc_comparison.csv")
    assert len(comparison) == 12 and comparison["censoring"].str.startswith("censoring-aware").all()
    auc = discrimination.set_index(["model", "dataset", "horizon"])["auc_ipcw"]
    for _, row in comparison.iterrows():
        first, second = row["comparison"].split(" vs ")
        assert row["auc_first"] == pytest.approx(auc[(first, row["dataset"], row["horizon"])], rel=1e-12)
        assert row["auc_second"] == pytest.approx(auc[(second, row["dataset"], row["horizon"])], rel=1e-12)
        assert row["ci_low"] < row["difference"] < row["ci_high"]
    assert set(comparison["inference"].str.split(":").str[0]) == {"apparent", "validation"}
    nri = pd.read_csv(out / "tables" / "nri_idi.csv")
    assert set(nri["censoring"].str.split(":").str[0]) == {"censoring-aware", "complete case at t (as in the paper)"}


def svg_text(path) -> str:
    return html.unescape(" ".join(re.findall(r">([^<>]+)<", path.read_text())))


def test_figures_exist_and_carry_the_numbers_of_their_tables(evaluated):
    evaluation, out = evaluated
    figures = out / "figures"
    for path in evaluation.figures:
        assert path.stat().st_size > 5000, path
    discrimination = evaluation.tables["discrimination"]
    text = svg_text(figures / "roc_all_validation_12m.svg")
    for _, row in discrimination[(discrimination["dataset"] == "validation")
                                 & (discrimination["horizon"] == 12)].iterrows():
        assert f"AUC {row['auc_binary']:.3f} ({row['auc_binary_ci_low']:.3f}-{row['auc_binary_ci_high']:.3f})" in text
    boxes = evaluation.tables["risk_score_boxes"]
    text = svg_text(figures / "risk_boxes_training_6m.svg")
    p = boxes[(boxes["model"] == "C-T&L") & (boxes["dataset"] == "training") & (boxes["horizon"] == 6)].iloc[0]
    assert ("p<0.001" if p["mann_whitney_p"] < 0.001 else f"p={p['mann_whitney_p']:.3f}") in text
    hazards = evaluation.tables["hazard_ratios"]
    text = svg_text(figures / "hazard_ratios.svg")
    for _, row in hazards.iterrows():
        assert f"{row['hr']:.2f} ({row['ci_low']:.2f}-{row['ci_high']:.2f})" in text
    groups = evaluation.tables["risk_groups"].set_index(["model", "dataset"])
    text = svg_text(figures / "km_C-T_L_validation.svg")
    p = groups.loc[("C-T&L", "validation"), "logrank_p"]
    assert ("p<0.001" if p < 0.001 else f"p={p:.3f}") in text and "At risk" in text
    subgroups = evaluation.tables["subgroups"]
    text = svg_text(figures / "subgroups_validation_12m.svg")
    for value in subgroups[(subgroups["dataset"] == "validation") & (subgroups["horizon"] == 12)]["auc"].dropna():
        assert f"{value:.3f}" in text


def test_brier_is_computed_at_the_exact_horizon_and_the_ibs_over_one_stated_range():
    from sksurv.metrics import brier_score, integrated_brier_score
    from sksurv.util import Surv

    from hccrad.evaluate.calibration import ibs_grid

    rng = np.random.default_rng(8)
    n = 300
    lp = rng.normal(size=n)
    time = rng.exponential(10 * np.exp(-lp))
    censor = rng.uniform(2, 30, n)
    event = (time <= censor).astype(int)
    time = np.minimum(time, censor)
    grid = np.union1d([6.0, 12.0], ibs_grid([6.0, 12.0]))
    survival = pd.DataFrame(np.exp(-np.outer(np.exp(lp), grid / 10)), columns=grid)
    scores = brier_scores(time, event, survival, [6.0, 12.0])
    y = Surv.from_arrays(event.astype(bool), time)
    expected = brier_score(y, y, np.exp(-np.exp(lp) * 6.0 / 10)[:, None], [6.0])[1][0]
    assert scores["brier_6m"] == pytest.approx(expected, rel=1e-12)
    ibs = ibs_grid([6.0, 12.0])
    assert ibs[0] == 1.0 and ibs[-1] == 12.0
    values = np.exp(-np.outer(np.exp(lp), ibs / 10))
    assert scores["integrated_brier"] == pytest.approx(integrated_brier_score(y, y, values, ibs), rel=1e-12)
    with pytest.raises(ValueError, match="no predicted survival at 9.1 months"):
        brier_scores(time, event, survival, [9.1])


def test_unscored_patients_leave_figures_intact_and_are_counted(fitted_demo, tmp_path):
    study, table, fitted = fitted_demo
    predictions = fitted.predictions.copy()
    unscored = predictions.index[predictions["dataset"] == "validation"][:3]
    for column in [c for c in predictions if c.endswith("_T&L") and not c.startswith("group_")]:
        predictions.loc[unscored, column] = np.nan
    predictions.loc[unscored, "group_T&L"] = ""
    evaluation = evaluate_study(predictions, fitted.models, study.table(), EvaluationSettings(n_bootstrap=20),
                                out_dir=tmp_path)
    scoring = evaluation.tables["scoring"].set_index(["model", "dataset"])
    assert scoring.loc[("T&L", "validation"), "unscored"] == 3 and scoring.loc[("C", "validation"), "unscored"] == 0
    roc = svg_text(tmp_path / "figures" / "roc_all_validation_6m.svg")
    assert "T&L" in roc and "3 unscored left out" in roc
    assert "3 unscored left out" in svg_text(tmp_path / "figures" / "risk_boxes_validation_6m.svg")
    assert "3 unscored left out" in svg_text(tmp_path / "figures" / "km_T_L_validation.svg")


def test_calibration_censors_at_the_horizon_itself():
    """McLernon's GBSG validation from the raw follow-up (beyond 5 years) equals the hand-censored computation."""
    development, validation = mclernon_cohorts()
    model = CoxPHFitter().fit(development, "ryear", "rfs")
    gbsg = pd.read_csv(shared_path("reference", "stats", "mclernon_gbsg.csv"))
    raw_time, raw_event = gbsg["rfstime"].to_numpy() / 365.25, gbsg["status"].to_numpy()
    assert (raw_time > 5).sum() > 100  # the raw data do run past the horizon
    lp = validation[model.params_.index].to_numpy() @ model.params_.to_numpy()
    risk = 1 - model.predict_survival_function(validation, times=[5]).to_numpy()[0]
    by_hand = calibration_summary(validation["ryear"], validation["rfs"], lp, risk, 5.0)
    inside = calibration_summary(raw_time, raw_event, lp, risk, 5.0)
    for key in ("ici", "e50", "e90", "slope", "oe_ratio"):
        assert inside[key] == pytest.approx(by_hand[key], rel=1e-9), key


def test_hmisc_knot_rule_and_few_distinct_predictions():
    from hccrad.evaluate.calibration import hmisc_knots

    rng = np.random.default_rng(3)
    small = rng.normal(size=50)
    ordered = np.sort(small)
    np.testing.assert_allclose(hmisc_knots(small), [ordered[4], np.median(small), ordered[-5]])
    large = rng.normal(size=300)
    np.testing.assert_allclose(hmisc_knots(large), np.percentile(large, [10, 50, 90]))
    np.testing.assert_allclose(hmisc_knots(np.repeat([1.0, 2.0, 3.0, 4.0], 30)), [2.0, 3.0])  # interior values
    # a clinical model with four distinct predictions: calibration is finite, never NaN
    x, time, event, survival = simulate(300, 5)
    groups = np.digitize(x, [-0.7, 0.0, 0.7])
    risk = np.array([0.2, 0.35, 0.5, 0.65])[groups]
    summary = calibration_summary(time, event, groups.astype(float), risk, 10.0)
    assert all(np.isfinite(summary[key]) for key in ("ici", "e50", "e90", "slope", "oe_ratio"))
    constant = calibration_summary(time, event, np.zeros(300), np.full(300, 0.4), 10.0)
    assert np.isfinite(constant["ici"])


def test_complete_case_outcome_ties_at_the_horizon():
    time = np.array([3.0, 6.0, 6.0, 7.0, 5.0])
    event = np.array([1, 1, 0, 1, 0])
    # Default rule (riskRegression, scikit-survival): progression at t is a case; a control is followed beyond t,
    # so censored exactly at t, like censored before t, is left out.
    np.testing.assert_array_equal(binary_outcome_at(time, event, 6.0), [1.0, 1.0, np.nan, 0.0, np.nan])
    # timeROC's rule: progression exactly at t is neither case nor control.
    np.testing.assert_array_equal(binary_outcome_at(time, event, 6.0, "timeroc"),
                                  [1.0, np.nan, np.nan, 0.0, np.nan])


def test_bootstrap_optimism_moves_the_apparent_c_index_towards_validation():
    """Harrell's bootstrap repeats the whole pipeline per resample. With known truth (2 prognostic features among
    200 noise features, 90 training patients) the apparent C-index is optimistic; the corrected one lies closer
    to the C-index on 1000 new patients from the same distribution."""
    from hccrad.evaluate.internal import bootstrap_optimism, performance
    from hccrad.survival import CoxRiskModel, ModelConfig, make_y

    def cohort(n, seed):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 202))
        true_time = rng.exponential(10 * np.exp(-0.7 * x[:, 0] - 0.5 * x[:, 1]))
        censor = rng.uniform(3, 30, n)
        frame = pd.DataFrame(x, columns=[f"Tumor_f{k}" for k in range(202)])
        frame["pfs_months"], frame["pfs_event"] = np.minimum(true_time, censor), (true_time <= censor).astype(int)
        return frame

    training, new = cohort(90, 1), cohort(1000, 2)
    model = CoxRiskModel("T", ModelConfig(univariate_p=0.2, lasso_folds=5), horizons_months=(6.0, 12.0))
    model.fit(training, make_y(training["pfs_months"], training["pfs_event"]))
    result = bootstrap_optimism(model, training, (6.0, 12.0), n_bootstrap=8, seed=3, scheduler="synchronous")
    row = result.set_index("measure").loc["c_index"]
    assert row["resamples"] >= 6 and row["optimism"] > 0
    assert row["apparent"] == pytest.approx(performance(model, training, (6.0, 12.0))["c_index"])
    truth = performance(model, new, (6.0, 12.0))["c_index"]
    assert row["apparent"] > truth
    assert abs(row["corrected"] - truth) < abs(row["apparent"] - truth)
    reports = []
    again = bootstrap_optimism(model, training, (6.0, 12.0), n_bootstrap=8, seed=3, scheduler="threads",
                               progress=lambda done, total: reports.append((done, total)))
    pd.testing.assert_frame_equal(result, again)  # seeded: the same on any scheduler
    assert reports == [(k, 8) for k in range(1, 9)]  # the progress bar sees every resample finish


def test_progress_bar_writes_one_line_per_tenth_when_not_a_terminal():
    import io

    from hccrad.evaluate.internal import stderr_progress

    stream = io.StringIO()
    report = stderr_progress("internal validation T", stream)
    for done in range(1, 201):
        report(done, 200)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and lines[0].endswith(" 1/200 resamples") and lines[-1].endswith("200/200 resamples")
    assert lines[5] == "internal validation T: [" + "#" * 15 + "." * 15 + "] 100/200 resamples"


def test_internal_validation_runs_in_the_study_when_asked(tmp_path):
    from typer.testing import CliRunner

    from hccrad.cli.main import app

    from .test_input_integrity import _clinical_study

    manifest = _clinical_study(tmp_path, evaluation={"n_bootstrap": 20, "internal_validation_resamples": 3})
    CliRunner().invoke(app, ["run", str(manifest)])
    table = pd.read_csv(tmp_path / "out" / "evaluation" / "tables" / "internal_validation.csv")
    c_index = table[(table["model"] == "C") & (table["measure"] == "c_index")].iloc[0]
    assert c_index["resamples"] == 3
    assert c_index["corrected"] == pytest.approx(c_index["apparent"] - c_index["optimism"])
    assert "Internal validation (bootstrap optimism" in (tmp_path / "out" / "report" / "report.html").read_text()


def _rcspline_eval(x: np.ndarray, knots: tuple[float, float, float]) -> np.ndarray:
    """Hmisc::rcspline.eval's nonlinear term of a 3-knot restricted cubic spline (norm = 2)."""
    k1, k2, k3 = knots
    cube = lambda v: np.maximum(v, 0.0) ** 3  # noqa: E731
    return (cube(x - k1) - cube(x - k2) * (k3 - k1) / (k3 - k2) + cube(x - k3) * (k2 - k1) / (k3 - k2)) / (k3 - k1) ** 2


def test_calibration_equals_the_mclernon_tutorial_from_uncensored_gbsg():
    """McLernon et al. 2023 (code: Giardiello's Prediction_performance_survival, 01_predsurv_minimal): the
    Rotterdam model (size, winsorised nodes with a spline at 0/1/9, grade 3) fitted on 5-year censored data and
    validated on GBSG at 5 years. GBSG goes in with its full follow-up: the censoring at 5 years happens inside."""
    rotterdam = pd.read_csv(shared_path("reference", "stats", "mclernon_rotterdam.csv"))
    gbsg = pd.read_csv(shared_path("reference", "stats", "mclernon_gbsg.csv"))
    rotterdam["ryear"] = rotterdam["rtime"] / 365.25
    rotterdam["rfs"] = np.maximum(rotterdam["recur"], rotterdam["death"])
    died_later = (rotterdam["rfs"] == 1) & (rotterdam["recur"] == 0) & (rotterdam["rtime"] < rotterdam["dtime"])
    rotterdam.loc[died_later, "ryear"] = rotterdam.loc[died_later, "dtime"] / 365.25
    nodes_cap = np.quantile(rotterdam["nodes"], 0.99, method="inverted_cdf")  # R's quantile(type = 1)

    def design(frame: pd.DataFrame, size: pd.Series) -> pd.DataFrame:
        nodes = np.minimum(frame["nodes"], nodes_cap).astype(float)
        return pd.DataFrame({"size_20_50": (size == "20-50").astype(float), "size_gt50": (size == ">50").astype(float),
                             "nodes2": nodes, "nodes3": _rcspline_eval(nodes.to_numpy(), (0, 1, 9)),
                             "grade3": (frame["grade"] == 3).astype(float)})

    development = design(rotterdam, rotterdam["size"])
    development["ryear"] = np.minimum(rotterdam["ryear"], 5)
    development["rfs"] = np.where(rotterdam["ryear"] > 5, 0, rotterdam["rfs"])
    model = CoxPHFitter().fit(development, "ryear", "rfs")
    validation = design(gbsg, pd.cut(gbsg["size"], [-1, 20, 50, 500], labels=["<=20", "20-50", ">50"]).astype(str))
    lp = validation[model.params_.index].to_numpy() @ model.params_.to_numpy()
    risk = 1 - model.predict_survival_function(validation, times=[5]).to_numpy()[0]
    ours = calibration_summary(gbsg["rfstime"] / 365.25, gbsg["status"], lp, risk, 5.0)
    # The tutorial's printed output. The slope is a Cox fit on the same data: equal to print precision.
    assert ours["slope"] == pytest.approx(1.0562040, abs=1e-6)
    assert (ours["slope_ci_low"], ours["slope_ci_high"]) == pytest.approx((0.8158872, 1.2965207), abs=1e-6)
    # Predicted risks come from lifelines' Breslow baseline hazard, riskRegression's from its own estimator;
    # the two differ by about 1e-4 in risk, which is what remains here.
    assert ours["oe_ratio"] == pytest.approx(1.0173902, abs=3e-4)
    assert ours["ici"] == pytest.approx(0.03017958, abs=1.5e-4)
    assert ours["e50"] == pytest.approx(0.02627822, abs=1.5e-4)
    assert ours["e90"] == pytest.approx(0.07466548, abs=1.5e-4)
