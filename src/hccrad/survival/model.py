"""The Cox risk models C, T, T&L and C-T&L as scikit-learn-style estimators, saved as versioned JSON.

``CoxRiskModel(name).fit(X, y)`` learns, from training patients only, the clinical coding, imputation
values, standardisation, selected features, coefficients, Breslow baseline survival and the risk cut-off.
``predict`` returns the risk score (linear predictor), ``predict_survival`` PFS probabilities. ``save``
writes a JSON artifact that :func:`load_model` reads back without executing any code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator

from hccrad.io.errors import InputError
from hccrad.survival.clinical import CLINICAL_INPUTS, covariate_description, encode
from hccrad.survival.config import MODEL_NAMES, ModelConfig
from hccrad.survival.coxmath import (
    baseline_variance_terms,
    breslow_baseline,
    cumulative_hazard_variance,
    maxstat_cutoff,
    survival_confidence_band,
    survival_probability,
)
from hccrad.survival.domain import domain_distance, domain_percentile, fit_domain, outside_domain
from hccrad.survival.selection import SelectionLog, backward_aic, fit_lifelines
from hccrad.survival.transformers import (
    ClinicalCoder,
    ClinicalSpec,
    FeaturePreprocessing,
    LassoSummary,
    RadiomicsSelector,
    numeric_columns,
)

SCORE_COVARIATE = "TL_risk_score"
#: An input more than this many training standard deviations from the training mean is flagged as extrapolation.
EXTRAPOLATION_Z = 4.0


class PredictionInputError(InputError, ValueError):
    """A patient's inputs cannot be scored as asked (missing or out-of-range value); names patient and field."""


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
                 base_model: CoxRiskModel | None = None, horizons_months: tuple[float, ...] = (6.0, 12.0),
                 robustness: dict | None = None):
        # scikit-learn's convention: parameters are stored as given (``clone`` checks it); defaults resolve in use
        self.name = name
        self.config = config
        self.base_model = base_model
        self.horizons_months = horizons_months
        #: The robustness filter (:func:`robustness_filter`): image features below its ICC are not candidates.
        self.robustness = robustness

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
        if self.name not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.name!r}; expected C, T, T&L or C-T&L")
        time, event = np.asarray(y["time"], float), np.asarray(y["event"], int)
        log = SelectionLog()
        self.score_mode_ = self.name == "C-T&L" and self.settings.c_tl_mode == "score"
        clinical = pd.DataFrame(index=X.index)
        self.clinical_coder_: ClinicalCoder | None = None
        self.selector_: RadiomicsSelector | None = None
        if self.uses_clinical:
            self.clinical_coder_ = ClinicalCoder(self.settings.clinical).fit(X)
            clinical = self.clinical_coder_.transform(X)
            for column in clinical:
                log.add("clinical", column, "forced",
                        note=covariate_description(column, self.clinical_coder_.spec_))

        if self.score_mode_:
            if self.base_model is None:
                raise ValueError("C-T&L in score mode needs the fitted T&L model as base_model")
            images = pd.DataFrame({SCORE_COVARIATE: self.base_model.predict(X)}, index=X.index)
            selected = [SCORE_COVARIATE]
            log.add("score", SCORE_COVARIATE, "forced", note="risk score of the fitted T&L model")
        elif self._families():
            self.selector_ = RadiomicsSelector(tuple(sorted(self._families())), self.config,
                                               self.robustness).fit(X, y, clinical, log)
            images, selected = self.selector_.transform(X), self.selector_.selected_
        else:
            images, selected = pd.DataFrame(index=X.index), []

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
        self.covariance_ = fitted.variance_matrix_.reindex(index=self.covariates_,
                                                           columns=self.covariates_).to_numpy(float)
        self.hazard_terms_, self.mean_terms_ = baseline_variance_terms(time, event, design.to_numpy(float), self.coef_)
        self.covariate_means_ = design.mean().reindex(self.covariates_).to_numpy(float)
        self.domain_ = fit_domain(design.to_numpy(float))
        self.training_risk_percentiles_ = np.percentile(lp, np.arange(101)).astype(float)
        self.feature_settings_: dict | None = None  # set by the study that computed the features
        self.robustness_ = ({key: value for key, value in self.robustness.items() if key != "icc"}
                            | {"removed": int((log.table()["step"] == "robustness").sum())}
                            if self.robustness and self.selector_ is not None else None)
        self.cutoff_ = self._fit_cutoff(lp, time, event)
        from lifelines.utils import concordance_index

        self.training_ = {"n": int(len(time)), "events": int(event.sum()),
                          "harrell_c": float(concordance_index(time, -lp, event)),
                          "penalizer": penalizer, "partial_aic": float(fitted.AIC_partial_)}
        self.selection_log_ = log.table()
        return self

    # --- fitted state read by the artifact (typed: see hccrad.survival.transformers) ---------------------
    @property
    def clinical_spec_(self) -> ClinicalSpec | None:
        """The fitted clinical coding, or None for a model without clinical factors."""
        return self.clinical_coder_.spec_ if self.clinical_coder_ is not None else None

    @property
    def preprocessing_(self) -> FeaturePreprocessing:
        """The image features' fitted preprocessing (empty for a model without image features)."""
        return self.selector_.preprocessing_ if self.selector_ is not None else FeaturePreprocessing()

    @property
    def feature_inputs_(self) -> list[str]:
        """The image features read from a patient."""
        return self.preprocessing_.inputs

    @property
    def impute_(self) -> dict[str, float]:
        return self.preprocessing_.impute

    @property
    def center_(self) -> dict[str, float]:
        return self.preprocessing_.center

    @property
    def scale_(self) -> dict[str, float]:
        return self.preprocessing_.scale

    @property
    def training_range_(self) -> dict[str, tuple[float, float]]:
        return self.preprocessing_.training_range

    @property
    def combat_(self) -> dict[str, Any] | None:
        return self.preprocessing_.combat

    @property
    def lasso_(self) -> LassoSummary | None:
        """The LASSO-Cox path and its cross-validation, or None for a model without image selection."""
        return self.selector_.lasso_ if self.selector_ is not None else None

    def _fit_cutoff(self, lp: np.ndarray, time: np.ndarray, event: np.ndarray) -> dict[str, Any]:
        if isinstance(self.settings.risk_cutoff, (int, float)):
            return {"method": "fixed", "value": float(self.settings.risk_cutoff)}
        if self.settings.risk_cutoff == "median":
            return {"method": "median of training risk scores", "value": float(np.median(lp))}
        from lifelines.statistics import logrank_test

        try:
            chosen = maxstat_cutoff(lp, time, event, 0.1, 0.9)
        except ValueError as exc:  # no event, or too few distinct scores: the median, saying why
            return {"method": f"median of training risk scores (maxstat not possible: {exc})",
                    "value": float(np.median(lp))}
        high = lp > chosen.cutoff
        chi_square = float(logrank_test(time[high], time[~high], event[high], event[~high]).test_statistic)
        return {"method": "maximally selected log-rank statistic (R maxstat.test, 10th-90th percentiles)",
                "value": chosen.cutoff, "statistic": chosen.statistic, "logrank_chi_square": chi_square,
                "p_plain": float(stats.chi2.sf(chi_square, 1)), "p_corrected": chosen.p_value,
                "n_candidates": chosen.n_candidates}

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
        if self.clinical_coder_ is not None:
            raw = X.reindex(columns=list(CLINICAL_INPUTS))
            _record_missing(raw.isna(), allow_impute, imputed)
            parts.append(self.clinical_coder_.transform(raw))
        if self.score_mode_:
            parts.append(pd.DataFrame({SCORE_COVARIATE: self.base_model.predict(X, allow_impute,
                                                                                allow_extrapolation)},
                                      index=X.index))
        elif self.selector_ is not None and self.feature_inputs_:
            raw = numeric_columns(X, self.feature_inputs_)
            _record_missing(raw.isna(), allow_impute, imputed)
            needed = [c for c in self.covariates_ if c in self.feature_inputs_]
            if not allow_extrapolation:
                _check_range(raw[needed], self.training_range_)
            if self.combat_ and "center" not in X:
                raise PredictionInputError("this model harmonizes features by center: give a center column")
            parts.append(self.selector_.transform(X, needed))
        design = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=X.index)
        return design.reindex(columns=self.covariates_), imputed

    def may_refuse(self, X: pd.DataFrame, allow_impute: bool = True, allow_extrapolation: bool = True
                   ) -> np.ndarray:
        """A cheap screen, (n,) bool: the patients :meth:`design` may refuse (an input missing without
        ``allow_impute``, a feature more than 25% of its training range outside it without ``allow_extrapolation``),
        so that the others are scored in one batch and only these alone, each with its own message."""
        flagged = np.zeros(len(X), dtype=bool)
        if self.clinical_coder_ is not None and not allow_impute:
            flagged |= X.reindex(columns=list(CLINICAL_INPUTS)).isna().any(axis=1).to_numpy()
        if self.score_mode_:
            flagged |= self.base_model.may_refuse(X, allow_impute, allow_extrapolation)
        elif self.selector_ is not None and self.feature_inputs_:
            raw = numeric_columns(X, self.feature_inputs_)
            if not allow_impute:
                flagged |= raw.isna().any(axis=1).to_numpy()
            needed = [c for c in self.covariates_ if c in self.feature_inputs_]
            if not allow_extrapolation and needed:
                low, high = (np.array([self.training_range_[c][k] for c in needed], dtype=float) for k in (0, 1))
                margin = 0.25 * (high - low)
                values = raw[needed].to_numpy(float)
                flagged |= ((values < low - margin) | (values > high + margin)).any(axis=1)
        return flagged

    def extrapolation(self, X: pd.DataFrame, z_bound: float = EXTRAPOLATION_Z) -> pd.DataFrame:
        """Each model input of each patient that lies outside the training patients' distribution: an image
        feature more than ``z_bound`` training standard deviations from the training mean, or outside the training
        range (min to max); in score mode, the T&L risk score outside the training patients' scores, and the T&L
        model's own inputs. Missing inputs are not listed (they are imputed or refused elsewhere).

        Returns
        -------
        One row per flagged input: ``patient_id``, ``input``, ``value``, ``z`` (NaN for the T&L score),
        ``training_min``, ``training_max``, ``message`` (a sentence naming the input and the numbers).
        """
        rows: list[dict[str, Any]] = []
        if self.score_mode_:
            inner = self.base_model.extrapolation(X, z_bound)
            rows += inner.to_dict("records")
            scores = self.base_model.predict(X)
            low, high = (float(v) for v in np.asarray(self.base_model.training_risk_percentiles_)[[0, -1]])
            for patient_id, score in zip(X.index, scores, strict=True):
                if np.isfinite(score) and not low <= score <= high:
                    rows.append({"patient_id": patient_id, "input": "T&L risk score", "value": float(score),
                                 "z": float("nan"), "training_min": low, "training_max": high,
                                 "message": f"T&L risk score {score:.3f} is outside the training patients' scores "
                                            f"({low:.3f} to {high:.3f})"})
        elif self.selector_ is not None and self.feature_inputs_:
            needed = [c for c in self.covariates_ if c in self.feature_inputs_]
            if needed:
                raw = numeric_columns(X, needed)
                standardized = self.selector_.transform(X, needed)
                center = np.array([self.center_[c] for c in needed])
                scale = np.array([self.scale_[c] for c in needed])
                z_values = standardized.to_numpy(float)
                compared = z_values * scale + center  # on the training scale (after ComBat when harmonized)
                low = np.array([self.training_range_[c][0] for c in needed])
                high = np.array([self.training_range_[c][1] for c in needed])
                missing = raw.isna().to_numpy()
                flagged = ~missing & ((np.abs(z_values) > z_bound) | (compared < low) | (compared > high))
                for i, k in zip(*np.nonzero(flagged), strict=True):
                    value, z = float(raw.iat[i, k]), float(z_values[i, k])
                    where = (f"{z:+.1f} training SDs from the training mean" if abs(z) > z_bound
                             else "outside the training range")
                    rows.append({"patient_id": X.index[i], "input": needed[k], "value": value, "z": z,
                                 "training_min": float(low[k]), "training_max": float(high[k]),
                                 "message": f"{needed[k]} = {value:.4g} is {where} (training {low[k]:.4g} to "
                                            f"{high[k]:.4g}, mean {center[k]:.4g}, SD {scale[k]:.4g})"})
        return pd.DataFrame(rows, columns=["patient_id", "input", "value", "z", "training_min", "training_max",
                                           "message"])

    def applicability(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each patient's place in the model's applicability domain (:mod:`hccrad.survival.domain`): ``distance``
        (Mahalanobis, on the model's covariates), its ``percentile`` among the training patients' leave-one-out
        distances, ``outside`` (beyond the domain's threshold percentile) and ``n_outside_range`` (inputs outside
        the training range, :meth:`extrapolation`). Empty values for an artifact without a domain (before hccrad
        recorded it)."""
        domain = getattr(self, "domain_", None)
        out = pd.DataFrame(index=X.index)
        flagged = self.extrapolation(X)
        out["n_outside_range"] = flagged.groupby("patient_id").size().reindex(X.index, fill_value=0).to_numpy()
        if domain is None:
            out["distance"], out["percentile"], out["outside"] = np.nan, np.nan, pd.NA
            return out
        design, _ = self.design(X)
        distance = domain_distance(domain, design.to_numpy(float))
        out["distance"] = distance
        out["percentile"] = domain_percentile(domain, distance)
        out["outside"] = outside_domain(domain, distance)
        return out

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

    def predict_survival_interval(self, X: pd.DataFrame, times: list[float] | None = None, level: float = 0.95,
                                  **kwargs) -> pd.DataFrame:
        """PFS probability at ``times`` (default the horizons) with a delta-method confidence interval.

        The variance of the predicted cumulative hazard is Tsiatis' (R's ``survfit.coxph``): the baseline
        hazard's own variance plus the coefficients' covariance carried through ``x H0(t) - B(t)``; the interval
        is log-log (``S ** exp(+-z se(log H))``). It covers the estimation of this model's coefficients and
        baseline, not the selection of its covariates; in score mode, not the T&L score's own uncertainty.
        Columns ``pfs_<t>m``, ``pfs_<t>m_ci_low``, ``pfs_<t>m_ci_high`` per time; one row per patient.
        """
        times = list(times or tuple(self.horizons_months))
        design, _ = self.design(X, **kwargs)
        rows = []
        for x in design.to_numpy(float):
            row = {}
            if getattr(self, "covariance_", None) is None:
                survival = survival_probability(self.baseline_times_, self.baseline_cumhaz_, np.array([x @ self.coef_]),
                                                times)[0]
                low = high = np.full(len(times), np.nan)
            else:
                cumhaz, variance = cumulative_hazard_variance(self.baseline_times_, self.baseline_cumhaz_,
                                                              self.hazard_terms_, self.mean_terms_, self.covariance_,
                                                              x, self.coef_, times)
                survival, low, high = survival_confidence_band(cumhaz, variance, level)
            for t, value, lo, hi in zip(times, survival, low, high, strict=True):
                row.update({f"pfs_{t:g}m": float(value), f"pfs_{t:g}m_ci_low": float(lo),
                            f"pfs_{t:g}m_ci_high": float(hi)})
            rows.append(row)
        return pd.DataFrame(rows, index=X.index)

    def contributions(self, X: pd.DataFrame, **kwargs) -> pd.DataFrame:
        """Each covariate's contribution to one patient's risk score: ``coef x (value - training mean)``.

        The contributions sum to the risk score minus the training patients' mean risk score, so a positive
        bar pushes this patient's risk above the average training patient's. Columns: covariate, value,
        training_mean, coef, contribution (first patient of ``X``).
        """
        design, _ = self.design(X.iloc[:1], **kwargs)
        values = design.to_numpy(float)[0]
        means = getattr(self, "covariate_means_", None)
        means = np.zeros(len(values)) if means is None else np.asarray(means, float)
        return pd.DataFrame({"covariate": self.covariates_, "value": values, "training_mean": means,
                             "coef": self.coef_, "contribution": self.coef_ * (values - means)})

    def risk_percentile(self, score: float) -> float:
        """Where ``score`` sits in the training patients' risk scores: percent of them at or below it
        (interpolated in the stored 0th-100th percentiles); NaN for an artifact without them."""
        percentiles = getattr(self, "training_risk_percentiles_", None)
        if percentiles is None:
            return float("nan")
        percentiles = np.asarray(percentiles, float)
        return float(np.interp(score, percentiles, np.arange(101.0), left=0.0, right=100.0))

    def risk_group(self, scores: np.ndarray) -> np.ndarray:
        """``high`` where the risk score is above the training cut-off, else ``low``; shape as ``scores``."""
        return np.where(np.asarray(scores) > self.cutoff_["value"], "high", "low")


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
