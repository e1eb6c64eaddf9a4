"""Small studies never stop the evaluation or the report (issue: a 24-patient study ended in matplotlib's
"'xerr' must not contain negative values"): degenerate subgroups get a stated reason, figures draw what exists."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from hccrad.evaluate.figures import interval_errors, subgroup_figure  # noqa: E402
from hccrad.evaluate.groups import subgroup_auc  # noqa: E402


@pytest.mark.parametrize(("patients", "seed"), [(24, 7), (16, 3)])
def test_a_tiny_synthetic_study_reaches_a_report_with_its_reasons_stated(tmp_path, patients, seed):
    """24 patients with seed 7 has subgroups with AUC 1 and SE 2e-17 (the reported crash), and subgroups with one
    progression; 16 with seed 3 is the smallest that passes the fit's minimum of training patients."""
    from hccrad.pipeline import run_study
    from hccrad.synth import CohortSpec, generate_cohort

    manifest = generate_cohort(tmp_path / "study", CohortSpec(n_patients=patients, seed=seed, n_jobs=2))
    result = run_study(manifest, n_bootstrap=10)
    assert result.status == "done", result.stopped
    assert result.report is not None and result.report.is_file()
    report = result.report.read_text()
    assert "What hccrad understood of the clinical table" in report and "median PFS (Kaplan-Meier)" in report
    assert "Center shift" in report
    shift = pd.read_csv(manifest.parent / "output" / "evaluation" / "tables" / "center_shift.csv")
    assert set(shift["center"]) == {"D", "E", "F"} and shift["share_outside_domain"].between(0, 1).all()
    tables = manifest.parent / "output" / "evaluation" / "tables"
    subgroups = pd.read_csv(tables / "subgroups.csv")
    missing = subgroups["auc"].isna()
    assert missing.any()  # a tiny study has subgroups without an AUC, and each says why
    assert subgroups.loc[missing, "note"].str.startswith("not estimable: too few").all()
    without_ci = subgroups["auc"].notna() & subgroups["ci_low"].isna()
    assert subgroups.loc[without_ci, "note"].str.contains("SE 0").all()
    estimated = subgroups.dropna(subset=["ci_low"])
    assert (estimated["ci_low"] <= estimated["auc"]).all() and (estimated["auc"] <= estimated["ci_high"]).all()
    table1 = pd.read_csv(tables / "table1.csv").astype(str)
    assert not table1.apply(lambda column: column.str.contains("inf")).any().any()


def test_interval_errors_never_negative_and_missing_bounds_draw_no_bar():
    below, above = interval_errors([1.0, 0.5, 0.7, np.nan], [1.0 - 4e-17, 0.2, np.nan, 0.1],
                                   [1.0 - 1e-16, 0.9, 0.9, 0.2])
    assert below[0] == 0 and above[0] == 0  # a rounding-sized overshoot of an AUC of 1
    assert below[1] == pytest.approx(0.3) and above[1] == pytest.approx(0.4)
    assert np.isnan(below[2]) and above[2] == pytest.approx(0.2)
    assert np.isnan(below[3]) and np.isnan(above[3])
    assert interval_errors([0.5], [0.6], [0.9])[0][0] != interval_errors([0.5], [0.6], [0.9])[0][0]  # NaN: wrong side


def test_subgroups_with_separation_one_class_or_one_patient_give_reasons_and_a_figure(tmp_path):
    # AFP < 400: 3 cases all scored above 3 controls (AUC 1, SE 0); AFP >= 400: a single patient
    table = pd.DataFrame({
        "pfs_months": [2.0, 3, 4, 20, 22, 24, 5],
        "pfs_event": [1, 1, 1, 0, 0, 1, 1],
        "afp": [10.0, 10, 10, 10, 10, 10, 900],
        "child_pugh": ["A"] * 7, "bclc": ["B"] * 7, "treatment": ["TACE"] * 7,
        "score": [3.0, 2.5, 2.0, 0.1, 0.2, 0.3, 1.0]})
    rows, tests = subgroup_auc(table, "score", 6.0)
    low = rows[(rows["factor"] == "AFP level") & (rows["subgroup"] == "< 400 ng/mL")].iloc[0]
    assert low["auc"] == 1.0 and np.isnan(low["ci_low"]) and "SE 0" in low["note"]
    single = rows[(rows["factor"] == "AFP level") & (rows["subgroup"] == ">= 400 ng/mL")].iloc[0]
    assert np.isnan(single["auc"]) and single["note"] == "not estimable: too few progressions (1)"
    written = subgroup_figure(rows, tests, "tiny", tmp_path, "subgroups")
    assert written and all(path.is_file() and path.stat().st_size > 0 for path in written)


def test_library_warnings_go_to_the_run_log_not_the_console(capsys, caplog):
    import logging
    import warnings

    from hccrad.cli.main import _library_warnings_to_log

    saved = warnings.showwarning
    try:
        _library_warnings_to_log()
        with caplog.at_level(logging.INFO, logger="hccrad.run.library"), warnings.catch_warnings():
            warnings.simplefilter("always")
            np.var(np.array([1.0]), ddof=1)  # numpy: "Degrees of freedom <= 0"
    finally:
        warnings.showwarning = saved
    assert "Degrees of freedom" not in capsys.readouterr().err
    assert any("Degrees of freedom" in record.getMessage() for record in caplog.records)


def test_the_reports_roc_calibration_and_decision_legends_sit_outside_the_data(tmp_path, monkeypatch):
    """By rendered extents, as the paper's: the report's own figures put their legends below the axis."""
    from hccrad.evaluate import figures

    captured = []
    monkeypatch.setattr(figures, "save", lambda figure, folder, name: captured.append(figure) or [])
    groups = pd.DataFrame({"predicted": [0.1, 0.5, 0.9], "observed": [0.2, 0.5, 0.8],
                           "observed_ci_low": [0.0, 0.3, 0.6], "observed_ci_high": [0.4, 0.7, 1.0]})
    figures.calibration_figure([("T", groups, None, {"ici": 0.05, "slope": 1.0})], "t", tmp_path, "c")
    curves = pd.DataFrame({"model": ["T", "T", "all", "all"], "threshold": [0.1, 0.5, 0.1, 0.5],
                           "net_benefit": [0.3, 0.1, 0.25, -0.2]})
    figures.decision_figure(curves, "t", tmp_path, "d")
    for figure in captured:
        axis = figure.axes[0]
        renderer = figure.canvas.get_renderer()
        assert not axis.get_legend().get_window_extent(renderer).overlaps(axis.get_window_extent(renderer))
