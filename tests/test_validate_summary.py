"""`hccrad validate` shows what it understood (units, events, categories, mapping) and catches the mapping
mistakes a new user makes, each with its remedy; tried on the real HCC-TACE-Seg table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.evaluate.cohort import plausibility_warnings, rare_category_warnings
from hccrad.evaluate.horizon import km_median
from tests.conftest import hcc_tace_settings

WEEKS_TO_MONTHS = 7 / 30.4375


def _tace_manifest(tmp_path, **changes) -> tuple:
    manifest = hcc_tace_settings(tmp_path / "out")
    table = manifest["clinical_table"]
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        elif key == "columns":
            manifest["columns"] = {**manifest["columns"], **value}
        else:
            manifest[key] = value
    path = tmp_path / "tace.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path, table


def _validate(path):
    return CliRunner().invoke(app, ["validate", str(path), "--no-acquisition"], env={"COLUMNS": "300"})


def test_the_summary_shows_patients_events_and_pfs_in_months(tmp_path):
    path, table = _tace_manifest(tmp_path)
    result = _validate(path)
    assert result.exit_code == 0, result.output
    summary = (tmp_path / "out" / "validation" / "summary.md").read_text()
    raw = pd.read_excel(table, sheet_name="data table")
    months = raw["TTP"].to_numpy(float) * WEEKS_TO_MONTHS
    events = raw["Censored_0_progressed_1"].to_numpy(int)
    assert "| patients (progressions) |" in summary and "| 105 (45) |" in summary
    assert f"| {km_median(months, events):.1f} |" in summary.split("median PFS (Kaplan-Meier)")[1].split("\n")[0]
    assert f"{months.max():.1f}" in summary  # the range, in months
    assert "read in **weeks**" in summary and "| TTP | pfs_months |" in summary
    assert "| Child-Pugh | C |" in summary and "| AFP | >= 400 ng/mL |" in summary
    assert "| treatment | 17 |" in summary  # missing regimens counted
    assert "105 valid patients" in result.output and "What hccrad understood" in result.output


def test_weeks_read_as_months_are_flagged(tmp_path):
    path, _ = _tace_manifest(tmp_path, time_unit=None)
    result = _validate(path)
    assert "are these times in weeks or days? set `time_unit`" in result.output.replace("\n", " ").lower() or \
        "Are these times in weeks or days? Set `time_unit`" in " ".join(result.output.split())


def test_a_misspelt_regimen_is_named_with_the_remedy(tmp_path):
    path, _ = _tace_manifest(tmp_path)
    output = " ".join(_validate(path).output.split())
    assert "'Cisplastin' is seen in 1 patient(s)" in output and "treatment_categories" in output


def test_a_configured_column_missing_from_the_table_is_an_error_with_the_closest_names(tmp_path):
    path, _ = _tace_manifest(tmp_path, columns={"afp": "AFP_ngml"})
    result = _validate(path)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "column 'AFP_ngml' (for afp) is not in the clinical table" in output
    assert "did you mean 'AFP_group' or 'AFP'?" in output
    assert "missing value" not in output  # the cause, not a hundred rows of its effect


def test_a_yaml_typo_and_a_missing_split_read_as_one_line_each(tmp_path):
    path, _ = _tace_manifest(tmp_path, time_unit=None, split=None)
    text = path.read_text() + "time_units: weeks\n"
    path.write_text(text)
    result = _validate(path)
    assert result.exit_code == 2
    assert "unknown key `time_units`; did you mean `time_unit`?" in result.output
    assert "required key `split` is missing: add `split: {validation_centers: [names]}`" in result.output
    assert "pydantic" not in result.output and "errors.pydantic.dev" not in result.output
    assert "Traceback" not in result.output


def test_a_wrong_sheet_lists_the_sheets(tmp_path):
    path, _ = _tace_manifest(tmp_path, sheet="Data Table")
    result = _validate(path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    output = " ".join(result.output.split())
    assert "has no sheet 'Data Table'" in output and "'data table', 'glossary'" in output
    assert "did you mean `sheet: data table`?" in output


def test_plausibility_rules_on_constructed_follow_up():
    rng = np.random.default_rng(0)
    early = rng.uniform(1, 12, 60)  # progressions early, censored at the end of a 36-month study
    late = rng.uniform(30, 36, 40)
    table = pd.DataFrame({"pfs_months": np.r_[early, late], "pfs_event": np.r_[np.ones(60), np.zeros(40)]})
    assert plausibility_warnings(table, "months", "event=1") == []
    reversed_coding = table.assign(pfs_event=1 - table["pfs_event"])
    [warning] = plausibility_warnings(reversed_coding, "months", "event=1")
    assert "is the event column reversed?" in warning and "event_coding: censored=1" in warning
    all_events = table.assign(pfs_event=1)
    assert any("100% of patients progressed" in w for w in plausibility_warnings(all_events, "months", "event=1"))
    in_days = table.assign(pfs_months=table["pfs_months"] * 30.4375)
    assert any("weeks or days" in w for w in plausibility_warnings(in_days, "months", "event=1"))


def test_rare_categories_are_named():
    table = pd.DataFrame({"treatment": ["TACE"] * 20 + ["TACE+systemic"] * 10 + ["TACe"],
                          "bclc": ["B"] * 31, "child_pugh": ["A"] * 31})
    [warning] = rare_category_warnings(table)
    assert "'TACe' is seen in 1 patient(s), close to 'TACE' (n = 20)" in warning


@pytest.mark.parametrize("sheet", [5])
def test_a_sheet_number_out_of_range_is_refused(tmp_path, sheet):
    path, _ = _tace_manifest(tmp_path, sheet=sheet)
    output = " ".join(_validate(path).output.split())
    assert "has no sheet number 5" in output


def test_fit_explains_a_non_convergence_by_its_column():
    from hccrad.survival.selection import CoxFitError, explain_cox_failure, fit_lifelines

    rng = np.random.default_rng(3)
    n = 40
    time = rng.exponential(10, n)
    event = (rng.random(n) < 0.7).astype(int)
    with pytest.raises(CoxFitError, match="column 'afp_ge_cutoff' is missing for every training patient"):
        fit_lifelines(pd.DataFrame({"afp_ge_cutoff": np.full(n, np.nan), "x": rng.normal(size=n)}), time, event)
    constant = pd.DataFrame({"bclc_stage": np.full(n, 2.0)})
    assert "column 'bclc_stage' is constant (2) in every training patient" in explain_cox_failure(constant, time,
                                                                                                   event)
    no_events = np.where(event == 1, 0.0, 1.0)  # level 1 holds only censored patients
    assert "column 'treatment_x' = 1" in explain_cox_failure(pd.DataFrame({"treatment_x": no_events}), time, event)
    order = np.argsort(time)
    separated = np.zeros(n)
    separated[order[: n // 2]] = 1.0
    separated[event == 0] = 0.0  # only early progressions carry the value
    assert "separates the outcome completely" in explain_cox_failure(pd.DataFrame({"z": separated}), time, event)
    x = rng.normal(size=n)
    collinear = pd.DataFrame({"a": x, "b": 2 * x})
    assert "collinear (rank 1 of 2)" in explain_cox_failure(collinear, time, event)
