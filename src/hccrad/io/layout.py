"""The study's output folder: the one module that names every file a stage writes or reads.

Stages hand their results to each other as files (masks, feature cases, the feature table, model artifacts,
predictions, evaluation tables, figures, the report). Their names are defined here only, so a stage never
rebuilds another stage's path by hand. Paths built from a patient id go through :func:`hccrad.io.ids.case_path`
and never leave their folder.

Layout of ``<output_dir>``::

    manifest_issues.csv  acquisition.csv  acquisition_summary.csv  run_summary.json  run_state.json  hccrad-run.log
    segmentation/masks/<id>.nii.gz          predicted masks (nnU-Net, TotalSegmentator)
    segmentation/evaluation.csv, evaluation_summary.csv, nnunet/
    features/cases/<id>.json  features.parquet  features.csv  failures.csv  run.json
    models/<model>.json  <model>_hazard_ratios.csv  <model>_selection_log.csv  predictions.csv  imputation.csv
           scoring_errors.csv  selected_factors.csv  summary.json
    evaluation/evaluation.json  tables/<name>.csv  figures/<name>.png|svg
    report/report.html  tables/  figures/  qc/<id>-<view>.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hccrad.io.ids import case_path

# File and folder names inside a stage's folder (a stage may be pointed at another folder; the names stay these).
FEATURE_CASES = "cases"
TABLES = "tables"
FIGURES = "figures"
FEATURE_TABLE = "features.parquet"
FEATURE_TABLE_CSV = "features.csv"
FEATURE_FAILURES = "failures.csv"
FEATURE_RUN = "run.json"
ROBUSTNESS_DIR = "robustness"
ROBUSTNESS_TABLE = "robustness.csv"
ROBUSTNESS_VALUES = "robustness_values.parquet"
ROBUSTNESS_COMPARISON = "robustness_comparison.csv"
PREDICTIONS = "predictions.csv"
IMPUTATION = "imputation.csv"
SCORING_ERRORS = "scoring_errors.csv"
SELECTED_FACTORS = "selected_factors.csv"
MODELS_SUMMARY = "summary.json"
EVALUATION_SUMMARY = "evaluation.json"
SEGMENTATION_EVALUATION = "evaluation.csv"
SEGMENTATION_EVALUATION_SUMMARY = "evaluation_summary.csv"


# Columns of predictions.csv, written by the models stage and read by the evaluation: one per model and horizon.
def risk_column(model: str) -> str:
    """``risk_<model>``: the model's risk score (linear predictor)."""
    return f"risk_{model}"


def group_column(model: str) -> str:
    """``group_<model>``: ``high`` or ``low`` against the model's training cut-off."""
    return f"group_{model}"


def pfs_column(model: str, horizon_months: float) -> str:
    """``pfs_<h>m_<model>``: the predicted PFS probability at the horizon."""
    return f"pfs_{horizon_months:g}m_{model}"


def model_slug(name: str) -> str:
    """File-name form of a model name: ``T&L`` -> ``T_L``."""
    return name.replace("&", "_")


def model_artifact_name(name: str) -> str:
    """``C-T_L.json``: the artifact of model ``name`` in a models folder."""
    return f"{model_slug(name)}.json"


def hazard_ratios_name(name: str) -> str:
    """``<model>_hazard_ratios.csv`` in a models folder."""
    return f"{model_slug(name)}_hazard_ratios.csv"


def selection_log_name(name: str) -> str:
    """``<model>_selection_log.csv`` in a models folder."""
    return f"{model_slug(name)}_selection_log.csv"


