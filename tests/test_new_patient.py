"""A new patient's risk from images: features computed as the study did, the study's own risk reproduced,
delta-method PFS intervals against a bootstrap of an independent Cox fit, contributions and refusals."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from hccrad.survival.coxmath import (
    baseline_variance_terms,
    breslow_baseline,
    cumulative_hazard_variance,
    survival_confidence_band,
)


def test_delta_method_se_of_the_predicted_cumulative_hazard_matches_a_bootstrap():
    """Tsiatis' variance of H(t | x) against 300 bootstrap refits of lifelines' Cox model (the covariates fixed),
    for three patients and two horizons: the SEs of log H agree within 15%."""
    rng = np.random.default_rng(4)
    n = 250
    x = rng.normal(size=(n, 3))
    progression = rng.exponential(10 * np.exp(-x @ [0.7, -0.4, 0.2]))
    censoring = rng.uniform(2, 30, n)
    frame = pd.DataFrame(x, columns=list("abc"))
    frame["time"], frame["event"] = np.minimum(progression, censoring), (progression <= censoring).astype(int)
    fitted = CoxPHFitter().fit(frame, "time", "event")
    beta, covariance = fitted.params_.to_numpy(), fitted.variance_matrix_.to_numpy()
    times, cumhaz = breslow_baseline(frame["time"], frame["event"], x @ beta)
    a, b = baseline_variance_terms(frame["time"], frame["event"], x, beta)
    patients = np.array([[0, 0, 0], [1.5, -1, 0.5], [-1, 1, -1]])
    horizons = [6.0, 12.0]
    ours = np.array([(lambda h, v: np.sqrt(v) / h)(*cumulative_hazard_variance(times, cumhaz, a, b, covariance, p,
                                                                             beta, horizons)) for p in patients])
    boot = []
    for _ in range(300):
        sample = frame.iloc[rng.integers(0, n, n)].reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refit = CoxPHFitter().fit(sample, "time", "event")
        boot.append(np.log(refit.predict_cumulative_hazard(pd.DataFrame(patients, columns=list("abc")),
                                                           times=horizons).to_numpy().T))
    np.testing.assert_allclose(ours, np.std(boot, axis=0), rtol=0.15)


def test_variance_terms_by_their_definition_and_the_log_log_band():
    rng = np.random.default_rng(1)
    time = np.round(rng.exponential(5, 40), 1)
    event = (rng.random(40) < 0.7).astype(int)
    design, beta = rng.normal(size=(40, 2)), np.array([0.3, -0.2])
    a, b = baseline_variance_terms(time, event, design, beta)
    event_times = np.unique(time[event == 1])
    a_loop, b_loop = 0.0, np.zeros(2)
    for k, t in enumerate(event_times):
        risk = time >= t
        weights = np.exp(design[risk] @ beta)
        deaths = ((time == t) & (event == 1)).sum()
        a_loop += deaths / weights.sum() ** 2
        b_loop += deaths * (weights @ design[risk]) / weights.sum() ** 2
        assert a[k] == pytest.approx(a_loop) and b[k] == pytest.approx(b_loop)
    survival, low, high = survival_confidence_band(np.array([0.0, 0.5, 2.0]), np.array([0.0, 0.01, 0.3]))
    assert survival == pytest.approx(np.exp(-np.array([0.0, 0.5, 2.0])))
    assert (low <= survival).all() and (survival <= high).all() and (low >= 0).all() and (high <= 1).all()
    assert low[1] == pytest.approx(np.exp(-0.5) ** np.exp(1.959964 * 0.1 / 0.5), rel=1e-6)


@pytest.fixture(scope="module")
def saved_demo_models(fitted_demo):
    from hccrad.survival import load_models

    study, table, fitted = fitted_demo
    return study, table, fitted, load_models(fitted.out_dir)


def _record(study, patient_id):
    return next(r for r in study.patients if r.patient_id == patient_id)


def _clinical(table, patient_id):
    row = table.loc[patient_id]
    return {name: row[name] for name in ("afp", "child_pugh", "bclc", "treatment")}


def test_predict_from_images_reproduces_the_studys_own_risk(saved_demo_models):
    from hccrad.io.layout import group_column, pfs_column, risk_column
    from hccrad.pipeline.predict import predict_new_patient
    from hccrad.pipeline.stages import load_predictions

    study, table, fitted, models = saved_demo_models
    predictions = load_predictions(fitted.out_dir / "predictions.csv")
    for patient_id in (predictions.index[0], predictions[predictions["dataset"] == "validation"].index[0]):
        record = _record(study, patient_id)
        result = predict_new_patient(models, _clinical(table, patient_id), record.ct, record.mask, patient_id)
        assert set(result.predictions) == set(models)
        for name, prediction in result.predictions.items():
            assert prediction.risk_score == pytest.approx(predictions.loc[patient_id, risk_column(name)], abs=1e-9)
            assert prediction.risk_group == predictions.loc[patient_id, group_column(name)]
            for row in prediction.survival.itertuples():
                pfs = predictions.loc[patient_id, pfs_column(name, row.time_months)]
                assert row.pfs == pytest.approx(pfs, abs=1e-9)
                assert row.ci_low < row.pfs < row.ci_high
            # Contributions sum to the score minus the training patients' mean score.
            model = models[name]
            training = table[table["dataset"] == "training"]
            mean_score = float(np.mean(fitted.models[name].predict(training)))
            assert prediction.contributions["contribution"].sum() == pytest.approx(
                prediction.risk_score - mean_score, abs=1e-9)
            training_scores = fitted.models[name].predict(training)
            assert prediction.training_percentile == pytest.approx(
                100 * np.mean(training_scores <= prediction.risk_score), abs=2.0)
            assert list(prediction.contributions["covariate"]) == model.covariates_


def test_without_a_ct_only_the_clinical_model_is_scored_and_a_missing_mask_is_explained(saved_demo_models):
    from hccrad.pipeline.predict import MissingMaskError, predict_new_patient

    study, table, fitted, models = saved_demo_models
    patient_id = table.index[0]
    result = predict_new_patient(models, _clinical(table, patient_id), patient_id=patient_id)
    assert set(result.predictions) == {"C"} and set(result.skipped) == {"T", "T&L", "C-T&L"}
    with pytest.raises(MissingMaskError, match="no mask for .*give a mask.*--segmentation-model"):
        predict_new_patient(models, _clinical(table, patient_id), _record(study, patient_id).ct, None, patient_id)


def test_a_different_engine_version_or_no_feature_record_is_refused(saved_demo_models, tmp_path):
    from hccrad.pipeline.predict import FeatureSettingsError, predict_new_patient
    from hccrad.survival import load_model
    from hccrad.survival.artifact import content_checksum

    study, table, fitted, models = saved_demo_models
    patient_id = table.index[0]
    record = _record(study, patient_id)
    artifact = json.loads((fitted.out_dir / "T.json").read_text())
    artifact.pop("checksum")
    artifact["feature_settings"]["engine_version"] = "0.0.1|hccrad-engine 0"
    artifact["checksum"] = {"algorithm": "sha256", "value": content_checksum(artifact)}
    (tmp_path / "T.json").write_text(json.dumps(artifact))
    with pytest.raises(FeatureSettingsError, match="computed with '0.0.1\\|hccrad-engine 0', but this installation"):
        predict_new_patient({"T": load_model(tmp_path / "T.json")}, _clinical(table, patient_id), record.ct,
                            record.mask, patient_id)
    unrecorded = load_model(fitted.out_dir / "T.json")
    unrecorded.feature_settings_ = None
    with pytest.raises(FeatureSettingsError, match="does not record how its features were computed"):
        predict_new_patient({"T": unrecorded}, _clinical(table, patient_id), record.ct, record.mask, patient_id)


def test_cli_predicts_from_images_with_intervals_and_contributions(saved_demo_models, tmp_path):
    from typer.testing import CliRunner

    from hccrad.cli.main import app
    from hccrad.io.layout import risk_column
    from hccrad.pipeline.stages import load_predictions

    study, table, fitted, models = saved_demo_models
    patient_id = table.index[3]
    record = _record(study, patient_id)
    clinical = _clinical(table, patient_id)
    result = CliRunner().invoke(app, [
        "predict", "--models", str(fitted.out_dir), "--ct", str(record.ct), "--mask", str(record.mask),
        "--afp", str(clinical["afp"]), "--child-pugh", str(clinical["child_pugh"]), "--bclc", str(clinical["bclc"]),
        "--treatment", str(clinical["treatment"]), "--patient-id", patient_id, "--json", str(tmp_path / "r.json"),
        "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    assert "PFS at 6 months" in result.output and "95% CI" in result.output
    payload = json.loads((tmp_path / "r.json").read_text())[patient_id]["predictions"]
    predictions = load_predictions(fitted.out_dir / "predictions.csv")
    for name in models:
        assert payload[name]["risk_score"] == pytest.approx(predictions.loc[patient_id, risk_column(name)], abs=1e-9)
        assert payload[name]["pfs_6m_ci_low"] < payload[name]["pfs_6m"] < payload[name]["pfs_6m_ci_high"]
        assert {c["covariate"] for c in payload[name]["contributions"]} == set(models[name].covariates_)
    # A bad clinical value is refused with the manifest's message, naming the field; exit status 1.
    bad = CliRunner().invoke(app, ["predict", "--models", str(fitted.out_dir), "--ct", str(record.ct), "--mask",
                                   str(record.mask), "--afp", "1,234", "--child-pugh", "A", "--bclc", "B",
                                   "--treatment", str(clinical["treatment"])])
    assert bad.exit_code == 1 and "afp" in bad.output


def test_cli_predicts_a_table_of_patients_with_ct_and_mask_columns(saved_demo_models, tmp_path):
    from typer.testing import CliRunner

    from hccrad.cli.main import app
    from hccrad.io.layout import risk_column
    from hccrad.pipeline.stages import load_predictions

    study, table, fitted, models = saved_demo_models
    ids = list(table.index[:2])
    rows = [{"patient_id": pid, "ct": str(_record(study, pid).ct), "mask": str(_record(study, pid).mask),
             **_clinical(table, pid)} for pid in ids]
    rows.append({"patient_id": "BROKEN", "ct": str(_record(study, ids[0]).ct), "mask": str(tmp_path / "none.nii.gz"),
                 **_clinical(table, ids[0])})
    pd.DataFrame(rows).to_csv(tmp_path / "new.csv", index=False)
    result = CliRunner().invoke(app, ["predict", "--models", str(fitted.out_dir), "--patients",
                                      str(tmp_path / "new.csv"), "--out", str(tmp_path / "out.csv")])
    assert result.exit_code == 1, result.output  # one patient failed, the others were scored
    out = pd.read_csv(tmp_path / "out.csv", index_col="patient_id")
    predictions = load_predictions(fitted.out_dir / "predictions.csv")
    for pid in ids:
        got = out.loc[[pid]].set_index("model")["risk_score"]
        for name in models:
            assert got[name] == pytest.approx(predictions.loc[pid, risk_column(name)], abs=1e-9)
    assert "none.nii.gz" in str(out.loc["BROKEN", "error"])


def test_cli_clinical_flags_alone_score_model_c_as_the_json_route(saved_demo_models, tmp_path):
    """docs/new-patient.md: without --ct only model C is scored; the four flags give the same numbers as --patient
    JSON and print percentages with their 95% intervals."""
    from typer.testing import CliRunner

    from hccrad.cli.main import app
    from hccrad.serve.present import percent

    study, table, fitted, models = saved_demo_models
    patient_id = next(p for p in table.index[5:] if pd.notna(table.loc[p, "afp"]))
    clinical = {name: (value.item() if hasattr(value, "item") else value)
                for name, value in _clinical(table, patient_id).items()}
    result = CliRunner().invoke(app, [
        "predict", "--models", str(fitted.out_dir), "--afp", str(clinical["afp"]),
        "--child-pugh", str(clinical["child_pugh"]), "--bclc", str(clinical["bclc"]),
        "--treatment", str(clinical["treatment"]), "--patient-id", patient_id, "--json", str(tmp_path / "c.json")],
        env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "c.json").read_text())[patient_id]
    assert set(payload["predictions"]) == {"C"} and set(payload["skipped"]) == set(models) - {"C"}
    route = CliRunner().invoke(app, ["predict", "--model", str(fitted.out_dir / "C.json"), "--patient",
                                     json.dumps({"patient_id": patient_id, **clinical}),
                                     "--out", str(tmp_path / "j.csv")])
    assert route.exit_code == 0, route.output
    by_json = pd.read_csv(tmp_path / "j.csv").set_index("model").loc["C"]
    flags = payload["predictions"]["C"]
    assert flags["risk_score"] == pytest.approx(by_json["risk_score"], abs=1e-12)
    assert flags["pfs_6m"] == pytest.approx(by_json["pfs_6m"], abs=1e-12)
    assert (f"PFS at 6 months: {percent(flags['pfs_6m'])} (95% CI {percent(flags['pfs_6m_ci_low'])} to "
            f"{percent(flags['pfs_6m_ci_high'])})") in result.output


def test_a_patient_moved_ten_training_sds_is_outside_the_domain_and_training_patients_mostly_are_not(
        saved_demo_models):
    """The applicability domain: one model input of a training patient moved 10 training SDs out is outside;
    the training patients themselves are inside but for a stated share (below 2% in-sample; about 1% by the
    leave-one-out construction)."""
    from hccrad.survival.domain import domain_distance, fit_domain

    study, table, fitted, models = saved_demo_models
    model = models["T&L"]
    training = table[table["dataset"] == "training"]
    inside = model.applicability(training)
    assert inside["outside"].mean() < 0.02
    assert model.domain_["training_share_outside"] == pytest.approx(0.01, abs=0.015)
    patient = training.iloc[[0]].copy()
    feature = next(c for c in model.covariates_ if c in model.feature_inputs_)
    patient[feature] = patient[feature] + 10 * model.scale_[feature]
    moved = model.applicability(patient).iloc[0]
    assert bool(moved["outside"]) and moved["percentile"] == 100.0 and moved["n_outside_range"] >= 1
    # Mahalanobis by its definition on an analytic case: identity covariance gives the Euclidean z-distance
    rng = np.random.default_rng(0)
    design = rng.normal(size=(4000, 2))
    domain = fit_domain(design[:400])
    assert domain_distance(domain, np.array([[3.0, 4.0]]))[0] == pytest.approx(5.0, rel=0.1)


def test_an_out_of_domain_prediction_says_so_and_can_be_withheld(saved_demo_models):
    from hccrad.pipeline.predict import predict_new_patient

    study, table, fitted, models = saved_demo_models
    clinical = {name: (value.item() if hasattr(value, "item") else value)
                for name, value in _clinical(table, table.index[0]).items()}
    strict = {"C": models["C"]}
    original = models["C"].domain_
    strict["C"].domain_ = {**original, "threshold": -1.0}  # every patient beyond it
    try:
        warned = predict_new_patient(strict, clinical).predictions["C"]
        assert warned.outside_domain and not warned.withheld
        assert "outside the model's applicability domain" in warned.warnings()[0]
        assert "does not cover this uncertainty" in warned.warnings()[0]
        withheld = predict_new_patient(strict, clinical, out_of_domain="withhold").predictions["C"]
        record = withheld.to_record()
        assert withheld.withheld and record["risk_score"] is None and record["pfs_6m"] is None
        assert record["outside_domain"] is True
    finally:
        models["C"].domain_ = original


def test_withhold_is_honoured_from_a_table_of_features_too(saved_demo_models):
    """`--out-of-domain withhold` with --patients (features): the row outside the domain has no numbers and says
    withheld; the others are scored as with warn."""
    from hccrad.survival.study import predict_patients

    study, table, fitted, models = saved_demo_models
    model = models["T&L"]
    patients = table[table["dataset"] == "training"].iloc[:3].copy()
    feature = next(c for c in model.covariates_ if c in model.feature_inputs_)
    patients.iloc[0, patients.columns.get_loc(feature)] += 10 * model.scale_[feature]
    warned = predict_patients(model, patients, allow_extrapolation=True)
    withheld = predict_patients(model, patients, allow_extrapolation=True, out_of_domain="withhold")
    first = patients.index[0]
    assert bool(warned.loc[first, "outside_domain"]) and not warned.loc[first, "withheld"]
    assert withheld.loc[first, "withheld"] and pd.isna(withheld.loc[first, "risk_score"])
    assert pd.isna(withheld.loc[first, "pfs_6m"])
    rest = patients.index[1:]
    np.testing.assert_allclose(withheld.loc[rest, "risk_score"].astype(float), warned.loc[rest, "risk_score"])
