"""Model artifacts: one versioned JSON file per fitted model, with a content checksum; no pickle.

:func:`save_model` writes the artifact atomically; :func:`load_model` reads it back (plain data only, no code
executed) after checking that it is complete JSON of a readable format version, that its checksum matches, that
every field is present and that its hazard-ratio table agrees with its coefficients.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hccrad.io.errors import InputError
from hccrad.io.files import write_atomic
from hccrad.io.provenance import software_versions
from hccrad.survival.config import ModelConfig
from hccrad.survival.transformers import ClinicalCoder, FeaturePreprocessing, RadiomicsSelector

if TYPE_CHECKING:
    from hccrad.survival.model import CoxRiskModel

ARTIFACT_FORMAT = "hccrad-cox-model"
#: Version 2 added the content checksum; version 3 the coefficients' covariance and baseline variance terms (PFS
#: confidence intervals), covariate means (contributions), training risk percentiles and the feature settings
#: (predict from images). Versions 1 and 2 still load, without those.
ARTIFACT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


class ModelArtifactError(InputError, ValueError):
    """A model artifact that cannot be used: unreadable, altered, incomplete, or of another format version."""


def content_checksum(content: dict[str, Any]) -> str:
    """SHA-256 of an artifact's content (without its checksum), over canonical JSON: sorted keys, no spaces.

    JSON numbers round-trip exactly, so the checksum recomputed from a loaded artifact equals the saved one.
    """
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def model_to_dict(model: CoxRiskModel) -> dict[str, Any]:
    """The artifact's content: plain JSON types only, non-finite numbers as null."""
    return _finite({
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_VERSION,
        "name": model.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
        "config": model.settings.model_dump(mode="json"),
        "horizons_months": list(model.horizons_months),
        "clinical_coding": model.clinical_spec_,
        "score_mode": model.score_mode_,
        "base_model": model_to_dict(model.base_model) if model.score_mode_ else None,
        "preprocessing": {
            "feature_inputs": model.feature_inputs_,
            "impute": model.impute_,
            "center": model.center_,
            "scale": model.scale_,
            "training_range": {k: list(v) for k, v in model.training_range_.items()},
            "combat": model.combat_,
        },
        "covariates": model.covariates_,
        "coefficients": dict(zip(model.covariates_, map(float, model.coef_), strict=True)),
        "hazard_ratios": model.hazard_ratios_.to_dict(orient="records"),
        "baseline": {"time": list(map(float, model.baseline_times_)),
                     "cumulative_hazard": list(map(float, model.baseline_cumhaz_)),
                     "hazard_variance_terms": _listed(getattr(model, "hazard_terms_", None)),
                     "mean_terms": _listed(getattr(model, "mean_terms_", None))},
        "covariance": _listed(getattr(model, "covariance_", None)),
        "covariate_means": _listed(getattr(model, "covariate_means_", None)),
        "training_risk_percentiles": _listed(getattr(model, "training_risk_percentiles_", None)),
        "applicability_domain": getattr(model, "domain_", None),
        "lineage": getattr(model, "lineage_", None),
        "feature_settings": getattr(model, "feature_settings_", None),
        "robustness_filter": getattr(model, "robustness_", None),
        "risk_cutoff": model.cutoff_,
        "training": model.training_,
        "lasso": model.lasso_,
        "selection_log": json.loads(model.selection_log_.to_json(orient="records")),
    })


def _listed(values: Any) -> Any:
    """A numpy array as nested lists of floats; None stays None."""
    return None if values is None else np.asarray(values, float).tolist()


def _array(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, float)


def save_model(model: CoxRiskModel, path: Path | str) -> Path:
    """Write the JSON artifact atomically, with the SHA-256 checksum of its content (see
    :func:`content_checksum`)."""
    path = Path(path)
    content = model_to_dict(model)
    content["checksum"] = {"algorithm": "sha256", "value": content_checksum(content)}
    write_atomic(path, json.dumps(content, indent=1))
    return path


