"""A model at a new hospital: external validation of saved models, their updating, and the applicability domain."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.io.layout import model_artifact_name, risk_column


@pytest.fixture(scope="module")
def external_run(fitted_demo, tmp_path_factory):
    """The demo's own models validated, through `hccrad external-validate --update both`, on the demo's validation
    patients written as an external cohort (split: external)."""
    study, table, fitted = fitted_demo
    folder = tmp_path_factory.mktemp("external")
    clinical = pd.read_csv(study.config.clinical_table_path, dtype=str, keep_default_na=False)
    validation = set(table.index[table["dataset"] == "validation"])
    external = clinical[clinical["patient_id"].isin(validation)].copy()
    for column in ("ct", "mask"):
        external[column] = [str(study.config.resolve(value)) for value in external[column]]
    external.to_csv(folder / "clinical.csv", index=False)
    settings = yaml.safe_load((study.config.base_dir / "study.yaml").read_text())
    settings.update(name="demo validation centers, external", clinical_table="clinical.csv",
                    split={"external": True}, output_dir="out")
    settings["features"] = {**settings.get("features", {}),
                            "params": str(study.config.resolve(settings["features"]["params"]))}
    manifest = folder / "study.yaml"
    manifest.write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(app, ["external-validate", str(manifest), "--models", str(fitted.out_dir),
                                      "--bootstrap", "10", "--update", "both", "--update-bootstrap", "10"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return study, table, fitted, folder / "out" / "external", result.output


def test_external_validation_of_the_studys_own_models_equals_evaluate_on_its_validation_patients(
        external_run):
    from hccrad.evaluate import EvaluationSettings, evaluate_study

    study, table, fitted, out, _ = external_run
    own = evaluate_study(fitted.predictions, fitted.models, study.table(), EvaluationSettings(n_bootstrap=10))
    external = {name: pd.read_csv(out / "evaluation" / "tables" / f"{name}.csv")
                for name in ("concordance", "discrimination")}
    mine = own.tables["concordance"].query("dataset == 'validation'").set_index("model")
    theirs = external["concordance"].set_index("model")
    for column in ("harrell_c", "uno_c"):
        np.testing.assert_allclose(theirs.loc[mine.index, column], mine[column], atol=1e-12)
    mine = own.tables["discrimination"].query("dataset == 'validation'").set_index(["model", "horizon"])
    theirs = external["discrimination"].set_index(["model", "horizon"])
    for column in ("auc_ipcw", "auc_binary"):
        np.testing.assert_allclose(theirs.loc[mine.index, column], mine[column], atol=1e-12)
    predictions = pd.read_csv(out / "predictions.csv", index_col="patient_id")
    predictions.index = predictions.index.astype(str)
    for name in fitted.models:
        np.testing.assert_allclose(predictions[risk_column(name)],
                                   fitted.predictions.loc[predictions.index, risk_column(name)], atol=1e-9)


def test_the_report_names_the_models_origin_and_the_updated_artifacts_their_lineage(external_run):
    from hccrad.io.provenance import file_sha256
    from hccrad.survival.artifact import load_model

    study, table, fitted, out, output = external_run
    report = (out / "report" / "external_validation.html").read_text()
    assert "External validation of the models" in report and "demo validation centers, external" in report
    provenance = pd.read_csv(out / "provenance.csv")
    for _, row in provenance.iterrows():
        assert row["file_sha256"] == file_sha256(fitted.out_dir / row["artifact"]) and row["file_sha256"] in report
    assert (out / "report" / "paper" / "external_validation_summary.docx").is_file()
    assert "Model updating" in report and "unchanged: Harrell C is equal before and after" in report
    before_after = pd.read_csv(out / "update_calibration.csv")
    spread = before_after.groupby(["model", "horizon"])["harrell_c"].agg(lambda c: c.max() - c.min())
    assert (spread.abs() < 1e-12).all()  # a monotone update changes no ranking
    for name in fitted.models:
        lineage = load_model(out / "updated_models" / model_artifact_name(name)).lineage_
        parent = json.loads((fitted.out_dir / provenance.set_index("model").loc[name, "artifact"]).read_text())
        assert lineage["kind"] == "update" and lineage["method"] == "both"
        assert lineage["parent_checksum"] == parent["checksum"]["value"]
        assert lineage["updating_cohort"]["patients"] == int((table["dataset"] == "validation").sum())
        assert lineage["parameters"]["slope"] > 0
    optimism = pd.read_csv(out / "update_optimism.csv")
    assert set(optimism["measure"]) == {"ici_6m", "oe_6m", "ici_12m", "oe_12m"} and (optimism["resamples"] > 0).all()
    domain = pd.read_csv(out / "applicability_domain.csv")
    assert set(domain["model"]) == set(fitted.models) and "Applicability domain" in report


def _simulated_cohort(model, clinical: pd.DataFrame, hazard_ratio: float, n: int, seed: int) -> pd.DataFrame:
    """Patients drawn from ``clinical`` whose PFS follows ``model`` with every hazard multiplied by
    ``hazard_ratio`` (times from the model's own baseline, inverted), censored at 24 months."""
    rng = np.random.default_rng(seed)
    patients = clinical.iloc[rng.integers(0, len(clinical), n)].copy()
    patients.index = [f"S{k}" for k in range(n)]
    lp = model.predict(patients)
    target = rng.exponential(size=n) / (hazard_ratio * np.exp(lp))
    times, cumhaz = model.baseline_times_, model.baseline_cumhaz_
    index = np.searchsorted(cumhaz, target, side="left")
    event_time = np.where(index < len(times), times[np.minimum(index, len(times) - 1)], np.inf)
    censor = np.minimum(rng.uniform(6, 36, n), 24.0)
    patients["pfs_months"] = np.minimum(event_time, censor)
    patients["pfs_event"] = (event_time <= censor).astype(int)
    return patients


def test_baseline_updating_repairs_a_doubled_hazard_and_keeps_discrimination(fitted_demo):
    """Known truth: the external cohort's progression hazard is twice the development's (PFS times halved). The
    frozen model's O/E at 12 months is far from 1; baseline updating brings it into 0.9-1.1, lowers the ICI and
    leaves the C-index as it was."""
    from hccrad.evaluate.calibration import calibration_summary
    from hccrad.evaluate.discrimination import harrell_c
    from hccrad.survival.updating import update_model

    study, table, fitted = fitted_demo
    model = fitted.models["C"]
    cohort = _simulated_cohort(model, table, 2.0, 1500, seed=3)
    time, event = cohort["pfs_months"].to_numpy(float), cohort["pfs_event"].to_numpy(int)

    def measured(candidate):
        score = candidate.predict(cohort)
        risk = 1.0 - candidate.predict_survival(cohort, [12.0]).to_numpy(float)[:, 0]
        return calibration_summary(time, event, score, risk, 12.0), harrell_c(time, event, score)

    (frozen, c_frozen) = measured(model)
    updated = update_model(model, cohort, "baseline", {"study": "simulated"})
    (after, c_after) = measured(updated)
    assert frozen["oe_ratio"] > 1.3
    assert 0.9 <= after["oe_ratio"] <= 1.1 and after["ici"] < frozen["ici"]
    assert c_after == pytest.approx(c_frozen, abs=1e-12)
    # the same cohort with the development's own hazard: the slope update finds a slope near 1
    same = _simulated_cohort(model, table, 1.0, 1500, seed=4)
    assert update_model(model, same, "slope", {}).lineage_["parameters"]["slope"] == pytest.approx(1.0, abs=0.2)


def test_fitting_an_external_cohort_is_refused_with_the_remedy(external_run):
    _, _, _, out, _ = external_run
    manifest = out.parent.parent / "study.yaml"
    result = CliRunner().invoke(app, ["fit", str(manifest)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "split is external: true" in " ".join(result.output.split())


def test_standardized_mean_difference_by_its_definition():
    from hccrad.evaluate.shift import standardized_mean_difference

    group, reference = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    pooled = np.sqrt((np.var(group, ddof=1) + np.var(reference, ddof=1)) / 2)
    assert standardized_mean_difference(group, reference) == pytest.approx((4.0 - 2.0) / pooled)
    assert np.isnan(standardized_mean_difference(np.ones(3), np.ones(3)))
