"""The Cox risk models C, T, T&L and C-T&L as scikit-learn-style estimators, saved as versioned JSON.

``CoxRiskModel(name).fit(X, y)`` learns, from training patients only, the clinical coding, imputation
values, standardisation, selected features, coefficients, Breslow baseline survival and the risk cut-off.
``predict`` returns the risk score (linear predictor), ``predict_survival`` PFS probabilities. ``save``
writes a JSON artifact that :func:`load_model` reads back without executing any code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from hccrad.io.errors import InputError
from hccrad.io.files import write_atomic
from hccrad.io.provenance import software_versions
from hccrad.survival.clinical import CLINICAL_INPUTS, covariate_description, encode, fit_coding
from hccrad.survival.config import ModelConfig
from hccrad.survival.coxmath import breslow_baseline, survival_probability, univariate_cox
from hccrad.survival.harmonize import apply_combat, fit_combat
from hccrad.survival.selection import (
    SelectionLog,
    backward_aic,
    correlation_filter,
    fit_lifelines,
    lasso_cox_cv,
    near_constant,
)

ARTIFACT_FORMAT = "hccrad-cox-model"
#: Version 2 added the content checksum; version 1 artifacts (no checksum) still load.
ARTIFACT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class ModelArtifactError(InputError, ValueError):
    """A model artifact that cannot be used: unreadable, altered, incomplete, or of another format version."""


def content_checksum(content: dict[str, Any]) -> str:
    """SHA-256 of an artifact's content (without its checksum), over canonical JSON: sorted keys, no spaces.

    JSON numbers round-trip exactly, so the checksum recomputed from a loaded artifact equals the saved one.
    """
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
SCORE_COVARIATE = "TL_risk_score"


class PredictionInputError(InputError, ValueError):
    """A patient's inputs cannot be scored as asked (missing or out-of-range value); names patient and field."""


def feature_family(column: str) -> str | None:
    """``T`` for tumor features, ``L`` for liver-parenchyma features, None for anything else.

    The tumor / parenchyma volume ratio is a liver-parenchyma factor in the paper (Supplementary Table 3).
    """
    if column == "Tumor_to_Rliver_volume_ratio":
        return "L"
    if column.startswith("Tumor_"):
        return "T"
    if column.startswith("Rliver_") or column == "PV_max_diameter_mm":
        return "L"
    return None


def make_y(time: np.ndarray | pd.Series, event: np.ndarray | pd.Series) -> np.ndarray:
    """A structured survival array (``event``, ``time``) as scikit-survival uses."""
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = np.asarray(event, bool), np.asarray(time, float)
    return y