def model_from_dict(data: dict[str, Any]) -> CoxRiskModel:
    """Rebuild a fitted model from its artifact (plain data only; no code is executed)."""
    if data.get("format") != ARTIFACT_FORMAT:
        raise ModelArtifactError(f"not an hccrad model artifact (format {data.get('format')!r})")
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        raise ModelArtifactError(f"the artifact lacks the field(s) {', '.join(missing)}")
    try:
        return _from_fields(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelArtifactError(f"the artifact's field {exc} is missing or malformed") from exc


def _from_fields(data: dict[str, Any]) -> CoxRiskModel:
    from hccrad.survival.model import CoxRiskModel

    base = model_from_dict(data["base_model"]) if data.get("base_model") else None
    model = CoxRiskModel(data["name"], ModelConfig.model_validate(data["config"]), base, tuple(data["horizons_months"]))
    prep = data["preprocessing"]
    spec = data["clinical_coding"]
    model.clinical_coder_ = ClinicalCoder.from_spec(spec) if spec is not None else None
    model.score_mode_ = bool(data["score_mode"])
    preprocessing = FeaturePreprocessing(
        inputs=list(prep["feature_inputs"]),
        impute={k: float(v) for k, v in prep["impute"].items()},
        center={k: float(v) for k, v in prep["center"].items()},
        scale={k: float(v) for k, v in prep["scale"].items()},
        training_range={k: (float(v[0]), float(v[1])) for k, v in prep["training_range"].items()},
        combat=prep.get("combat"))
    model.selector_ = (RadiomicsSelector.from_state(preprocessing, data.get("lasso"))
                       if preprocessing.inputs else None)
    model.covariates_ = list(data["covariates"])
    model.coef_ = np.array([float(data["coefficients"][c]) for c in model.covariates_])
    model.hazard_ratios_ = pd.DataFrame(data["hazard_ratios"])
    model.baseline_times_ = np.array(data["baseline"]["time"], float)
    model.baseline_cumhaz_ = np.array(data["baseline"]["cumulative_hazard"], float)
    model.hazard_terms_ = _array(data["baseline"].get("hazard_variance_terms"))
    model.mean_terms_ = _array(data["baseline"].get("mean_terms"))
    model.covariance_ = _array(data.get("covariance"))
    model.covariate_means_ = _array(data.get("covariate_means"))
    model.training_risk_percentiles_ = _array(data.get("training_risk_percentiles"))
    model.domain_ = data.get("applicability_domain")
    model.lineage_ = data.get("lineage")
    model.feature_settings_ = data.get("feature_settings")
    model.robustness_ = data.get("robustness_filter")
    model.cutoff_ = data["risk_cutoff"]
    model.training_ = data["training"]
    model.selection_log_ = pd.DataFrame(data.get("selection_log") or [])
    return model


REQUIRED_FIELDS = ("format_version", "name", "config", "horizons_months", "clinical_coding", "score_mode",
                   "preprocessing", "covariates", "coefficients", "hazard_ratios", "baseline", "risk_cutoff",
                   "training")


def load_model(path: Path | str) -> CoxRiskModel:
    """Read a model artifact written by :meth:`CoxRiskModel.save` (JSON only: no code is executed).

    Checks, in order: the file is complete JSON; its format version is one this hccrad reads
    (:data:`READABLE_VERSIONS`); its checksum matches its content (version 2 on); every field is present; its
    hazard-ratio table agrees with its coefficients (HR = exp(coef), to 1e-9).

    Raises
    ------
    ModelArtifactError
        One line naming the file and the problem.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelArtifactError(f"model artifact {path}: cannot read it ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelArtifactError(f"model artifact {path} is not complete JSON (truncated or damaged?): {exc}") from exc
    if not isinstance(data, dict):
        raise ModelArtifactError(f"model artifact {path} is not an hccrad model (a JSON {type(data).__name__})")
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModelArtifactError(f"model artifact {path} has format version {version!r}; this hccrad reads versions "
                                 f"{', '.join(map(str, READABLE_VERSIONS))} (refit the model, or use the hccrad "
                                 "that wrote it)")
    if version >= 2:
        saved = data.pop("checksum", None)
        if not isinstance(saved, dict) or saved.get("algorithm") != "sha256":
            raise ModelArtifactError(f"model artifact {path} has no sha256 checksum; it was not written by hccrad")
        if saved.get("value") != content_checksum(data):
            raise ModelArtifactError(f"model artifact {path} fails its checksum: it was edited or damaged after it "
                                     "was saved; refit, or restore the original file")
    try:
        model = model_from_dict(data)
    except ModelArtifactError as exc:
        raise ModelArtifactError(f"model artifact {path}: {exc}") from exc
    _check_consistency(model, path)
    return model


def _check_consistency(model: CoxRiskModel, path: Path) -> None:
    """The artifact's hazard-ratio table must show its own coefficients."""
    table = model.hazard_ratios_
    if len(model.covariates_) and {"covariate", "coef", "hr"} <= set(table.columns):
        shown = table.set_index("covariate")
        for covariate, coef in zip(model.covariates_, model.coef_, strict=True):
            if covariate not in shown.index:
                raise ModelArtifactError(f"model artifact {path}: covariate {covariate} is not in its hazard-ratio "
                                         "table")
            row = shown.loc[covariate]
            if not (math.isclose(float(row["coef"]), coef, rel_tol=1e-9, abs_tol=1e-12)
                    and math.isclose(float(row["hr"]), math.exp(coef), rel_tol=1e-9)):
                raise ModelArtifactError(
                    f"model artifact {path}: coefficient of {covariate} ({coef:.6g}) disagrees with its hazard-ratio "
                    f"table (coef {float(row['coef']):.6g}, HR {float(row['hr']):.6g})")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