@dataclass(frozen=True)
class StudyLayout:
    """Every path of a study's output folder ``root``.

    Parameters
    ----------
    root
        The study's ``output_dir`` (absolute).
    """

    root: Path

    # --- run ---------------------------------------------------------------------------------------------
    @property
    def manifest_issues(self) -> Path:
        """``manifest_issues.csv``: every manifest issue of the last run."""
        return self.root / "manifest_issues.csv"

    @property
    def run_summary(self) -> Path:
        """``run_summary.json``: stages, failed cases, the report and why a run stopped."""
        return self.root / "run_summary.json"

    @property
    def run_state(self) -> Path:
        """``run_state.json``: each finished stage's input fingerprint and its outputs' SHA-256 (reuse)."""
        return self.root / "run_state.json"

    @property
    def run_lock(self) -> Path:
        """``hccrad.lock``: held by the run that is writing this folder (process id, host, start time)."""
        return self.root / "hccrad.lock"

    @property
    def acquisition(self) -> Path:
        """``acquisition.csv``: each case's CT acquisition parameters (written by ``validate``)."""
        return self.root / "acquisition.csv"

    @property
    def acquisition_summary(self) -> Path:
        """``acquisition_summary.csv``: Supplementary Table 1, per center (written by ``validate``)."""
        return self.root / "acquisition_summary.csv"

    @property
    def validation_summary(self) -> Path:
        """``validation/summary.md``: what ``validate`` understood of the study (mapping, units, events, categories)."""
        return self.root / "validation" / "summary.md"

    @property
    def run_log(self) -> Path:
        """``hccrad-run.log``: appended by every run."""
        return self.root / "hccrad-run.log"

    # --- segmentation ------------------------------------------------------------------------------------
    @property
    def segmentation_dir(self) -> Path:
        """``segmentation/``."""
        return self.root / "segmentation"

    @property
    def predicted_masks_dir(self) -> Path:
        """``segmentation/masks/``: one predicted mask per patient."""
        return self.segmentation_dir / "masks"

    @property
    def exported_masks_dir(self) -> Path:
        """``segmentation/export/``: masks written by ``hccrad segment export`` (DICOM SEG, or NIfTI)."""
        return self.segmentation_dir / "export"

    def exported_mask(self, patient_id: str) -> Path:
        """``segmentation/export/<id>.dcm`` (``.nii.gz`` for a NIfTI CT)."""
        return case_path(self.exported_masks_dir, patient_id, ".dcm")

    def predicted_mask(self, patient_id: str) -> Path:
        """The mask predicted for a patient (nnU-Net or TotalSegmentator), used when the manifest gives none."""
        return case_path(self.predicted_masks_dir, patient_id, ".nii.gz")

    @property
    def nnunet_dir(self) -> Path:
        """``segmentation/nnunet/``: nnU-Net's raw, preprocessed and results folders (default)."""
        return self.segmentation_dir / "nnunet"

    @property
    def segmentation_evaluation(self) -> Path:
        """``segmentation/evaluation.csv``: DSC and HD95 per case and region."""
        return self.segmentation_dir / SEGMENTATION_EVALUATION

    @property
    def segmentation_evaluation_summary(self) -> Path:
        """``segmentation/evaluation_summary.csv``: per region and center."""
        return self.segmentation_dir / SEGMENTATION_EVALUATION_SUMMARY

    # --- features ----------------------------------------------------------------------------------------
    @property
    def features_dir(self) -> Path:
        """``features/``."""
        return self.root / "features"

    @property
    def feature_cases_dir(self) -> Path:
        """``features/cases/``: one result file per case."""
        return self.features_dir / FEATURE_CASES

    def feature_case(self, patient_id: str) -> Path:
        """``features/cases/<id>.json``: one case's result (features, or its error)."""
        return case_path(self.feature_cases_dir, patient_id, ".json")

    @property
    def report_tables_dir(self) -> Path:
        """``report/tables/``: the tables beside the report."""
        return self.report_dir / TABLES

    @property
    def report_figures_dir(self) -> Path:
        """``report/figures/``: the figures beside the report."""
        return self.report_dir / FIGURES

    @property
    def feature_table(self) -> Path:
        """``features/features.parquet``: the cohort's feature table."""
        return self.features_dir / FEATURE_TABLE

    @property
    def feature_failures(self) -> Path:
        """``features/failures.csv``: failed cases (severity error) and QC warnings."""
        return self.features_dir / FEATURE_FAILURES

    @property
    def robustness_dir(self) -> Path:
        """``features/robustness/``: one result file per perturbed case (``<id>.p<k>.json``) and its run record."""
        return self.features_dir / ROBUSTNESS_DIR

    @property
    def robustness_table(self) -> Path:
        """``features/robustness.csv``: per feature the six ICCs with their 95% intervals."""
        return self.features_dir / ROBUSTNESS_TABLE

    @property
    def robustness_values(self) -> Path:
        """``features/robustness_values.parquet``: every perturbed case's features (patient, perturbation)."""
        return self.features_dir / ROBUSTNESS_VALUES

    @property
    def robustness_comparison(self) -> Path:
        """``models/robustness_comparison.csv``: the models with and without the ICC filter side by side."""
        return self.models_dir / ROBUSTNESS_COMPARISON

    # --- models ------------------------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        """``models/``."""
        return self.root / "models"

    def model_artifact(self, name: str) -> Path:
        """``models/<model>.json``: the model's artifact (``T&L`` -> ``T_L.json``)."""
        return self.models_dir / model_artifact_name(name)

    @property
    def predictions(self) -> Path:
        """``models/predictions.csv``: every patient's risk, group and PFS per model."""
        return self.models_dir / PREDICTIONS

    @property
    def selected_factors(self) -> Path:
        """``models/selected_factors.csv``."""
        return self.models_dir / SELECTED_FACTORS

    # --- evaluation --------------------------------------------------------------------------------------
    @property
    def evaluation_dir(self) -> Path:
        """``evaluation/``."""
        return self.root / "evaluation"

    @property
    def evaluation_summary(self) -> Path:
        """``evaluation/evaluation.json``."""
        return self.evaluation_dir / EVALUATION_SUMMARY

    @property
    def evaluation_tables_dir(self) -> Path:
        """``evaluation/tables/``."""
        return self.evaluation_dir / TABLES

    @property
    def evaluation_figures_dir(self) -> Path:
        """``evaluation/figures/``."""
        return self.evaluation_dir / FIGURES

    def evaluation_table(self, name: str) -> Path:
        """``evaluation/tables/<name>.csv`` (``discrimination``, ``delong``, ...)."""
        return self.evaluation_tables_dir / f"{name}.csv"

    # --- report ------------------------------------------------------------------------------------------
    @property
    def report_dir(self) -> Path:
        """``report/``."""
        return self.root / "report"

    @property
    def report_html(self) -> Path:
        """``report/report.html``: the self-contained report."""
        return self.report_dir / "report.html"

    @property
    def qc_dir(self) -> Path:
        """``report/qc/``."""
        return self.report_dir / "qc"

    def qc_image(self, patient_id: str, view: str) -> Path:
        """``report/qc/<id>-<view>.png``: a QC image of a patient."""
        return case_path(self.qc_dir, f"{patient_id}-{view}", ".png")