class CoxRiskModel(BaseEstimator):
    """One of the study's Cox models.

    Parameters
    ----------
    name
        ``C`` (clinical factors), ``T`` (tumor features), ``T&L`` (tumor + remnant-liver features) or
        ``C-T&L`` (clinical + T&L).
    config
        Selection and coding settings (:class:`ModelConfig`).
    base_model
        For ``C-T&L`` with ``config.c_tl_mode == "score"``: the fitted T&L model whose risk score becomes
        one covariate.
    horizons_months
        Horizons of the predicted PFS probabilities.
    """

    def __init__(self, name: str = "T&L", config: ModelConfig | None = None,
                 base_model: CoxRiskModel | None = None, horizons_months: tuple[float, ...] = (6.0, 12.0)):
        # scikit-learn's convention: parameters are stored as given (``clone`` checks it); defaults resolve in use
        self.name = name
        self.config = config
        self.base_model = base_model
        self.horizons_months = horizons_months

    @property
    def settings(self) -> ModelConfig:
        """``config``, or the paper's defaults when it is None."""
        return self.config if self.config is not None else ModelConfig()

    # --- fitting -------------------------------------------------------------------------------------
    @property
    def uses_clinical(self) -> bool:
        """Whether the model includes the four clinical factors (C and C-T&L)."""
        return self.name in ("C", "C-T&L")

    def _families(self) -> set[str]:
        return {"C": set(), "T": {"T"}, "T&L": {"T", "L"}, "C-T&L": {"T", "L"}}[self.name]

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> CoxRiskModel:
        """Fit on training patients ``X`` (clinical columns and features) with outcomes ``y``."""
        if self.name not in ("C", "T", "T&L", "C-T&L"):
            raise ValueError(f"unknown model {self.name!r}; expected C, T, T&L or C-T&L")
        time, event = np.asarray(y["time"], float), np.asarray(y["event"], int)
        log = SelectionLog()
        self.score_mode_ = self.name == "C-T&L" and self.settings.c_tl_mode == "score"
        clinical = pd.DataFrame(index=X.index)
        if self.uses_clinical:
            self.clinical_spec_ = fit_coding(X, self.settings.clinical)
            clinical = encode(X, self.clinical_spec_, impute=self.clinical_spec_["impute"])
            for column in clinical:
                log.add("clinical", column, "forced", note=covariate_description(column, self.clinical_spec_))
        else:
            self.clinical_spec_ = None

        if self.score_mode_:
            if self.base_model is None:
                raise ValueError("C-T&L in score mode needs the fitted T&L model as base_model")
            images = pd.DataFrame({SCORE_COVARIATE: self.base_model.predict(X)}, index=X.index)
            self.feature_inputs_, self.impute_, self.center_, self.scale_ = [], {}, {}, {}
            self.training_range_, self.combat_ = {}, None
            selected = [SCORE_COVARIATE]
            log.add("score", SCORE_COVARIATE, "forced", note="risk score of the fitted T&L model")
        elif self._families():
            images, selected = self._select_image_features(X, time, event, clinical, log)
        else:
            images, selected = pd.DataFrame(index=X.index), []
            self.feature_inputs_, self.impute_, self.center_, self.scale_, self.training_range_ = [], {}, {}, {}, {}
            self.combat_ = None

        design = clinical.join(images[selected])
        forced = list(clinical.columns) + ([SCORE_COVARIATE] if self.score_mode_ else [])
        if self.settings.backward_aic and design.shape[1] > 1:
            kept = backward_aic(design, time, event, forced, log)
            design = design[kept]
        fitted, penalizer = fit_lifelines(design, time, event)
        if penalizer:
            log.add("multivariable", "-", "note", "penalizer", penalizer, "ridge needed for convergence")
        self.covariates_ = list(design.columns)
        self.coef_ = fitted.params_.reindex(self.covariates_).to_numpy(float)
        summary = fitted.summary.reindex(self.covariates_)
        self.hazard_ratios_ = self._hazard_table(summary)
        for covariate in self.covariates_:
            log.add("multivariable", covariate, "kept", "p", summary.loc[covariate, "p"])
        lp = design.to_numpy(float) @ self.coef_
        self.baseline_times_, self.baseline_cumhaz_ = breslow_baseline(time, event, lp)
        self.cutoff_ = self._fit_cutoff(lp, time, event)
        from lifelines.utils import concordance_index

        self.training_ = {"n": int(len(time)), "events": int(event.sum()),
                          "harrell_c": float(concordance_index(time, -lp, event)),
                          "penalizer": penalizer, "partial_aic": float(fitted.AIC_partial_)}
        self.selection_log_ = log.table()
        return self

    def _select_image_features(self, X, time, event, clinical, log):
        families = self._families()
        candidates = [c for c in X.columns if feature_family(c) in families]
        numeric = X[candidates].apply(pd.to_numeric, errors="coerce").astype(float)
        numeric = numeric.replace([np.inf, -np.inf], np.nan)
        empty = [c for c in candidates if numeric[c].isna().all()]
        for column in empty:
            log.add("missing", column, "removed", note="no value in training")
        numeric = numeric.drop(columns=empty)
        self.impute_ = numeric.median().to_dict()
        numeric = numeric.fillna(self.impute_)
        constant = near_constant(numeric, self.settings.max_mode_fraction)
        for column in constant:
            log.add("near_constant", column, "removed", "mode share",
                    numeric[column].value_counts(normalize=True).iloc[0])
        numeric = numeric.drop(columns=constant)
        self.combat_ = None
        if self.settings.harmonize:
            self.combat_ = _finite_combat(fit_combat(numeric, X["center"]))
            numeric[self.combat_["features"]] = apply_combat(numeric, X["center"], self.combat_)
            log.add("harmonize", "-", "note", note=f"ComBat over centers {self.combat_['centers']} on "
                    f"{len(self.combat_['features'])} features")
        self.feature_inputs_ = list(numeric.columns)
        self.center_ = numeric.mean().to_dict()
        self.scale_ = numeric.std(ddof=0).to_dict()
        self.training_range_ = {c: (float(numeric[c].min()), float(numeric[c].max())) for c in numeric}
        standardized = (numeric - pd.Series(self.center_)) / pd.Series(self.scale_)

        screen = univariate_cox(standardized.to_numpy(), time, event)
        z = pd.Series(screen.z, index=standardized.columns)
        p = pd.Series(screen.p, index=standardized.columns)
        passed = p[p < self.settings.univariate_p].index.tolist()
        for column in standardized.columns:
            log.add("univariate", column, "kept" if column in passed else "removed", "p", p[column])
        if not passed:
            passed = [p.idxmin()]
            log.add("univariate", passed[0], "kept", "p", p[passed[0]],
                    f"no feature below p {self.settings.univariate_p}: the strongest one is kept")
        survivors = correlation_filter(standardized[passed], z, self.settings.correlation_threshold, log)
        lasso_input = clinical.join(standardized[survivors])
        lasso = lasso_cox_cv(lasso_input, time, event, list(clinical.columns), self.config, log)
        self.lasso_ = {"alphas": lasso.alphas.tolist(), "cv_mean": lasso.cv_mean.tolist(),
                       "cv_se": lasso.cv_se.tolist(), "alpha_min": lasso.alpha_min, "alpha_1se": lasso.alpha_1se,
                       "alpha_chosen": lasso.alpha_chosen}
        selected = [c for c in survivors if lasso.coefficients[c] != 0]
        if not selected:
            best = max(survivors, key=lambda c: abs(z[c]))
            selected = [best]
            log.add("lasso", best, "kept", note="LASSO kept no feature: the strongest univariate one is used")
        return standardized, selected

    def _fit_cutoff(self, lp: np.ndarray, time: np.ndarray, event: np.ndarray) -> dict[str, Any]:
        if self.settings.risk_cutoff == "median":
            return {"method": "median of training risk scores", "value": float(np.median(lp))}
        from lifelines.statistics import logrank_test

        candidates = np.unique(np.quantile(lp, np.linspace(0.1, 0.9, 33)))
        best_value, best_stat = float(np.median(lp)), -np.inf
        for value in candidates:
            high = lp > value
            if high.all() or not high.any():
                continue
            statistic = logrank_test(time[high], time[~high], event[high], event[~high]).test_statistic
            if statistic > best_stat:
                best_value, best_stat = float(value), float(statistic)
        return {"method": "maximally selected log-rank statistic (10th-90th percentiles)", "value": best_value,
                "statistic": best_stat}

    def _hazard_table(self, summary: pd.DataFrame) -> pd.DataFrame:
        from hccrad.features.names import PAPER_TABLE3

        paper_by_column = {column: paper for paper, column in PAPER_TABLE3.items()}
        clinical_columns = set(encode_columns(self.clinical_spec_)) if self.clinical_spec_ else set()
        rows = []
        for covariate, row in summary.iterrows():
            if covariate in clinical_columns:
                description = covariate_description(covariate, self.clinical_spec_)
                paper = {"afp": "AFP level", "chi": "Child-Pugh grade", "bcl": "BCLC stage",
                         "tre": "Treatment style"}[covariate[:3]]
            elif covariate == SCORE_COVARIATE:
                description, paper = "T&L risk score, per unit", ""
            else:
                description, paper = "per standard deviation", paper_by_column.get(covariate, "")
            rows.append({
                "covariate": covariate, "description": description, "paper_factor": paper,
                "coef": float(row["coef"]), "hr": float(row["exp(coef)"]),
                "ci_low": float(row["exp(coef) lower 95%"]), "ci_high": float(row["exp(coef) upper 95%"]),
                "p": float(row["p"]),
            })
        return pd.DataFrame(rows)

    # --- prediction ----------------------------------------------------------------------------------
    def design(self, X: pd.DataFrame, allow_impute: bool = True,
               allow_extrapolation: bool = True) -> tuple[pd.DataFrame, dict[str, list[str]]]:
        """The model's covariates for ``X``, and per patient the inputs that were imputed.

        With ``allow_impute=False`` a missing input raises :class:`PredictionInputError`; with
        ``allow_extrapolation=False`` so does a feature more than 25% of its training range outside it.
        """
        imputed: dict[str, list[str]] = {}
        parts = []
        if self.clinical_spec_ is not None:
            raw = X.reindex(columns=list(CLINICAL_INPUTS))
            _record_missing(raw.isna(), allow_impute, imputed)
            parts.append(encode(raw, self.clinical_spec_, impute=self.clinical_spec_["impute"]))
        if self.score_mode_:
            parts.append(pd.DataFrame({SCORE_COVARIATE: self.base_model.predict(X, allow_impute,
                                                                                allow_extrapolation)},
                                      index=X.index))
        elif self.feature_inputs_:
            raw = X.reindex(columns=self.feature_inputs_).apply(pd.to_numeric, errors="coerce").astype(float)
            raw = raw.replace([np.inf, -np.inf], np.nan)
            _record_missing(raw.isna(), allow_impute, imputed)
            needed = [c for c in self.covariates_ if c in self.feature_inputs_]
            if not allow_extrapolation:
                _check_range(raw[needed], self.training_range_)
            filled = raw.fillna(self.impute_)
            if getattr(self, "combat_", None):
                if "center" not in X:
                    raise PredictionInputError("this model harmonizes features by center: give a center column")
                filled[self.combat_["features"]] = apply_combat(filled, X["center"], self.combat_)
            parts.append((filled - pd.Series(self.center_)) / pd.Series(self.scale_))
        design = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=X.index)
        return design.reindex(columns=self.covariates_), imputed

    def predict(self, X: pd.DataFrame, allow_impute: bool = True, allow_extrapolation: bool = True) -> np.ndarray:
        """Risk score: the linear predictor (higher = shorter PFS)."""
        design, _ = self.design(X, allow_impute, allow_extrapolation)
        return design.to_numpy(float) @ self.coef_

    def predict_survival(self, X: pd.DataFrame, times: list[float] | None = None, **kwargs) -> pd.DataFrame:
        """PFS probability at ``times`` (default the horizons): S0(t) ** exp(risk score)."""
        times = list(times or tuple(self.horizons_months))
        lp = self.predict(X, **kwargs)
        values = survival_probability(self.baseline_times_, self.baseline_cumhaz_, lp, times)
        return pd.DataFrame(values, index=X.index, columns=[f"pfs_{t:g}m" for t in times])

    def risk_group(self, scores: np.ndarray) -> np.ndarray:
        """``high`` where the risk score is above the training cut-off, else ``low``; shape as ``scores``."""
        return np.where(np.asarray(scores) > self.cutoff_["value"], "high", "low")

    # --- artifact ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The artifact's content: plain JSON types only, non-finite numbers as null."""
        return _finite({
            "format": ARTIFACT_FORMAT,
            "format_version": ARTIFACT_VERSION,
            "name": self.name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "software": software_versions(),
            "config": self.settings.model_dump(mode="json"),
            "horizons_months": list(self.horizons_months),
            "clinical_coding": self.clinical_spec_,
            "score_mode": self.score_mode_,
            "base_model": self.base_model.to_dict() if self.score_mode_ else None,
            "preprocessing": {
                "feature_inputs": self.feature_inputs_,
                "impute": self.impute_,
                "center": self.center_,
                "scale": self.scale_,
                "training_range": {k: list(v) for k, v in self.training_range_.items()},
                "combat": getattr(self, "combat_", None),
            },
            "covariates": self.covariates_,
            "coefficients": dict(zip(self.covariates_, map(float, self.coef_), strict=True)),
            "hazard_ratios": self.hazard_ratios_.to_dict(orient="records"),
            "baseline": {"time": list(map(float, self.baseline_times_)),
                         "cumulative_hazard": list(map(float, self.baseline_cumhaz_))},
            "risk_cutoff": self.cutoff_,
            "training": self.training_,
            "lasso": getattr(self, "lasso_", None),
            "selection_log": json.loads(self.selection_log_.to_json(orient="records")),
        })

    def save(self, path: Path | str) -> Path:
        """Write the JSON artifact atomically, with the SHA-256 checksum of its content (see
        :func:`content_checksum`)."""
        path = Path(path)
        content = self.to_dict()
        content["checksum"] = {"algorithm": "sha256", "value": content_checksum(content)}
        write_atomic(path, json.dumps(content, indent=1))
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoxRiskModel:
        """Rebuild a fitted model from its artifact (plain data only; no code is executed)."""
        if data.get("format") != ARTIFACT_FORMAT:
            raise ModelArtifactError(f"not an hccrad model artifact (format {data.get('format')!r})")
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            raise ModelArtifactError(f"the artifact lacks the field(s) {', '.join(missing)}")
        try:
            return cls._from_fields(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"the artifact's field {exc} is missing or malformed") from exc

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> CoxRiskModel:
        base = cls.from_dict(data["base_model"]) if data.get("base_model") else None
        model = cls(data["name"], ModelConfig.model_validate(data["config"]), base, tuple(data["horizons_months"]))
        prep = data["preprocessing"]
        model.clinical_spec_ = data["clinical_coding"]
        model.score_mode_ = bool(data["score_mode"])
        model.feature_inputs_ = list(prep["feature_inputs"])
        model.impute_ = {k: float(v) for k, v in prep["impute"].items()}
        model.center_ = {k: float(v) for k, v in prep["center"].items()}
        model.scale_ = {k: float(v) for k, v in prep["scale"].items()}
        model.training_range_ = {k: (float(v[0]), float(v[1])) for k, v in prep["training_range"].items()}
        model.combat_ = prep.get("combat")
        model.covariates_ = list(data["covariates"])
        model.coef_ = np.array([float(data["coefficients"][c]) for c in model.covariates_])
        model.hazard_ratios_ = pd.DataFrame(data["hazard_ratios"])
        model.baseline_times_ = np.array(data["baseline"]["time"], float)
        model.baseline_cumhaz_ = np.array(data["baseline"]["cumulative_hazard"], float)
        model.cutoff_ = data["risk_cutoff"]
        model.training_ = data["training"]
        model.lasso_ = data.get("lasso")
        model.selection_log_ = pd.DataFrame(data.get("selection_log") or [])
        return model


