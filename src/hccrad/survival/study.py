"""`hccrad fit`: the four models on the training set, applied unchanged to every patient.

Output folder (``<output_dir>/models``)::

    C.json, T.json, T_L.json, C-T_L.json       model artifacts (versioned JSON)
    <model>_hazard_ratios.csv                 HR with 95% CI and p per factor (Supplementary Figure 1)
    <model>_selection_log.csv                 features entering and leaving each step
    predictions.csv                           per patient and model: risk score, risk group, PFS probabilities
    imputation.csv                            per patient and model: which inputs were imputed
    selected_factors.csv                      the factors of every model (Supplementary Table 3)
    summary.json                              training summary of each model
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.io import layout
from hccrad.io.errors import InputError
from hccrad.io.files import write_atomic
from hccrad.io.manifest import parse_clinical_inputs
from hccrad.survival.artifact import load_model, save_model
from hccrad.survival.clinical import CLINICAL_INPUTS
from hccrad.survival.config import ModelConfig
from hccrad.survival.coxmath import survival_probability
from hccrad.survival.model import CoxRiskModel, PredictionInputError, make_y


@dataclass
class FittedStudy:
    """The fitted models, every patient's predictions, imputations and scoring errors, and skipped models."""
    models: dict[str, CoxRiskModel]
    predictions: pd.DataFrame
    imputation: pd.DataFrame
    out_dir: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    scoring_errors: pd.DataFrame = field(default_factory=pd.DataFrame)


def score_table(model: CoxRiskModel, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]], dict[str, str]]:
    """Risk score, group and PFS probabilities of every patient (training imputation values allowed).

    A patient whose inputs the model cannot code (a category unseen in training) gets empty predictions
    and an error message; the other patients are scored.
    """
    errors: dict[str, str] = {}
    try:
        design, imputed = model.design(table)
    except ValueError:
        rows, imputed = [], {}
        for patient in table.index:
            try:
                one, one_imputed = model.design(table.loc[[patient]])
                rows.append(one)
                imputed.update(one_imputed)
            except ValueError as exc:
                errors[str(patient)] = str(exc)
                rows.append(pd.DataFrame(np.nan, index=[patient], columns=model.covariates_))
        design = pd.concat(rows)
    scores = design.to_numpy(float) @ model.coef_
    out = pd.DataFrame({"risk": scores}, index=table.index)
    out["group"] = np.where(np.isnan(scores), "", model.risk_group(scores))
    probabilities = survival_probability(model.baseline_times_, model.baseline_cumhaz_, scores,
                                         list(model.horizons_months))
    for k, horizon in enumerate(model.horizons_months):
        out[horizon] = probabilities[:, k]
    return out, imputed, errors


def available_models(table: pd.DataFrame, config: ModelConfig) -> tuple[list[str], dict[str, str]]:
    """The configured models that this table can support, and why the others are skipped."""
    from hccrad.survival.families import feature_family

    families = {feature_family(c) for c in table.columns}
    skipped = {}
    models = []
    for name in config.models:
        needs = {"C": set(), "T": {"T"}, "T&L": {"T", "L"}, "C-T&L": {"T", "L"}}[name]
        if not needs <= families:
            skipped[name] = f"the table has no {' / '.join(sorted(needs - families))} features"
        else:
            models.append(name)
    return models, skipped


class FitError(InputError, ValueError):
    """The study's data cannot support the requested fit (too few training patients or events, a center unseen
    in training)."""


def fit_models(table: pd.DataFrame, config: ModelConfig, horizons: tuple[float, ...] = (6.0, 12.0),
               out_dir: Path | None = None, feature_settings: dict | None = None,
               robustness: dict | None = None) -> FittedStudy:
    """Fit the configured models on ``table[dataset == training]`` and score every patient.

    Parameters
    ----------
    table
        One row per patient, indexed by patient id: ``dataset``, ``pfs_months``, ``pfs_event``, the clinical
        columns and (for the image models) the feature columns.
    config
        Model settings.
    horizons
        Horizons (months) of the predicted PFS probabilities.
    out_dir
        When given, every output listed in this module's docstring is written there.
    feature_settings
        How the table's image features were computed (:func:`hccrad.features.config.feature_settings_record`),
        recorded in every image model's artifact so that ``hccrad predict`` can compute a new patient's features
        the same way.
    robustness
        The robustness filter (``icc_form``, ``min_icc``, ``icc``: feature -> ICC, and what the artifact should
        record of where it came from): image features below ``min_icc`` are removed before the univariate screen;
        the selection log and each image model's artifact record it. None: no filter.
    """
    horizons = tuple(horizons)
    training = table[table["dataset"] == "training"]
    if len(training) < 10 or training["pfs_event"].sum() < 5:
        raise FitError(f"too few training patients to fit a model: {len(training)} patients with "
                       f"{int(training['pfs_event'].sum())} events; at least 10 patients and 5 events are needed")
    if config.harmonize:
        unseen = sorted(set(table["center"].astype(str)) - set(training["center"].astype(str)))
        if unseen:
            raise FitError(f"harmonize: true needs every center in the training set, but {unseen} are only in "
                             "validation (ComBat cannot harmonize a center it has not seen without learning from "
                             "its patients); use a random split or harmonize: false")
    y = make_y(training["pfs_months"], training["pfs_event"])
    names, skipped = available_models(table, config)
    models: dict[str, CoxRiskModel] = {}
    for name in names:
        base = models.get("T&L") if name == "C-T&L" and config.c_tl_mode == "score" else None
        if name == "C-T&L" and config.c_tl_mode == "score" and base is None:
            base = CoxRiskModel("T&L", config, horizons_months=horizons, robustness=robustness).fit(training, y)
        models[name] = CoxRiskModel(name, config, base, horizons, robustness).fit(training, y)
    for model in models.values():
        for member in (model, model.base_model):
            if member is not None and member.feature_inputs_:
                member.feature_settings_ = feature_settings

    predictions, imputation, errors = score_models(models, table)
    fitted = FittedStudy(models, predictions, imputation, out_dir, skipped, errors)
    if out_dir is not None:
        write_outputs(fitted, Path(out_dir))
    return fitted


