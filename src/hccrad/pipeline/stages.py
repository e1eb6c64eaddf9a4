"""The study's stages as functions of a loaded study: what `hccrad fit`, `hccrad evaluate` and `hccrad run` call.

The command line only parses options and prints; `hccrad run` adds reuse and its summary around the same calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hccrad.io.errors import InputError
from hccrad.io.manifest import Study


class MissingStageOutput(InputError, FileNotFoundError):
    """An earlier stage's output that this stage reads is absent."""


def study_table(study: Study, features: Path | None = None) -> pd.DataFrame:
    """The table the models are fitted on: the cohort's feature table (default ``<output_dir>/features``), or
    the clinical table of a clinical-only study.

    Raises
    ------
    MissingStageOutput
        When an image study has no feature table yet.
    """
    from hccrad.features import load_feature_table

    path = Path(features) if features else study.config.layout.feature_table
    if path.is_file():
        return load_feature_table(path)
    if study.config.require_images:
        raise MissingStageOutput(f"no features table at {path}: run `hccrad features` first (or give --features)")
    return study.table()


def refuse_external_fit(study: Study) -> None:
    """An external cohort (``split: {external: true}``) has no training set: fitting on it is refused, naming the
    command that validates saved models on it."""
    if study.config.split.external:
        raise MissingStageOutput("the manifest's split is external: true, so no model is fitted on it; validate "
                                 "saved models with `hccrad external-validate STUDY --models DIR`, or give a split "
                                 "(validation_centers or validation_fraction) to fit")


def fit_study(study: Study, table: pd.DataFrame, out_dir: Path | None = None):
    """Fit the configured models on the training patients of ``table`` with the study's horizons and AFP
    cut-off, score every patient, and write the models folder (default ``<output_dir>/models``).

    With the manifest's robustness filter (``features: {robustness: {min_icc: ...}}``) the image features below
    ``min_icc`` are left out of the selection (:func:`robustness_filter`), and the models are also fitted without
    the filter, in memory, for ``robustness_comparison.csv``: each model's Harrell C and IPCW AUCs, apparent
    (training) and validation, with and without the filter.

    Returns
    -------
    hccrad.survival.study.FittedStudy
    """
    from hccrad.survival import ModelConfig, fit_models

    out_dir = Path(out_dir) if out_dir else study.config.layout.models_dir
    refuse_external_fit(study)
    config = ModelConfig.for_study(study.config)
    horizons = tuple(study.config.horizons_months)
    robustness = robustness_filter(study, table)
    fitted = fit_models(table, config, horizons, None, study_feature_settings(study), robustness)
    lineage = development_lineage(study, table)
    for model in fitted.models.values():
        for member in (model, model.base_model):
            if member is not None:
                member.lineage_ = lineage
    from hccrad.survival.study import write_outputs

    fitted.out_dir = out_dir
    write_outputs(fitted, out_dir)
    if robustness is not None:
        from hccrad.io import layout
        from hccrad.io.files import write_atomic

        unfiltered = fit_models(table, config, horizons, None, study_feature_settings(study), None)
        comparison = robustness_comparison(table, fitted, unfiltered, horizons, study)
        write_atomic(out_dir / layout.ROBUSTNESS_COMPARISON, comparison.to_csv(index=False))
    return fitted


def development_lineage(study: Study, table: pd.DataFrame) -> dict:
    """Where a fitted model comes from, as its artifact records it: the development study's name, the fit's date
    (UTC), the training centers and patients (with events)."""
    import datetime as dt

    training = table[table["dataset"] == "training"]
    return {"kind": "development", "study": study.config.name,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "training_centers": sorted(map(str, training["center"].unique())) if "center" in training else [],
            "training_patients": int(len(training)), "training_events": int(training["pfs_event"].sum())}