def _finite_combat(params: dict[str, Any]) -> dict[str, Any]:
    """Keep only the features whose ComBat parameters are all finite (a feature constant within a center
    has none); those are left unharmonized."""
    arrays = [params["mean"], params["sd"], *params["gamma"].values(), *params["delta"].values()]
    ok = np.all([np.isfinite(np.asarray(a, float)) for a in arrays], axis=0) & (np.asarray(params["sd"]) > 0)
    ok &= np.all([np.asarray(d, float) > 0 for d in params["delta"].values()], axis=0)
    keep = np.where(ok)[0]
    pick = lambda values: [values[i] for i in keep]  # noqa: E731
    return {**params, "features": pick(params["features"]), "mean": pick(params["mean"]), "sd": pick(params["sd"]),
            "gamma": {c: pick(v) for c, v in params["gamma"].items()},
            "delta": {c: pick(v) for c, v in params["delta"].items()}}


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
        model = CoxRiskModel.from_dict(data)
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


def encode_columns(spec: dict[str, Any]) -> list[str]:
    """The covariate columns that the clinical coding ``spec`` produces."""
    probe = pd.DataFrame({"afp": [1.0], "child_pugh": ["A"], "bclc": ["A"], "treatment": [spec["treatment_reference"]]})
    return list(encode(probe, spec, impute=None).columns)


