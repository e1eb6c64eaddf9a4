"""A new patient's risk in one step: from a CT, a mask (or a segmentation model) and four clinical factors.

:func:`predict_new_patient` computes the patient's image features exactly as the models' study did (the
artifact records the engine and its version, the PyRadiomics parameters and the value-changing settings; a
mismatch is refused), then scores every given model: risk score, risk group, where the score sits among the
training patients, PFS probabilities with delta-method confidence intervals and each covariate's contribution.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.io.errors import InputError
from hccrad.survival.coxmath import survival_probability
from hccrad.survival.model import CoxRiskModel


class FeatureSettingsError(InputError, ValueError):
    """The models cannot compute a new patient's features as they were fitted (no record, a mismatch between
    models, or another engine version installed)."""


class MissingMaskError(InputError, ValueError):
    """A patient without a mask and no segmentation model to draw one."""


#: A PFS interval wider than this (of the whole 0-1 scale) says little, and is flagged as uninformative.
UNINFORMATIVE_WIDTH = 0.75


@dataclass
class ModelPrediction:
    """One model's prediction for one patient (see docs/new-patient.md for each number's meaning)."""
    model: str
    risk_score: float
    risk_group: str
    cutoff: float
    training_percentile: float
    survival: pd.DataFrame  # columns time_months, pfs, ci_low, ci_high
    contributions: pd.DataFrame  # columns covariate, value, training_mean, coef, contribution
    #: The inputs outside the training distribution (:meth:`CoxRiskModel.extrapolation`), one sentence each.
    extrapolation: list[str] = field(default_factory=list)
    #: Predicted PFS at the cut-off score per horizon (months -> probability): "high" means a lower prediction.
    cutoff_pfs: dict[float, float] = field(default_factory=dict)
    #: The applicability domain (:mod:`hccrad.survival.domain`): distance from the training patients, its
    #: percentile among their leave-one-out distances, and whether it lies beyond the threshold (None: the
    #: artifact records no domain).
    domain_distance: float = float("nan")
    domain_percentile: float = float("nan")
    outside_domain: bool | None = None
    domain_threshold_percentile: float = float("nan")
    #: ``withhold`` (a setting) hides the numbers of a prediction outside the domain; ``warn`` shows them flagged.
    withheld: bool = False

    @property
    def uninformative_horizons(self) -> list[float]:
        """Horizons (months) whose 95% interval spans more than :data:`UNINFORMATIVE_WIDTH` of [0, 1]."""
        return [float(row.time_months) for row in self.survival.itertuples()
                if row.ci_high - row.ci_low > UNINFORMATIVE_WIDTH]

    def domain_note(self) -> str | None:
        """The sentence that says a prediction lies outside the model's applicability domain, or None."""
        if not self.outside_domain:
            return None
        return (f"outside the model's applicability domain: this patient's model inputs are farther from the "
                f"training patients (distance {self.domain_distance:.1f}) than {self.domain_threshold_percentile:g}% "
                f"of the training patients are from the others (percentile {self.domain_percentile:.0f}); the "
                "model has not seen patients like this one, and its 95% interval does not cover this uncertainty")

    def warnings(self) -> list[str]:
        """What the numbers cannot carry alone: the applicability domain, extrapolation and uninformative
        intervals, one sentence each."""
        notes = [note for note in [self.domain_note()] if note]
        if self.withheld:
            notes.append("the prediction is withheld (setting out_of_domain: withhold)")
        notes += [f"outside the training data: {message}" for message in self.extrapolation]
        if self.extrapolation:
            notes.append("the prediction extrapolates beyond the patients the model was fitted on; treat it as "
                         "unreliable")
        wide = self.uninformative_horizons
        if wide:
            notes.append("the 95% interval of the PFS at " + ", ".join(f"{t:g}" for t in wide) + " months spans "
                         f"more than {UNINFORMATIVE_WIDTH:.0%} of the 0-100% scale: uninformative")
        return notes

    def to_record(self) -> dict[str, Any]:
        """A flat JSON-ready record: scores, then ``pfs_<t>m`` with ``_ci_low``/``_ci_high`` per horizon, then the
        warnings (``extrapolation``, ``warnings``)."""
        record: dict[str, Any] = {"model": self.model, "risk_score": self.risk_score, "risk_group": self.risk_group,
                                  "cutoff": self.cutoff, "training_percentile": self.training_percentile}
        for row in self.survival.itertuples():
            record[f"pfs_{row.time_months:g}m"] = row.pfs
            record[f"pfs_{row.time_months:g}m_ci_low"] = row.ci_low
            record[f"pfs_{row.time_months:g}m_ci_high"] = row.ci_high
        record["domain_distance"] = self.domain_distance
        record["domain_percentile"] = self.domain_percentile
        record["outside_domain"] = self.outside_domain
        record["withheld"] = self.withheld
        if self.withheld:  # the numbers are not given, only why
            for key in list(record):
                if key == "risk_score" or key == "risk_group" or key.startswith("pfs_"):
                    record[key] = None
        record["extrapolation"] = "; ".join(self.extrapolation)
        record["warnings"] = "; ".join(self.warnings())
        return record


