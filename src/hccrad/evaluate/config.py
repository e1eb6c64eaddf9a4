"""The ``evaluation:`` section of the study YAML."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hccrad.evaluate.horizon import DEFAULT_RULE, EventAtHorizon


class EvaluationConfig(BaseModel):
    """The ``evaluation:`` section of the study YAML (unknown keys are refused); defaults as the paper's."""

    model_config = ConfigDict(extra="forbid")

    #: Bootstrap resamples of the confidence intervals (IPCW AUC, C-index, NRI/IDI).
    n_bootstrap: int = Field(default=500, ge=10)
    #: Risk groups of the grouped calibration plot.
    calibration_groups: int = Field(default=5, ge=2, le=20)
    #: Seed of every resampling of the evaluation.
    seed: int = 20240601
    #: Bootstrap resamples of the internal validation (Harrell's optimism, every fitted step repeated per
    #: resample); 0 (default) skips it: each resample refits the models, so 200 take hours on a full cohort.
    internal_validation_resamples: int = Field(default=0, ge=0)
    #: Who is a case at a horizon t, for every statistic (docs/evaluation.md, "Status at a horizon"): ``case``
    #: counts a progression exactly at t as a case (T <= t, as riskRegression and scikit-survival); ``timeroc``
    #: does not (T < t, to reproduce R's timeROC).
    event_at_horizon: EventAtHorizon = DEFAULT_RULE
    #: The smooth calibration's baseline hazard (docs/evaluation.md, "Calibration"): ``breslow`` (R ``coxph`` +
    #: ``survfit(ctype = 1)``) or ``efron`` (``survfit(ctype = 2)``, as rms); they differ only where times tie.
    calibration_baseline: Literal["breslow", "efron"] = "breslow"
