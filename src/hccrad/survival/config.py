"""Settings of the models stage (the ``models:`` section of the study YAML); defaults follow the paper."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hccrad.io.config import StudyConfig

MODEL_NAMES = ("C", "T", "T&L", "C-T&L")


class ClinicalCoding(BaseModel):
    """How the four clinical factors enter a Cox model (reference levels are stated in every output)."""

    model_config = ConfigDict(extra="forbid")

    afp: Literal["cutoff", "log10"] = "cutoff"
    #: Default: the study's ``afp_cutoff_ng_ml`` (400, the paper's); set here only to override it for the models.
    afp_cutoff_ng_ml: float | None = None
    child_pugh: Literal["ordinal", "dummy"] = "ordinal"
    bclc: Literal["ordinal", "dummy"] = "ordinal"
    treatment_reference: str | None = None  # default: the most frequent category in training


class ModelConfig(BaseModel):
    """Preprocessing, selection and model settings.

    Attributes
    ----------
    univariate_p
        Univariate Cox screen: keep features with Wald p below this.
    correlation_threshold
        Of each pair with |Pearson r| above this, keep the one more associated with PFS (larger |z|).
    max_mode_fraction
        A feature whose most frequent value covers more than this share of training patients is
        near-constant and removed.
    lasso_folds, lasso_rule
        LASSO-Cox (scikit-survival's Coxnet, glmnet's algorithm) with k-fold cross-validated partial
        likelihood deviance (glmnet's "grouped" deviance); ``lambda.min`` or ``lambda.1se``. The path runs
        from lambda_max down to ``lasso_alpha_min_ratio`` x lambda_max (glmnet's default for n < p).
    max_features
        At most this many penalised features enter the multivariable model: when the chosen lambda keeps
        more, the path step just before the path first keeps more is used.
    backward_aic
        Backward elimination of the multivariable model by AIC.
    c_tl_mode
        C-T&L: ``union`` selects over clinical + T&L features with the clinical factors forced in (as the
        paper implies); ``score`` uses the fitted T&L risk score as one covariate beside the clinical factors.
    risk_cutoff
        High/low risk groups: the training ``median`` risk score, ``maxstat`` (maximally selected log-rank
        statistic over the 10th-90th percentiles of training scores, with Lausen and Schumacher's corrected
        p-value), or a fixed number on the risk-score scale (the paper reports 1.06).
    harmonize
        ComBat harmonization of image features across centers (neuroCombat's model, fitted on training).
    """

    model_config = ConfigDict(extra="forbid")

    models: list[Literal["C", "T", "T&L", "C-T&L"]] = list(MODEL_NAMES)
    clinical: ClinicalCoding = ClinicalCoding()
    univariate_p: float = Field(default=0.05, gt=0, le=1)
    correlation_threshold: float = Field(default=0.9, gt=0, le=1)
    max_mode_fraction: float = Field(default=0.95, gt=0, le=1)
    lasso_folds: int = Field(default=10, ge=3)
    lasso_rule: Literal["lambda.min", "lambda.1se"] = "lambda.min"
    lasso_alpha_min_ratio: float = Field(default=0.01, gt=0, lt=1)
    max_features: int = Field(default=12, ge=1)
    backward_aic: bool = False
    c_tl_mode: Literal["union", "score"] = "union"
    risk_cutoff: Literal["median", "maxstat"] | float = "median"
    harmonize: bool = False
    seed: int = 20240601

    @model_validator(mode="before")
    @classmethod
    def _no_horizons_here(cls, data: Any) -> Any:
        if isinstance(data, dict) and "horizons_months" in data:
            if data["horizons_months"] is not None:
                raise ValueError("horizons_months is a study setting: set it once at the top level of the "
                                 "manifest (it is passed to the models and the evaluation)")
            data = {key: value for key, value in data.items() if key != "horizons_months"}  # older artifacts
        return data

    @classmethod
    def for_study(cls, study: StudyConfig) -> ModelConfig:
        """The ``models:`` section of a study, with the study's AFP cut-off unless the section sets its own."""
        config = cls.model_validate(study.models)
        if config.clinical.afp_cutoff_ng_ml is None:
            clinical = config.clinical.model_copy(update={"afp_cutoff_ng_ml": study.afp_cutoff_ng_ml})
            config = config.model_copy(update={"clinical": clinical})
        return config
