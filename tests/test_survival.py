"""Survival models against references: R's coxph on rossi, glmnet's LASSO conventions, lifelines, the
synthetic cohort's true signal, the real HCC-TACE-Seg table, leakage, and the JSON artifact."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from lifelines.utils import concordance_index
from scipy import stats
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.io import load_study
from hccrad.survival import CoxRiskModel, ModelConfig, fit_models, load_model, make_y
from hccrad.survival.artifact import (
    ModelArtifactError,
    content_checksum,
    model_from_dict,
    model_to_dict,
    save_model,
)
from hccrad.survival.coxmath import breslow_baseline, partial_loglik, univariate_cox
from hccrad.survival.selection import SelectionLog, _coxnet, fit_lifelines, lasso_cox_cv

from .conftest import hcc_tace_settings, shared_path

#: R: coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi) (Fox & Weisberg).
R_ROSSI = {"fin": -0.37942, "age": -0.05744, "race": 0.31390, "wexp": -0.14980, "mar": -0.43370,
           "paro": -0.08487, "prio": 0.09150}


def test_multivariable_cox_equals_r_coxph_on_rossi():
    rossi = load_rossi()
    fitted, penalizer = fit_lifelines(rossi.drop(columns=["week", "arrest"]), rossi["week"].to_numpy(),
                                      rossi["arrest"].to_numpy())
    assert penalizer == 0.0
    for name, value in R_ROSSI.items():
        assert fitted.params_[name] == pytest.approx(value, abs=5e-5)


def test_vectorised_univariate_cox_equals_lifelines():
    rossi = load_rossi()
    covariates = rossi.drop(columns=["week", "arrest"])
    ours = univariate_cox(covariates.to_numpy(), rossi["week"].to_numpy(), rossi["arrest"].to_numpy())
    for index, name in enumerate(covariates.columns):
        reference = CoxPHFitter(baseline_estimation_method="breslow")
        # lifelines uses Efron's ties; Breslow's ties are what the screen uses: compare with a tie-free copy.
        jitter = rossi[["week", "arrest", name]].copy()
        jitter["week"] = jitter["week"] + np.random.default_rng(0).uniform(0, 1e-3, len(jitter))
        mine = univariate_cox(jitter[[name]].to_numpy(), jitter["week"].to_numpy(), jitter["arrest"].to_numpy())
        reference.fit(jitter, "week", "arrest")
        assert mine.coef[0] == pytest.approx(reference.params_[name], rel=1e-5, abs=1e-7)
        assert mine.se[0] == pytest.approx(reference.standard_errors_[name], rel=1e-4)
        assert mine.p[0] == pytest.approx(reference.summary.loc[name, "p"], rel=1e-3, abs=1e-12)
        assert np.sign(ours.coef[index]) == np.sign(R_ROSSI[name])


def test_breslow_baseline_gives_lifelines_survival_predictions():
    rossi = load_rossi()
    x = rossi.drop(columns=["week", "arrest"])
    reference = CoxPHFitter(baseline_estimation_method="breslow").fit(rossi, "week", "arrest")
    lp = x.to_numpy() @ reference.params_.to_numpy()
    times, cumhaz = breslow_baseline(rossi["week"], rossi["arrest"], lp)
    ours = np.exp(-np.outer(np.exp(lp[:5]), cumhaz))
    expected = reference.predict_survival_function(x.iloc[:5], times=times).T.to_numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def glmnet_example():
    data = pd.read_csv(shared_path("reference", "stats", "glmnet_cox-example.csv"))
    return data.drop(columns=["time", "status"]), data["time"].to_numpy(), data["status"].to_numpy()


def test_lasso_cox_follows_glmnet_conventions():
    x, time, event = glmnet_example()
    # glmnet standardises with the 1/n standard deviation and reports coefficients on the original scale.
    center, scale = x.mean(), x.std(ddof=0)
    standardized = (x - center) / scale
    model = _coxnet(standardized.to_numpy(), time, event, np.ones(x.shape[1]), tol=1e-10)
    # lambda_max: the smallest lambda with every coefficient zero is max_j |score_j(0)| / n.
    score = univariate_gradient_at_zero(standardized.to_numpy(), time, event)
    assert model.alphas_[0] == pytest.approx(np.abs(score).max() / len(time), rel=1e-6)
    assert np.all(model.coef_[:, 0] == 0) and np.any(model.coef_[:, 1] != 0)
    # KKT conditions at an interior lambda: active |grad|/n = lambda, inactive |grad|/n <= lambda.
    k = 20
    beta, alpha = model.coef_[:, k], model.alphas_[k]
    gradient = cox_gradient(standardized.to_numpy(), time, event, beta) / len(time)
    active = beta != 0
    np.testing.assert_allclose(np.abs(gradient[active]), alpha, rtol=1e-3)
    np.testing.assert_allclose(np.sign(gradient[active]), np.sign(beta[active]))
    assert np.all(np.abs(gradient[~active]) <= alpha * (1 + 1e-3))
    # Back on the original scale the linear predictor is unchanged up to a constant.
    original = beta / scale.to_numpy()
    lp_standardized = standardized.to_numpy() @ beta
    lp_original = x.to_numpy() @ original
    np.testing.assert_allclose(lp_original - lp_original.mean(), lp_standardized - lp_standardized.mean(), atol=1e-9)


def univariate_gradient_at_zero(x, time, event):
    return cox_gradient(x, time, event, np.zeros(x.shape[1]))


def cox_gradient(x, time, event, beta):
    """Breslow score vector, written plainly (loop over events) as an independent reference."""
    weights = np.exp(x @ beta)
    gradient = np.zeros(x.shape[1])
    for i in np.where(event == 1)[0]:
        risk = time >= time[i]
        gradient += x[i] - (weights[risk, None] * x[risk]).sum(0) / weights[risk].sum()
    return gradient


def test_cross_validated_lasso_picks_lambda_min_and_1se():
    x, time, event = glmnet_example()
    standardized = (x - x.mean()) / x.std(ddof=0)
    log = SelectionLog()
    result = lasso_cox_cv(standardized, time, event, [], ModelConfig(lasso_folds=10, max_features=30), log)
    best = int(np.argmin(result.cv_mean))
    assert result.alpha_min == result.alphas[best]
    assert result.alpha_1se >= result.alpha_min
    assert result.cv_mean[result.alphas == result.alpha_1se][0] <= result.cv_mean[best] + result.cv_se[best]
    # CoxExample has a sparse truth (the first 10 features carry signal): lambda.min keeps them.
    kept = set(result.coefficients[result.coefficients != 0].index)
    assert {f"X{i}" for i in range(1, 11)} <= kept
    # The deviance rests on the partial log-likelihood: equal to lifelines' at its fitted coefficients
    # (no tied times in CoxExample, so Breslow and Efron agree).
    frame = x.assign(time=time, status=event)
    reference = CoxPHFitter().fit(frame, "time", "status")
    ours = partial_loglik(time, event, x.to_numpy() @ reference.params_.to_numpy())
    assert ours == pytest.approx(reference.log_likelihood_, rel=1e-9)


def c_index(predictions: pd.DataFrame, model: str, dataset: str) -> float:
    subset = predictions[predictions["dataset"] == dataset]
    return concordance_index(subset["pfs_months"], -subset[f"risk_{model}"], subset["pfs_event"])


def test_models_recover_the_synthetic_signal(fitted_demo):
    study, table, fitted = fitted_demo
    latent = pd.read_csv(study.config.base_dir / "truth" / "latent.csv").set_index("patient_id")
    truth = pd.DataFrame({
        "log tumor volume": np.log(latent["tumor_volume_ml"]),
        "tumor heterogeneity": latent["tumor_heterogeneity"],
        "tumor / liver ratio": np.log(latent["tumor_liver_ratio"]),
        "liver fibrosis": latent["liver_fibrosis"],
    }).loc[table.index]
    selected = [c for c in fitted.models["T&L"].covariates_]
    represented = set()
    for feature in selected:
        for name, values in truth.items():
            if abs(pd.Series(table[feature]).corr(values, method="spearman")) > 0.5:
                represented.add(name)
    assert len(represented) >= 3, (represented, selected)
    assert any(f.startswith("Rliver_") or f == "Tumor_to_Rliver_volume_ratio" for f in selected)
    predictions = fitted.predictions
    assert c_index(predictions, "C-T&L", "validation") > c_index(predictions, "C", "validation") + 0.03
    assert c_index(predictions, "T&L", "validation") > 0.65


def test_outputs_and_artifacts_are_complete(fitted_demo):
    _, table, fitted = fitted_demo
    out = fitted.out_dir
    for slug in ("C", "T", "T_L", "C-T_L"):
        data = json.loads((out / f"{slug}.json").read_text())
        assert data["format"] == "hccrad-cox-model" and data["format_version"] == 3
        assert data["checksum"]["algorithm"] == "sha256" and len(data["checksum"]["value"]) == 64
        assert data["software"]["hccrad"] and data["software"]["lifelines"]
        assert len(data["baseline"]["time"]) == len(data["baseline"]["cumulative_hazard"]) > 10
        p = len(data["covariates"])  # format 3: what the intervals, contributions and image prediction need
        assert np.array(data["covariance"]).shape == (p, p)
        assert np.array(data["baseline"]["mean_terms"]).shape == (len(data["baseline"]["time"]), p)
        assert len(data["covariate_means"]) == p and len(data["training_risk_percentiles"]) == 101
        assert (data["feature_settings"] is None) == (slug == "C")
        if slug != "C":
            assert data["feature_settings"]["engine"] == "auto" and data["feature_settings"]["radiomics_params"]
        hazard = pd.read_csv(out / f"{slug}_hazard_ratios.csv")
        assert (hazard["ci_low"] <= hazard["hr"]).all() and (hazard["hr"] <= hazard["ci_high"]).all()
        assert np.allclose(np.exp(hazard["coef"]), hazard["hr"])
        log = pd.read_csv(out / f"{slug}_selection_log.csv")
        assert set(log["step"]) >= ({"clinical", "multivariable"} if slug == "C" else {"univariate", "lasso"})
    c_hazards = pd.read_csv(out / "C_hazard_ratios.csv")
    assert c_hazards["paper_factor"].tolist() == ["AFP level", "Child-Pugh grade", "BCLC stage", "Treatment style"]
    assert "reference TACE" in c_hazards["description"].iloc[3]
    predictions = pd.read_csv(out / "predictions.csv", index_col="patient_id")
    assert len(predictions) == len(table)
    assert {"risk_C-T&L", "group_C-T&L", "pfs_6m_C-T&L", "pfs_12m_C-T&L"} <= set(predictions)
    assert (predictions["pfs_6m_T&L"] >= predictions["pfs_12m_T&L"]).all()
    training = predictions[predictions["dataset"] == "training"]
    assert (training["group_T&L"] == "high").mean() == pytest.approx(0.5, abs=0.02)


def test_artifact_round_trip_predicts_identically(fitted_demo, tmp_path):
    _, table, fitted = fitted_demo
    for model in fitted.models.values():
        path = save_model(model, tmp_path / "model.json")
        loaded = load_model(path)
        np.testing.assert_allclose(loaded.predict(table), model.predict(table), rtol=1e-12)
        pd.testing.assert_frame_equal(loaded.predict_survival(table), model.predict_survival(table))
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ModelArtifactError, match="format version 99; this hccrad reads versions 1, 2"):
        load_model(path)


def _saved(model, path):
    save_model(model, path)
    return json.loads(path.read_text())


def test_an_altered_or_damaged_artifact_is_refused_in_one_line(fitted_demo, tmp_path):
    _, table, fitted = fitted_demo
    model = fitted.models["C"]
    path = tmp_path / "C.json"
    data = _saved(model, path)
    covariate = data["covariates"][0]
    # 1. An edited coefficient fails the checksum.
    edited = json.loads(json.dumps(data))
    edited["coefficients"][covariate] += 0.5
    path.write_text(json.dumps(edited))
    with pytest.raises(ModelArtifactError, match="fails its checksum"):
        load_model(path)
    # 2. Edited and re-sealed with a fresh checksum, it still disagrees with its own hazard-ratio table.
    del edited["checksum"]
    edited["checksum"] = {"algorithm": "sha256", "value": content_checksum(edited)}
    path.write_text(json.dumps(edited))
    with pytest.raises(ModelArtifactError, match=f"coefficient of {covariate} .* disagrees with its hazard-ratio"):
        load_model(path)
    # 3. A missing field, re-sealed.
    incomplete = json.loads(json.dumps(data))
    del incomplete["checksum"], incomplete["baseline"]
    incomplete["checksum"] = {"algorithm": "sha256", "value": content_checksum(incomplete)}
    path.write_text(json.dumps(incomplete))
    with pytest.raises(ModelArtifactError, match="lacks the field"):
        load_model(path)
    # 4. A truncated file.
    path.write_text(json.dumps(data)[:5000])
    with pytest.raises(ModelArtifactError, match="not complete JSON"):
        load_model(path)
    # 5. The CLI prints one line and exits 2, never a traceback.
    result = CliRunner().invoke(app, ["predict", "--model", str(path), "--patient",
                                      '{"afp": 10, "child_pugh": "A", "bclc": "B", "treatment": "TACE"}'])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "not complete JSON" in result.output


def test_version_1_artifacts_without_checksum_still_load(fitted_demo, tmp_path):
    _, table, fitted = fitted_demo
    model = fitted.models["C"]
    data = _saved(model, tmp_path / "C.json")
    del data["checksum"]
    data["format_version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(data))
    np.testing.assert_allclose(load_model(tmp_path / "old.json").predict(table), model.predict(table), rtol=1e-12)


def test_validation_patients_leak_into_nothing(fitted_demo):
    _, table, fitted = fitted_demo
    changed = table.copy()
    validation = changed["dataset"] == "validation"
    numeric = [c for c in changed.columns if c.startswith(("Tumor_", "Rliver_"))]
    changed.loc[validation, numeric] = changed.loc[validation, numeric] * 3.0 + 100.0
    changed.loc[validation, "pfs_months"] = 0.5
    changed.loc[validation, "afp"] = 99999.0
    refit = fit_models(changed, ModelConfig(), feature_settings=fitted.models["T"].feature_settings_)
    for name, model in fitted.models.items():
        before, after = model_to_dict(model), model_to_dict(refit.models[name])
        for key in ("created",):
            before.pop(key), after.pop(key)
        assert before == after, name


def test_clinical_model_on_the_real_hcc_tace_seg_table(tmp_path):
    manifest = hcc_tace_settings()
    manifest["value_maps"] = {"treatment": {"Cisplatin, doxorubicin, Mitomycin-C": "cTACE",
                                            "Cisplatin, Mitomycin-C": "cTACE", "Cisplastin": "cTACE",
                                            "doxorubicin LC beads": "DEB-TACE"}}
    (tmp_path / "ttp.yaml").write_text(yaml.safe_dump(manifest))
    ttp = fit_models(load_study(tmp_path / "ttp.yaml").table(), ModelConfig(models=["C"]))
    hazards = ttp.models["C"].hazard_ratios_.set_index("covariate")
    # AFP >= 400 ng/mL shortens time to progression.
    assert hazards.loc["afp_ge_cutoff", "hr"] > 1 and hazards.loc["afp_ge_cutoff", "ci_low"] > 1
    # On TTP, death before progression is censored, so sicker livers look protective; on overall survival
    # Child-Pugh and BCLC take the expected direction. The same C model on OS:
    manifest["columns"].update({"pfs_months": "OS", "pfs_event": "Death_1_StillAliveorLostToFU_0"})
    (tmp_path / "os.yaml").write_text(yaml.safe_dump(manifest))
    overall = fit_models(load_study(tmp_path / "os.yaml").table(), ModelConfig(models=["C"]))
    hazards = overall.models["C"].hazard_ratios_.set_index("covariate")
    assert hazards.loc["child_pugh_grade", "hr"] > 1 and hazards.loc["bclc_stage", "hr"] > 1
    assert hazards.loc["afp_ge_cutoff", "hr"] > 1
    # 17 patients have no regimen: imputed with the training mode, recorded per patient.
    imputed = overall.imputation
    assert (imputed["imputed"] == "treatment").sum() == 17


def test_predict_new_patients_from_the_artifact_alone(fitted_demo, tmp_path):
    _, table, fitted = fitted_demo
    model_path = fitted.out_dir / "C-T_L.json"
    patients = table[table["dataset"] == "validation"].head(3).drop(columns=["pfs_months", "pfs_event"]).copy()
    patients.iloc[1, patients.columns.get_loc("afp")] = np.nan
    patients.to_csv(tmp_path / "new.csv")
    result = CliRunner().invoke(app, ["predict", "--model", str(model_path), "--patients", str(tmp_path / "new.csv"),
                                      "--out", str(tmp_path / "pred.csv")])
    assert result.exit_code == 1, result.output  # one patient could not be scored
    scored = pd.read_csv(tmp_path / "pred.csv", index_col="patient_id")
    bad = patients.index[1]
    assert "missing afp" in scored.loc[bad, "error"] and np.isnan(scored.loc[bad, "risk_score"])
    good = patients.index[0]
    expected = fitted.predictions.loc[good]
    assert scored.loc[good, "risk_score"] == pytest.approx(expected["risk_C-T&L"])
    assert scored.loc[good, "pfs_12m"] == pytest.approx(expected["pfs_12m_C-T&L"])
    assert scored.loc[good, "risk_group"] == expected["group_C-T&L"]
    result = CliRunner().invoke(app, ["predict", "--model", str(model_path), "--patients", str(tmp_path / "new.csv"),
                                      "--allow-impute", "--out", str(tmp_path / "pred2.csv")])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "pred2.csv", index_col="patient_id")["risk_score"].notna().all()


def test_predict_reads_clinical_values_as_the_manifest_does(fitted_demo, tmp_path):
    _, table, fitted = fitted_demo
    model_path = fitted.out_dir / "C.json"
    base = {"afp": "25", "child_pugh": "A", "bclc": "B", "treatment": table["treatment"].mode().iloc[0]}
    cases = {
        "ok": {},
        "score7": {"child_pugh": "7"},          # a Child-Pugh score, as the manifest accepts: grade B
        "gradeB": {"child_pugh": "B"},
        "abc": {"afp": "abc"},                  # unreadable: refused without --allow-impute
        "negative": {"afp": "-5"},              # never a concentration
        "thousands": {"afp": "1,234"},          # ambiguous separator: refused
        "bound": {"afp": "<20"},                # a bound, not a value
    }
    pd.DataFrame([{"patient_id": name, **base, **change} for name, change in cases.items()]).to_csv(
        tmp_path / "new.csv", index=False)
    result = CliRunner().invoke(app, ["predict", "--model", str(model_path), "--patients", str(tmp_path / "new.csv"),
                                      "--out", str(tmp_path / "pred.csv")])
    assert result.exit_code == 1, result.output
    scored = pd.read_csv(tmp_path / "pred.csv", index_col="patient_id", keep_default_na=False)
    assert scored.loc["ok", "error"] == "" and scored.loc["score7", "error"] == ""
    assert float(scored.loc["score7", "risk_score"]) == pytest.approx(float(scored.loc["gradeB", "risk_score"]))
    assert "afp 'abc' is not a number" in scored.loc["abc", "error"] and "--allow-impute" in scored.loc["abc", "error"]
    assert "afp -5 is not a concentration" in scored.loc["negative", "error"]
    assert "ambiguous" in scored.loc["thousands", "error"]
    assert "bound" in scored.loc["bound", "error"]
    # --allow-impute fills the unreadable AFP with the training median; the negative one stays refused.
    CliRunner().invoke(app, ["predict", "--model", str(model_path), "--patients", str(tmp_path / "new.csv"),
                             "--allow-impute", "--out", str(tmp_path / "pred2.csv")])
    imputed = pd.read_csv(tmp_path / "pred2.csv", index_col="patient_id", keep_default_na=False)
    assert imputed.loc["abc", "error"] == "" and "not a concentration" in imputed.loc["negative", "error"]


def test_batch_prediction_equals_each_patient_scored_alone(fitted_demo):
    """predict_patients scores a table at once; every row, its error included, must be what that patient gets
    scored alone (the old one-by-one path), with bad rows among good ones: a missing AFP, an unreadable AFP, a
    feature far outside the training range, an unseen treatment."""
    from hccrad.survival import predict_patients

    _, table, fitted = fitted_demo
    patients = table.drop(columns=["pfs_months", "pfs_event"]).head(40).copy().astype({"afp": object})
    ids = patients.index
    patients.loc[ids[3], "afp"] = np.nan
    patients.loc[ids[7], "afp"] = "abc"
    for model in fitted.models.values():
        if model.feature_inputs_ or model.base_model is not None:
            inputs = model.feature_inputs_ or model.base_model.feature_inputs_
            feature = next(c for c in (model.covariates_ if model.feature_inputs_ else inputs) if c in inputs)
            patients.loc[ids[11], feature] = 1e6
    patients.loc[ids[19], "treatment"] = "radiotherapy"
    for name, model in fitted.models.items():
        batch = predict_patients(model, patients)
        alone = pd.concat([predict_patients(model, patients.loc[[i]]) for i in ids])
        pd.testing.assert_frame_equal(batch, alone, check_dtype=False)
        assert batch.loc[ids[11], "error"] or model.clinical_coder_ is not None, name
        if model.clinical_coder_ is not None:  # the clinical inputs matter to this model
            assert batch.loc[ids[3], "error"] and batch.loc[ids[7], "error"] and batch.loc[ids[19], "error"], name
        assert (batch["error"] == "").sum() >= 25, name  # most rows scored (a few extrapolate)


def test_model_is_an_estimator_with_fit_and_predict():
    rossi = load_rossi()
    frame = rossi.rename(columns={c: f"Tumor_{c}" for c in rossi.columns if c not in ("week", "arrest")})
    y = make_y(rossi["week"], rossi["arrest"])
    model = CoxRiskModel("T", ModelConfig(univariate_p=0.2, lasso_folds=5)).fit(frame, y)
    assert model.predict(frame).shape == (len(frame),)
    assert "Tumor_prio" in model.covariates_  # the strongest predictor of re-arrest


def test_combat_parameters_reproduce_neurocombat_on_its_training_data():
    from neuroCombat import neuroCombat

    from hccrad.survival.harmonize import HarmonizationError, apply_combat, fit_combat

    rng = np.random.default_rng(3)
    centers = pd.Series(np.repeat(["A", "B", "C"], [30, 20, 25]))
    shift = centers.map({"A": 0.0, "B": 3.0, "C": -2.0}).to_numpy()[:, None]
    scale = centers.map({"A": 1.0, "B": 2.0, "C": 0.5}).to_numpy()[:, None]
    features = pd.DataFrame(rng.normal(size=(75, 6)) * scale + shift + np.arange(6) * 10,
                            columns=[f"Tumor_f{i}" for i in range(6)])
    params = fit_combat(features, centers)
    ours = apply_combat(features, centers, params)
    reference = neuroCombat(dat=features.to_numpy().T, covars=pd.DataFrame({"center": centers}),
                            batch_col="center")["data"].T
    np.testing.assert_allclose(ours.to_numpy(), reference, rtol=1e-9, atol=1e-9)
    # Center means are pulled together: the spread of per-center means shrinks.
    before = features.groupby(centers.to_numpy()).mean().std().mean()
    after = ours.groupby(centers.to_numpy()).mean().std().mean()
    assert after < 0.2 * before
    with pytest.raises(HarmonizationError, match="center"):
        apply_combat(features.head(2), pd.Series(["Z", "A"]), params)


def test_harmonized_model_on_a_random_split(demo_cohort_features):
    _, table = demo_cohort_features
    shuffled = table.copy()
    rng = np.random.default_rng(0)
    shuffled["dataset"] = np.where(rng.random(len(table)) < 0.3, "validation", "training")
    fitted = fit_models(shuffled, ModelConfig(models=["T&L"], harmonize=True))
    model = fitted.models["T&L"]
    assert model.combat_ and len(model.combat_["features"]) > 50
    assert fitted.predictions["risk_T&L"].notna().all()
    reloaded = model_from_dict(json.loads(json.dumps(model_to_dict(model))))
    np.testing.assert_allclose(reloaded.predict(shuffled), model.predict(shuffled))
    with pytest.raises(ValueError, match="harmonize: true needs every center in the training set"):
        fit_models(table, ModelConfig(models=["T&L"], harmonize=True))


def test_the_lasso_cap_never_passes_the_paths_first_crossing():
    from hccrad.survival.selection import capped_path_step

    # counts along the path (largest penalty first) are not monotone: 5 features at step 3, 4 again at step 4
    counts = np.array([0, 1, 3, 5, 4, 6, 4])
    assert capped_path_step(counts, 4) == 2  # the old rule took step 6, past the cap and past the chosen step
    assert capped_path_step(counts, 10) == 6
    assert capped_path_step(np.array([0, 3, 3]), 2) == 0


def test_maxstat_p_value_is_corrected_for_the_search_and_a_fixed_cutoff_can_be_set():
    from hccrad.survival.coxmath import maxstat_p_value

    # a standard value: b = 3 over the 10th-90th percentiles (R maxstat's pLausen92 formula, written out)
    b = 3.0
    phi = stats.norm.pdf(b)
    assert maxstat_p_value(b**2) == pytest.approx(4 * phi / b + phi * (b - 1 / b) * np.log(81), rel=1e-12)
    # under the null the plain p of the chosen cut-off rejects far too often; the corrected one does not
    rng = np.random.default_rng(11)
    model = CoxRiskModel("C", ModelConfig(risk_cutoff="maxstat"))
    plain, corrected = [], []
    for _ in range(150):
        time, event, lp = rng.exponential(10, 120), (rng.random(120) < 0.7).astype(int), rng.normal(size=120)
        cutoff = model._fit_cutoff(lp, time, event)
        plain.append(cutoff["p_plain"] < 0.05)
        corrected.append(cutoff["p_corrected"] < 0.05)
    assert np.mean(corrected) <= 0.08 and np.mean(plain) >= 2 * max(np.mean(corrected), 0.05)
    fixed = CoxRiskModel("C", ModelConfig(risk_cutoff=1.06))
    assert fixed._fit_cutoff(lp, time, event) == {"method": "fixed", "value": 1.06}


def test_near_constant_equals_the_per_column_count():
    from hccrad.survival.selection import near_constant

    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.normal(size=(60, 6)), columns=list("abcdef"))
    frame["b"] = np.where(rng.random(60) < 0.97, 1.0, 2.0)   # mode share about 0.97
    frame["c"] = 5.0                                          # no spread
    frame.loc[:57, "d"] = np.nan                              # mostly missing: NaN counts as a value
    frame["e"] = np.round(frame["e"])                         # a few repeated values, not near-constant
    expected = [c for c in frame.columns
                if frame[c].value_counts(normalize=True, dropna=False).iloc[0] > 0.95
                or not np.isfinite(frame[c].std(ddof=0)) or frame[c].std(ddof=0) == 0]
    assert near_constant(frame, 0.95) == expected and {"b", "c", "d"} <= set(expected)
