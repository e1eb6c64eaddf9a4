"""The two fitted preprocessing steps of a Cox model, as scikit-learn-style transformers with typed fitted state.

* :class:`ClinicalCoder` codes AFP, Child-Pugh, BCLC and treatment as covariates (reference levels and
  imputation values learned on training patients).
* :class:`RadiomicsSelector` takes a model's image features (tumor and/or remnant liver), imputes, removes
  near-constant ones, optionally harmonizes them across centers (ComBat), standardizes, and selects with the
  univariate Cox screen, the correlation filter and the cross-validated LASSO-Cox. Everything is learned on the
  training patients given to ``fit``.

:class:`hccrad.survival.model.CoxRiskModel` composes them with the multivariable Cox fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from hccrad.survival.clinical import encode, fit_coding
from hccrad.survival.config import ClinicalCoding, ModelConfig
from hccrad.survival.coxmath import univariate_cox
from hccrad.survival.harmonize import apply_combat, fit_combat
from hccrad.survival.selection import SelectionLog, correlation_filter, lasso_cox_cv, near_constant


class ClinicalSpec(TypedDict):
    """The fitted clinical coding (stored as the artifact's ``clinical_coding``)."""

    afp: str                      # "cutoff" or "log10"
    afp_cutoff_ng_ml: float
    child_pugh: str               # "ordinal" or "dummy"
    bclc: str
    treatment_reference: str | None
    treatment_levels: list[str]
    child_pugh_levels: list[str]
    bclc_levels: list[str]
    impute: dict[str, float]      # per coded column: training median (AFP, log10) or mode


class LassoSummary(TypedDict):
    """The LASSO-Cox path and its cross-validation (stored as the artifact's ``lasso``)."""

    alphas: list[float]
    cv_mean: list[float]
    cv_se: list[float]
    alpha_min: float
    alpha_1se: float
    alpha_chosen: float


@dataclass
class FeaturePreprocessing:
    """What the selector learned about its input features, all from training patients.

    Attributes
    ----------
    inputs
        The features read from a patient (after removing empty and near-constant ones).
    impute
        Training median of each input.
    center, scale
        Training mean and population SD of each input (standardization: (x - center) / scale).
    training_range
        Training (min, max) of each input, for the extrapolation check.
    combat
        ComBat parameters per center (neuroCombat's model), or None without harmonization.
    """

    inputs: list[str] = field(default_factory=list)
    impute: dict[str, float] = field(default_factory=dict)
    center: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    training_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    combat: dict[str, Any] | None = None


class ClinicalCoder(TransformerMixin, BaseEstimator):
    """Code the four clinical factors as Cox covariates.

    Parameters
    ----------
    coding
        :class:`ClinicalCoding` (default: the paper's: AFP >= 400 ng/mL, ordinal Child-Pugh and BCLC).

    Attributes
    ----------
    spec_ : ClinicalSpec
        Levels, reference categories and imputation values learned in ``fit``.
    """

    def __init__(self, coding: ClinicalCoding | None = None):
        self.coding = coding

    def fit(self, X: pd.DataFrame, y: Any = None) -> ClinicalCoder:
        """Learn the coding from training patients ``X`` (columns afp, child_pugh, bclc, treatment)."""
        self.spec_: ClinicalSpec = fit_coding(X, self.coding if self.coding is not None else ClinicalCoding())
        return self

    @classmethod
    def from_spec(cls, spec: ClinicalSpec) -> ClinicalCoder:
        """A fitted coder from a stored specification."""
        coder = cls()
        coder.spec_ = spec
        return coder

    def transform(self, X: pd.DataFrame, impute: bool = True) -> pd.DataFrame:
        """The coded covariates of ``X`` (one row per patient); missing values are imputed unless ``impute``
        is False (then they stay NaN)."""
        return encode(X, self.spec_, impute=self.spec_["impute"] if impute else None)


class RadiomicsSelector(BaseEstimator):
    """Preprocess and select a model's image features on training data.

    Parameters
    ----------
    families
        Feature families read: ``T`` (tumor) and/or ``L`` (remnant liver), see
        :func:`hccrad.survival.families.feature_family`.
    config
        Selection settings (:class:`ModelConfig`; default the paper's).

    Attributes
    ----------
    preprocessing_ : FeaturePreprocessing
    lasso_ : LassoSummary
    selected_ : list[str]
        The features the LASSO kept (at least one: the strongest univariate one when it keeps none).
    """

    def __init__(self, families: tuple[str, ...] = ("T", "L"), config: ModelConfig | None = None,
                 robustness: dict | None = None):
        self.families = families
        self.config = config
        #: ``{"icc_form", "min_icc", "icc": {feature: ICC}, ...}``: candidates below ``min_icc`` (or without an
        #: ICC) are removed first, before any other step; None: no filter.
        self.robustness = robustness

    def fit(self, X: pd.DataFrame, y: np.ndarray, clinical: pd.DataFrame | None = None,
            log: SelectionLog | None = None) -> RadiomicsSelector:
        """Learn preprocessing and selection from training patients.

        Parameters
        ----------
        X
            Training patients: feature columns (and ``center`` when harmonizing).
        y
            Structured survival array (``event``, ``time`` in months), shape (n,).
        clinical
            Coded clinical covariates, forced into the LASSO unpenalized (C-T&L), or None.
        log
            Selection log that each step writes to.
        """
        from hccrad.survival.families import feature_family

        config = self.config if self.config is not None else ModelConfig()
        log = log if log is not None else SelectionLog()
        clinical = clinical if clinical is not None else pd.DataFrame(index=X.index)
        time, event = np.asarray(y["time"], float), np.asarray(y["event"], int)
        candidates = [c for c in X.columns if feature_family(c) in set(self.families)]
        if self.robustness:
            candidates = _robust_candidates(candidates, self.robustness, log)
        numeric = numeric_columns(X, candidates)
        empty = [c for c in candidates if numeric[c].isna().all()]
        for column in empty:
            log.add("missing", column, "removed", note="no value in training")
        numeric = numeric.drop(columns=empty)
        medians = numeric.median()
        impute = medians.to_dict()
        values = numeric.to_numpy(float)
        if np.isnan(values).any():
            fill = medians.to_numpy(float)
            numeric = pd.DataFrame(np.where(np.isnan(values), fill[None, :], values), index=numeric.index,
                                   columns=numeric.columns)
        constant = near_constant(numeric, config.max_mode_fraction)
        for column in constant:
            log.add("near_constant", column, "removed", "mode share",
                    numeric[column].value_counts(normalize=True).iloc[0])
        numeric = numeric.drop(columns=constant)
        combat = None
        if config.harmonize:
            combat = _finite_combat(fit_combat(numeric, X["center"]))
            numeric[combat["features"]] = apply_combat(numeric, X["center"], combat)
            log.add("harmonize", "-", "note", note=f"ComBat over centers {combat['centers']} on "
                    f"{len(combat['features'])} features")
        self.preprocessing_ = FeaturePreprocessing(
            inputs=list(numeric.columns), impute=impute, center=numeric.mean().to_dict(),
            scale=numeric.std(ddof=0).to_dict(),
            training_range=dict(zip(numeric.columns, zip(numeric.min().astype(float).tolist(),
                                                         numeric.max().astype(float).tolist(), strict=True),
                                    strict=True)),
            combat=combat)
        standardized = self._standardize(numeric)

        screen = univariate_cox(standardized.to_numpy(), time, event)
        z = pd.Series(screen.z, index=standardized.columns)
        p = pd.Series(screen.p, index=standardized.columns)
        passed = p[p < config.univariate_p].index.tolist()
        for column in standardized.columns:
            log.add("univariate", column, "kept" if column in passed else "removed", "p", p[column])
        if not passed:
            passed = [p.idxmin()]
            log.add("univariate", passed[0], "kept", "p", p[passed[0]],
                    f"no feature below p {config.univariate_p}: the strongest one is kept")
        survivors = correlation_filter(standardized[passed], z, config.correlation_threshold, log)
        lasso = lasso_cox_cv(clinical.join(standardized[survivors]), time, event, list(clinical.columns), config,
                             log)
        self.lasso_: LassoSummary = {
            "alphas": lasso.alphas.tolist(), "cv_mean": lasso.cv_mean.tolist(), "cv_se": lasso.cv_se.tolist(),
            "alpha_min": lasso.alpha_min, "alpha_1se": lasso.alpha_1se, "alpha_chosen": lasso.alpha_chosen}
        selected = [c for c in survivors if lasso.coefficients[c] != 0]
        if not selected:
            best = max(survivors, key=lambda c: abs(z[c]))
            selected = [best]
            log.add("lasso", best, "kept", note="LASSO kept no feature: the strongest univariate one is used")
        self.selected_ = selected
        return self

    @classmethod
    def from_state(cls, preprocessing: FeaturePreprocessing, lasso: LassoSummary | None) -> RadiomicsSelector:
        """A fitted selector from stored preprocessing (its selection lives in the model's covariates)."""
        selector = cls()
        selector.preprocessing_ = preprocessing
        selector.lasso_ = lasso
        return selector

    def _standardize(self, filled: pd.DataFrame) -> pd.DataFrame:
        state = self.preprocessing_
        center = np.array([state.center[c] for c in filled.columns], float)
        scale = np.array([state.scale[c] for c in filled.columns], float)
        return pd.DataFrame((filled.to_numpy(float) - center) / scale, index=filled.index, columns=filled.columns)

    def transform(self, X: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
        """Input features of ``X`` imputed, harmonized (when fitted so) and standardized.

        ``columns`` (default: every input) limits the work to the features a prediction needs; each feature's
        preprocessing is its own, so the values do not depend on which others are computed.
        """
        state = self.preprocessing_
        columns = list(state.inputs) if columns is None else list(columns)
        raw = numeric_columns(X, columns)
        values = raw.to_numpy(float)
        missing = np.isnan(values)
        if missing.any():
            fill = np.array([state.impute[c] for c in columns], float)
            values = np.where(missing, fill[None, :], values)
        filled = pd.DataFrame(values, index=X.index, columns=columns)
        if state.combat:
            wanted = set(columns)
            index = [i for i, c in enumerate(state.combat["features"]) if c in wanted]
            if index:
                subset = _combat_subset(state.combat, index)
                filled[subset["features"]] = apply_combat(filled, X["center"], subset)
        return self._standardize(filled)


def _robust_candidates(candidates: list[str], robustness: dict, log: SelectionLog) -> list[str]:
    """The candidates whose ICC reaches ``min_icc``; each removed one logged with its ICC (NaN: no ICC, i.e. the
    feature was constant over every perturbation and patient, or not in the robustness table)."""
    form, threshold, icc = robustness["icc_form"], float(robustness["min_icc"]), robustness["icc"]
    kept = []
    for column in candidates:
        value = float(icc.get(column, float("nan")))
        if np.isfinite(value) and value >= threshold:
            kept.append(column)
        else:
            log.add("robustness", column, "removed", form, value,
                    f"{form} below {threshold:g}" if np.isfinite(value) else "no ICC (constant, or not measured)")
    return kept


def numeric_columns(X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``X``'s ``columns`` as floats (absent columns and unparseable or infinite values are NaN), shape
    (n, len(columns)). Numeric columns are taken as they are; only the others go through ``pd.to_numeric``."""
    frame = X.reindex(columns=columns)
    text = list(frame.select_dtypes(exclude=["number", "bool"]).columns)
    if text:
        frame = frame.copy()
        frame[text] = frame[text].apply(pd.to_numeric, errors="coerce")
    values = frame.to_numpy(float)
    values[~np.isfinite(values)] = np.nan
    return pd.DataFrame(values, index=X.index, columns=columns)


def _combat_subset(params: dict[str, Any], index: list[int]) -> dict[str, Any]:
    """ComBat parameters restricted to the features at positions ``index`` (each feature's are its own)."""
    pick = lambda values: [values[i] for i in index]  # noqa: E731
    return {**params, "features": pick(params["features"]), "mean": pick(params["mean"]), "sd": pick(params["sd"]),
            "gamma": {c: pick(v) for c, v in params["gamma"].items()},
            "delta": {c: pick(v) for c, v in params["delta"].items()}}


def _finite_combat(params: dict[str, Any]) -> dict[str, Any]:
    """Keep only the features whose ComBat parameters are all finite (a feature constant within a center
    has none); those are left unharmonized."""
    arrays = [params["mean"], params["sd"], *params["gamma"].values(), *params["delta"].values()]
    ok = np.all([np.isfinite(np.asarray(a, float)) for a in arrays], axis=0) & (np.asarray(params["sd"]) > 0)
    ok &= np.all([np.asarray(d, float) > 0 for d in params["delta"].values()], axis=0)
    return _combat_subset(params, np.where(ok)[0].tolist())