@dataclass
class NewPatientResult:
    """Every model's prediction for one patient, the features they used and the image QC messages."""
    patient_id: str
    predictions: dict[str, ModelPrediction]
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why it could not be used
    mask: Path | None = None  # the mask the features came from: given, or drawn into ``drawn_mask`` (else None)
    features: dict[str, float] = field(default_factory=dict)
    qc_warnings: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per scored model."""
        return pd.DataFrame([p.to_record() for p in self.predictions.values()]).set_index("model")


def shared_feature_settings(models: dict[str, CoxRiskModel]) -> dict[str, Any] | None:
    """The feature settings every image model records (None when no model uses image features).

    Raises
    ------
    FeatureSettingsError
        An image model without a record (an artifact older than format 3, or fitted outside a study), or two
        models whose records differ.
    """
    records = {}
    for name, model in models.items():
        if not model.feature_inputs_ and not (model.base_model is not None and model.base_model.feature_inputs_):
            continue
        record = model.feature_settings_ if model.feature_inputs_ else model.base_model.feature_settings_
        if record is None:
            raise FeatureSettingsError(
                f"model {name} does not record how its features were computed (an artifact before format 3, or "
                "fitted outside a study): refit it with `hccrad fit`, or score a table of features instead")
        records[name] = record
    if not records:
        return None
    first_name, first = next(iter(records.items()))
    for name, record in records.items():
        if record != first:
            raise FeatureSettingsError(f"models {first_name} and {name} were fitted on features computed with "
                                       "different settings; predict with one of them at a time")
    return first


def check_engine(settings: dict[str, Any]) -> None:
    """Refuse to compute features with another engine version than the models' features were computed with."""
    from hccrad.features.extract import engine_version

    installed = engine_version(settings["engine"])
    if installed != settings["engine_version"]:
        raise FeatureSettingsError(
            f"the models' features were computed with {settings['engine_version']!r}, but this installation "
            f"computes {installed!r}: install that version of hccrad, or refit the models on features computed "
            "by this one")


