"""The study's stages as functions of a loaded study: what `hccrad fit`, `hccrad evaluate` and `hccrad run` call.

The command line only parses options and prints; `hccrad run` adds reuse and its summary around the same calls.
"""

from __future__ import annotations

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


def fit_study(study: Study, table: pd.DataFrame, out_dir: Path | None = None):
    """Fit the configured models on the training patients of ``table`` with the study's horizons and AFP
    cut-off, score every patient, and write the models folder (default ``<output_dir>/models``).

    Returns
    -------
    hccrad.survival.study.FittedStudy
    """
    from hccrad.survival import ModelConfig, fit_models

    return fit_models(table, ModelConfig.for_study(study.config), tuple(study.config.horizons_months),
                      Path(out_dir) if out_dir else study.config.layout.models_dir, study_feature_settings(study))


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
    return evaluate_study(load_predictions(predictions_path), fitted, study.table(), settings, out_dir, training)


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
