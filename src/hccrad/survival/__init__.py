"""Survival models: preprocessing, feature selection and the Cox models C, T, T&L and C-T&L."""

from hccrad.survival.config import ModelConfig
from hccrad.survival.model import CoxRiskModel, load_model, make_y
from hccrad.survival.study import fit_models, load_models, predict_patients

__all__ = ["CoxRiskModel", "ModelConfig", "fit_models", "load_model", "load_models", "make_y",
           "predict_patients"]