def compute_patient_features(ct: Path, mask: Path, settings: dict[str, Any], patient_id: str = "patient",
                             portal_vein_diameter_mm: float | None = None,
                             progress: Callable[[str], None] | None = None) -> tuple[dict[str, float], list[str]]:
    """The patient's morphological factors and radiomics, computed with the recorded ``settings`` by the same
    worker function as the study's features stage. Returns (features, QC warnings); raises ``InputError``
    with the worker's message when the case cannot be computed."""
    from hccrad.features.config import FeatureConfig
    from hccrad.features.extract import CaseJob, compute_case

    check_engine(settings)
    config = FeatureConfig(**settings["settings"]).model_dump(mode="json")
    job = CaseJob(patient_id, str(ct), str(mask), portal_vein_diameter_mm, settings["radiomics_params"], config,
                  settings["series_rule"], fingerprint="new-patient")
    # the web app calls this in its long-running process: its freed memory goes back to the system
    result = compute_case(job, progress, reuse_freed_memory=False)
    if result["status"] != "ok":
        raise InputError(f"{patient_id}: features could not be computed from {ct} and {mask}: "
                         f"{result.get('error_type', 'error')}: {result['error']}")
    return result["features"], list(result.get("qc_warnings", []))


#: What a prediction outside the applicability domain gets: shown with a warning, or withheld.
OUT_OF_DOMAIN_ACTIONS = ("warn", "withhold")


def score_model(model: CoxRiskModel, row: pd.DataFrame, level: float = 0.95,
                out_of_domain: str = "warn") -> ModelPrediction:
    """One model's prediction for the one-patient table ``row`` (clinical inputs already parsed); outside the
    model's applicability domain it is flagged, and with ``out_of_domain="withhold"`` its numbers are withheld."""
    score = float(model.predict(row)[0])
    horizons = list(model.horizons_months)
    band = model.predict_survival_interval(row, horizons, level).iloc[0]
    survival = pd.DataFrame({"time_months": horizons,
                             "pfs": [band[f"pfs_{t:g}m"] for t in horizons],
                             "ci_low": [band[f"pfs_{t:g}m_ci_low"] for t in horizons],
                             "ci_high": [band[f"pfs_{t:g}m_ci_high"] for t in horizons]})
    cutoff = float(model.cutoff_["value"])
    cutoff_pfs = survival_probability(model.baseline_times_, model.baseline_cumhaz_, np.array([cutoff]), horizons)[0]
    if out_of_domain not in OUT_OF_DOMAIN_ACTIONS:
        raise ValueError(f"out_of_domain {out_of_domain!r}: expected one of {', '.join(OUT_OF_DOMAIN_ACTIONS)}")
    domain = model.applicability(row).iloc[0]
    outside = None if pd.isna(domain["outside"]) else bool(domain["outside"])
    recorded = getattr(model, "domain_", None) or {}
    return ModelPrediction(model.name, score, str(model.risk_group(np.array([score]))[0]), cutoff,
                           model.risk_percentile(score), survival, model.contributions(row),
                           extrapolation=model.extrapolation(row)["message"].tolist(),
                           cutoff_pfs={float(t): float(v) for t, v in zip(horizons, cutoff_pfs, strict=True)},
                           domain_distance=float(domain["distance"]), domain_percentile=float(domain["percentile"]),
                           outside_domain=outside,
                           domain_threshold_percentile=float(recorded.get("threshold_percentile", np.nan)),
                           withheld=bool(outside) and out_of_domain == "withhold")


def survival_curve(model: CoxRiskModel, row: pd.DataFrame, step_months: float = 0.25, level: float = 0.95
                   ) -> pd.DataFrame:
    """The predicted PFS curve with its confidence band, from 0 to the last training event time, on a grid of
    ``step_months``: columns time_months, pfs, ci_low, ci_high."""
    end = float(model.baseline_times_[-1]) if len(model.baseline_times_) else max(model.horizons_months)
    times = list(np.arange(0.0, end + step_months / 2, step_months))
    band = model.predict_survival_interval(row, times, level).iloc[0]
    return pd.DataFrame({"time_months": times, "pfs": [band[f"pfs_{t:g}m"] for t in times],
                         "ci_low": [band[f"pfs_{t:g}m_ci_low"] for t in times],
                         "ci_high": [band[f"pfs_{t:g}m_ci_high"] for t in times]})