def robustness_filter(study: Study, table: pd.DataFrame) -> dict | None:
    """The selection's robustness filter from the study's robustness table, or None when robustness is off or its
    ``min_icc`` is null. ``table`` is the feature table the models are fitted on.

    Raises
    ------
    MissingStageOutput
        When the manifest asks for the filter and the table is missing, or is not the one the manifest and the
        feature table ask for (:func:`hccrad.features.robustness.stale_robustness`): fitting without it, or with
        a stale one, would silently change the selection the manifest asks for.
    """
    import hashlib

    from hccrad.features.config import FeatureConfig
    from hccrad.features.robustness import stale_robustness

    config = FeatureConfig.model_validate(study.config.features)
    if config.robustness is None or config.robustness.min_icc is None:
        return None
    path = study.config.layout.robustness_table
    if not path.is_file():
        raise MissingStageOutput(f"the manifest filters features by robustness (min_icc "
                                 f"{config.robustness.min_icc:g}), but {path} does not exist: run "
                                 "`hccrad robustness` (or `hccrad run`) first")
    why = stale_robustness(study, table)
    if why is not None:
        raise MissingStageOutput(f"the manifest filters features by robustness, but {path} is out of date: {why}; "
                                 "run `hccrad robustness` (or `hccrad run`) again")
    robust = pd.read_csv(path)
    form = config.robustness.icc
    return {"icc_form": form, "min_icc": config.robustness.min_icc,
            "table_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "n_patients": int(robust["n_patients"].iloc[0]) if len(robust) else 0,
            "n_perturbations": int(robust["n_perturbations"].iloc[0]) if len(robust) else 0,
            "icc": dict(zip(robust["feature"], robust[form].astype(float), strict=True))}


def robustness_comparison(table: pd.DataFrame, filtered, unfiltered, horizons: tuple[float, ...],
                          study: Study) -> pd.DataFrame:
    """Each model with and without the robustness filter: factors, Harrell C and IPCW AUC per horizon, on the
    training (apparent) and validation patients."""
    import numpy as np

    from hccrad.evaluate.config import EvaluationConfig
    from hccrad.evaluate.discrimination import harrell_c, ipcw_auc
    from hccrad.io.layout import risk_column

    rule = EvaluationConfig.model_validate(study.config.evaluation).event_at_horizon
    rows = []
    for label, fitted in (("with the filter", filtered), ("without the filter", unfiltered)):
        for name, model in fitted.models.items():
            for dataset in ("training", "validation"):
                subset = fitted.predictions[(fitted.predictions["dataset"] == dataset)
                                            & fitted.predictions[risk_column(name)].notna()]
                time = subset["pfs_months"].to_numpy(float)
                event = subset["pfs_event"].to_numpy(int)
                scores = subset[risk_column(name)].to_numpy(float)
                row = {"model": name, "variant": label, "dataset": dataset,
                       "estimate": "apparent" if dataset == "training" else "validation",
                       "n_factors": len(model.covariates_), "n": len(subset),
                       "harrell_c": harrell_c(time, event, scores) if len(subset) > 1 else np.nan}
                for horizon in horizons:
                    try:
                        row[f"auc_{horizon:g}m"] = ipcw_auc(time, event, scores, horizon, rule)
                    except ValueError:  # no case or no control at this horizon
                        row[f"auc_{horizon:g}m"] = np.nan
                rows.append(row)
    return pd.DataFrame(rows)


def study_feature_settings(study: Study) -> dict:
    """How the study computes image features, as recorded in its models' artifacts
    (:func:`hccrad.features.config.feature_settings_record`)."""
    from hccrad.features.config import FeatureConfig, feature_settings_record
    from hccrad.features.extract import engine_version

    config = FeatureConfig.model_validate(study.config.features)
    return feature_settings_record(config, config.radiomics_params(study.config.base_dir),
                                   study.config.dicom_series.model_dump(), engine_version(config.engine))


def load_predictions(path: Path) -> pd.DataFrame:
    """``predictions.csv`` indexed by patient id (as text)."""
    predictions = pd.read_csv(path, index_col="patient_id")
    predictions.index = predictions.index.astype(str)
    return predictions


def evaluate_fitted(study: Study, models_dir: Path | None = None, out_dir: Path | None = None,
                    n_bootstrap: int | None = None, fitted: dict | None = None):
    """Evaluate the models of ``models_dir`` (default ``<output_dir>/models``) on their predictions, with the
    study's horizons, AFP cut-off and ``evaluation:`` section (``n_bootstrap`` overrides its resamples); writes
    ``out_dir`` (default ``<output_dir>/evaluation``).

    Returns
    -------
    hccrad.evaluate.Evaluation
    """
    from hccrad.evaluate import EvaluationSettings, evaluate_study
    from hccrad.io import layout
    from hccrad.survival import load_models

    models_dir = Path(models_dir) if models_dir else study.config.layout.models_dir
    predictions_path = models_dir / layout.PREDICTIONS
    if not predictions_path.is_file():
        raise MissingStageOutput(f"no predictions at {predictions_path}: run `hccrad fit` first")
    fitted = fitted if fitted is not None else load_models(models_dir)
    settings = EvaluationSettings.from_study(study.config, n_bootstrap)
    out_dir = Path(out_dir) if out_dir else study.config.layout.evaluation_dir
    training = None
    if settings.internal_validation_resamples:
        table = study_table(study)
        training = table[table["dataset"] == "training"]
    evaluation = evaluate_study(load_predictions(predictions_path), fitted, study.table(), settings, out_dir,
                                training)
    write_center_shift(study, fitted, out_dir)
    return evaluation