def score_models(models: dict[str, CoxRiskModel], table: pd.DataFrame
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every patient of ``table`` scored by every model (``predictions.csv``'s layout: center, dataset, PFS, then
    per model its risk score, group and PFS at each horizon), with the imputations and scoring errors."""
    prediction_columns = {column: table[column] for column in ("center", "dataset", "pfs_months", "pfs_event")
                          if column in table}
    predictions = pd.DataFrame(prediction_columns, index=table.index)
    imputation_rows, error_rows = [], []
    for name, model in models.items():
        scored, imputed, errors = score_table(model, table)
        predictions[layout.risk_column(name)] = scored["risk"]
        predictions[layout.group_column(name)] = scored["group"]
        for horizon in model.horizons_months:
            predictions[layout.pfs_column(name, horizon)] = scored[horizon]
        for patient, columns in imputed.items():
            imputation_rows.append({"patient_id": patient, "model": name, "imputed": ";".join(columns)})
        for patient, message in errors.items():
            error_rows.append({"patient_id": patient, "model": name, "error": message})
    imputation = pd.DataFrame(imputation_rows, columns=["patient_id", "model", "imputed"])
    errors = pd.DataFrame(error_rows, columns=["patient_id", "model", "error"])
    return predictions, imputation, errors


def selected_factors(models: dict[str, CoxRiskModel]) -> pd.DataFrame:
    """Supplementary Table 3: every model's factors with their HR."""
    frames = []
    for name, model in models.items():
        frame = model.hazard_ratios_.copy()
        frame.insert(0, "model", name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_outputs(fitted: FittedStudy, out_dir: Path) -> None:
    """Write the artifacts, HR tables, selection logs, predictions and summaries to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, model in fitted.models.items():
        save_model(model, out_dir / layout.model_artifact_name(name))
        write_atomic(out_dir / layout.hazard_ratios_name(name), model.hazard_ratios_.to_csv(index=False))
        write_atomic(out_dir / layout.selection_log_name(name), model.selection_log_.to_csv(index=False))
        summary[name] = {"covariates": model.covariates_, "training": model.training_,
                         "risk_cutoff": model.cutoff_}
    write_atomic(out_dir / layout.PREDICTIONS, fitted.predictions.to_csv())
    write_atomic(out_dir / layout.IMPUTATION, fitted.imputation.to_csv(index=False))
    write_atomic(out_dir / layout.SCORING_ERRORS, fitted.scoring_errors.to_csv(index=False))
    write_atomic(out_dir / layout.SELECTED_FACTORS, selected_factors(fitted.models).to_csv(index=False))
    write_atomic(out_dir / layout.MODELS_SUMMARY, json.dumps({"models": summary, "skipped": fitted.skipped}, indent=2))


def load_models(out_dir: Path, names: list[str] | None = None) -> dict[str, CoxRiskModel]:
    """The model artifacts in ``out_dir`` (all four names by default; missing ones are left out)."""
    models = {}
    for name in names or ["C", "T", "T&L", "C-T&L"]:
        path = Path(out_dir) / layout.model_artifact_name(name)
        if path.is_file():
            models[name] = load_model(path)
    return models


def read_clinical_table(patients: pd.DataFrame, allow_impute: bool) -> tuple[pd.DataFrame, dict[Any, str]]:
    """Every patient's clinical factors read by the manifest's rules (see
    :func:`hccrad.io.manifest.parse_clinical_inputs`): the table with canonical values, and for each patient whose
    inputs are refused, why (those patients' rows are left as given)."""
    present = [name for name in CLINICAL_INPUTS if name in patients.columns]
    if not present:
        return patients, {}
    errors: dict[Any, str] = {}
    columns: dict[str, list[Any]] = {name: [] for name in present}
    for patient_id, raw in zip(patients.index, patients[present].itertuples(index=False, name=None), strict=True):
        clean, problems, unreadable = parse_clinical_inputs(dict(zip(present, raw, strict=True)))
        if unreadable and not allow_impute:
            problems += [f"{problem}; fix it, or use --allow-impute to treat it as missing" for problem in unreadable]
        if problems:
            errors[patient_id] = "; ".join(problems)
        for name, value in zip(present, raw, strict=True):
            columns[name].append(value if problems else clean[name])
    table = patients.copy()
    for name in present:
        table[name] = pd.Series(columns[name], index=patients.index, dtype=object)
    return table, errors


def read_clinical_inputs(one: pd.DataFrame, allow_impute: bool) -> pd.DataFrame:
    """One patient's row with its clinical factors read by the manifest's rules (see
    :func:`hccrad.io.manifest.parse_clinical_inputs`); raises ``PredictionInputError`` for what is refused."""
    table, errors = read_clinical_table(one, allow_impute)
    if errors:
        raise PredictionInputError(next(iter(errors.values())))
    return table


def _scored(model: CoxRiskModel, patients: pd.DataFrame, allow_impute: bool, allow_extrapolation: bool
            ) -> tuple[list[dict[str, Any]], dict[Any, str]]:
    """Records of ``patients`` scored together, and the errors of those who cannot be: a batch that fails is
    halved until each failing patient is alone, so each error is the one that patient gets alone."""
    try:
        scores = model.predict(patients, allow_impute, allow_extrapolation)
        survival = model.predict_survival(patients, allow_impute=allow_impute, allow_extrapolation=allow_extrapolation)
    except ValueError as exc:
        if len(patients) == 1:
            return [], {patients.index[0]: str(exc)}
        middle = len(patients) // 2
        first, first_errors = _scored(model, patients.iloc[:middle], allow_impute, allow_extrapolation)
        second, second_errors = _scored(model, patients.iloc[middle:], allow_impute, allow_extrapolation)
        return first + second, first_errors | second_errors
    groups = model.risk_group(scores)
    flagged = model.extrapolation(patients).groupby("patient_id")["message"].agg("; ".join)
    domain = model.applicability(patients)
    records = [{"patient_id": patient_id, "model": model.name, "risk_score": float(score), "risk_group": str(group),
                **values, "domain_distance": float(place["distance"]), "domain_percentile": float(place["percentile"]),
                "outside_domain": None if pd.isna(place["outside"]) else bool(place["outside"]),
                "extrapolation": flagged.get(patient_id, ""), "error": ""}
               for patient_id, score, group, values, (_, place) in zip(
                   patients.index, scores, groups, survival.to_dict("records"), domain.iterrows(), strict=True)]
    return records, {}


def predict_patients(model: CoxRiskModel, patients: pd.DataFrame, allow_impute: bool = False,
                     allow_extrapolation: bool = False, out_of_domain: str = "warn") -> pd.DataFrame:
    """Risk score, risk group and PFS probabilities for new patients, from the artifact alone.

    A patient outside the model's applicability domain has ``outside_domain`` True; with
    ``out_of_domain="withhold"`` its numbers are left empty (``withheld`` True). The patients are scored together
    (one design matrix, one product), and one patient's bad input is still reported without stopping the others:
    the ``error`` column holds the reason, the same as when that patient is scored alone, and the other columns
    are empty for that patient. Rows keep the table's order.
    """
    if patients.index.has_duplicates:
        raise PredictionInputError(f"patient ids occur more than once: "
                                   f"{sorted(map(str, patients.index[patients.index.duplicated()].unique()))[:5]}")
    table, errors = read_clinical_table(patients, allow_impute)
    table = table.loc[[patient_id not in errors for patient_id in table.index]]
    alone = model.may_refuse(table, allow_impute, allow_extrapolation)
    records = []
    for part in [table.loc[~alone]] + [table.iloc[[k]] for k in np.flatnonzero(alone)]:
        if len(part):
            scored, scoring_errors = _scored(model, part, allow_impute, allow_extrapolation)
            records += scored
            errors |= scoring_errors
    if out_of_domain not in ("warn", "withhold"):
        raise ValueError(f"out_of_domain {out_of_domain!r}: expected warn or withhold")
    for record in records:  # ``withhold``: a prediction outside the domain gives only the reason, no number
        record["withheld"] = bool(record.get("outside_domain")) and out_of_domain == "withhold"
        if record["withheld"]:
            for key in [k for k in record if k in ("risk_score", "risk_group") or k.startswith("pfs_")]:
                record[key] = None
    by_patient = {record["patient_id"]: record for record in records}
    rows = [by_patient.get(patient_id) or {"patient_id": patient_id, "model": model.name, "error": errors[patient_id]}
            for patient_id in patients.index]
    return pd.DataFrame(rows).set_index("patient_id")