def patient_row(patient_id: str, clinical: dict[str, Any], features: dict[str, float] | None = None
                ) -> pd.DataFrame:
    """A one-patient table of clinical factors (read by the manifest's rules) and features.

    Raises
    ------
    PredictionInputError
        A clinical value the manifest would refuse, naming the field.
    """
    from hccrad.survival.study import read_clinical_inputs

    row = pd.DataFrame([{**(features or {}), **clinical}], index=pd.Index([patient_id], name="patient_id"))
    return read_clinical_inputs(row, allow_impute=False)


def predict_new_patient(models: dict[str, CoxRiskModel], clinical: dict[str, Any], ct: Path | None = None,
                        mask: Path | None = None, patient_id: str = "patient",
                        segmentation_model: Path | None = None, portal_vein_diameter_mm: float | None = None,
                        level: float = 0.95, drawn_mask: Path | None = None,
                        progress: Callable[[str], None] | None = None,
                        out_of_domain: str = "warn") -> NewPatientResult:
    """Score one new patient with every model whose inputs are present.

    Parameters
    ----------
    models
        Fitted models by name (from their artifacts).
    clinical
        ``afp`` (ng/mL), ``child_pugh`` (A/B/C or a 5-15 score), ``bclc`` (0/A/B/C/D), ``treatment``; read by the
        manifest's rules.
    ct, mask
        The venous-phase CT (NIfTI file or DICOM folder) and its label mask (1 liver, 2 tumor, 3 portal vein).
        Without a CT only the clinical model is scored.
    segmentation_model
        A trained hccrad nnU-Net model folder, used to draw the mask when none is given.
    level
        Confidence level of the PFS intervals.
    drawn_mask
        Where to keep a mask drawn by ``segmentation_model`` (default: a temporary file, deleted).
    progress
        Called with each stage as it starts: ``segmenting`` (when a mask is drawn), ``reading``, ``checking``,
        ``features``, ``scoring``.
    out_of_domain
        ``warn`` (default): a prediction outside a model's applicability domain is given with the warning;
        ``withhold``: its numbers are withheld, and the reason given.
    """
    skipped: dict[str, str] = {}
    used_mask: Path | None = None
    features: dict[str, float] = {}
    qc_warnings: list[str] = []
    image_models = {n: m for n, m in models.items() if m.feature_inputs_ or m.base_model is not None}
    if ct is not None and image_models:
        settings = shared_feature_settings(image_models)
        with tempfile.TemporaryDirectory(prefix="hccrad-segment-") as scratch:
            if mask is None:
                if segmentation_model is None:
                    raise MissingMaskError(
                        f"{patient_id}: no mask for {ct}: give a mask (labels 1 liver, 2 tumor, 3 portal vein), or a "
                        "trained segmentation model (--segmentation-model DIR) to draw one")
                from hccrad.io.config import SeriesRule
                from hccrad.segment.nnunet import segment_image

                if progress is not None:
                    progress("segmenting")
                target = Path(drawn_mask) if drawn_mask is not None else Path(scratch) / "mask.nii.gz"
                mask = segment_image(Path(ct), Path(segmentation_model), target,
                                     series_rule=SeriesRule.model_validate(settings["series_rule"]))
                used_mask = Path(mask) if drawn_mask is not None else None
            else:
                used_mask = Path(mask)
            features, qc_warnings = compute_patient_features(Path(ct), Path(mask), settings, patient_id,
                                                             portal_vein_diameter_mm, progress)
    else:
        for name in image_models:
            skipped[name] = "needs a CT and a mask"
    if progress is not None:
        progress("scoring")
    row = patient_row(patient_id, clinical, features)
    predictions = {}
    for name, model in models.items():
        if name in skipped:
            continue
        predictions[name] = score_model(model, row, level, out_of_domain)
    return NewPatientResult(patient_id, predictions, skipped=skipped, mask=used_mask, features=features,
                            qc_warnings=qc_warnings)