def _record_missing(missing: pd.DataFrame, allow_impute: bool, imputed: dict[str, list[str]]) -> None:
    """Add each patient's missing inputs to ``imputed``, or raise when imputation is not allowed."""
    if not allow_impute and missing.any().any():
        raise PredictionInputError(_describe_missing(missing))
    for patient, row in missing.iterrows():
        if row.any():
            imputed.setdefault(str(patient), []).extend(row[row].index.tolist())


def _describe_missing(missing: pd.DataFrame) -> str:
    parts = []
    for patient, row in missing.iterrows():
        if row.any():
            parts.append(f"patient {patient}: missing {', '.join(row[row].index)}")
    return "; ".join(parts[:10]) + " (pass --allow-impute to use the training medians/modes)"


def _check_range(raw: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> None:
    problems = []
    for column in raw.columns:
        low, high = ranges[column]
        margin = 0.25 * (high - low)
        outside = raw[column][(raw[column] < low - margin) | (raw[column] > high + margin)]
        for patient, value in outside.items():
            problems.append(f"patient {patient}: {column} = {value:.4g} outside the training range "
                            f"[{low:.4g}, {high:.4g}]")
    if problems:
        raise PredictionInputError("; ".join(problems[:10]) + " (pass --allow-extrapolation to score anyway)")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