def write_center_shift(study: Study, fitted: dict, out_dir: Path) -> None:
    """``center_shift.csv`` and ``center_shift_inputs.csv`` in the evaluation's tables
    (:func:`hccrad.evaluate.shift.center_shift`); nothing when the feature table is not there."""
    from hccrad.evaluate.shift import center_shift
    from hccrad.io import layout
    from hccrad.io.files import write_atomic

    try:
        table = study_table(study)
    except MissingStageOutput:
        return
    summary, inputs = center_shift(fitted, table)
    tables = Path(out_dir) / layout.TABLES
    write_atomic(tables / "center_shift.csv", summary.to_csv(index=False))
    write_atomic(tables / "center_shift_inputs.csv", inputs.to_csv(index=False))


def write_acquisition(study: Study) -> pd.DataFrame:
    """Read every CT's acquisition parameters (DICOM or image headers) and write ``acquisition.csv`` (per case)
    and ``acquisition_summary.csv`` (Supplementary Table 1, per center) to the output folder.

    Returns
    -------
    The per-center summary.
    """
    from hccrad.io.acquisition import acquisition_table, center_acquisition_summary
    from hccrad.io.files import ensure_writable_dir, write_atomic

    paths = study.config.layout
    cases = acquisition_table(study.patients, study.config.dicom_series)
    summary = center_acquisition_summary(cases)
    ensure_writable_dir(paths.root)
    write_atomic(paths.acquisition, cases.to_csv(index=False))
    write_atomic(paths.acquisition_summary, summary.to_csv(index=False))
    return summary


@dataclass
class StudySummary:
    """What ``hccrad validate`` understood of a study: the Markdown summary and the plausibility warnings."""
    markdown: str
    warnings: list[str]


def summarize_study(study: Study) -> StudySummary:
    """The study summary (:func:`hccrad.evaluate.cohort.study_summary`) of the valid patients, with the
    plausibility and rare-category warnings (:func:`~hccrad.evaluate.cohort.plausibility_warnings`,
    :func:`~hccrad.evaluate.cohort.rare_category_warnings`)."""
    from hccrad.evaluate.cohort import plausibility_warnings, rare_category_warnings, study_summary

    config = study.config
    table = study.table()
    if table.empty:
        return StudySummary("# What hccrad understood of the study\n\nNo valid patient.\n", [])
    mapping = {field_name: column for field_name, column in config.columns.model_dump().items()
               if column is not None and field_name in config.columns.model_fields_set | {
                   "patient_id", "center", "afp", "child_pugh", "bclc", "treatment", "pfs_months", "pfs_event"}}
    optional = [f for f in ("afp", "child_pugh", "bclc", "treatment", "portal_vein_diameter_mm")
                if getattr(config.columns, f) is not None and f in table]
    missing = {f: int(table[f].isna().sum()) for f in optional}
    markdown = study_summary(table, mapping, config.time_unit, config.event_coding, config.value_maps,
                             tuple(config.horizons_months), config.afp_cutoff_ng_ml, missing)
    warnings = plausibility_warnings(table, config.time_unit, config.event_coding) + rare_category_warnings(table)
    if warnings:
        markdown += "\n## Warnings\n\n" + "".join(f"- {warning}\n" for warning in warnings)
    return StudySummary(markdown, warnings)


def write_study_summary(study: Study, summary: StudySummary) -> Path:
    """Write ``validation/summary.md`` into the output folder (atomically); returns its path."""
    from hccrad.io.files import ensure_writable_dir, write_atomic

    path = study.config.layout.validation_summary
    ensure_writable_dir(path.parent)
    write_atomic(path, summary.markdown)
    return path
