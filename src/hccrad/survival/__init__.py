"""Survival models: preprocessing, feature selection and the Cox models C, T, T&L and C-T&L.

The names below load on first use (PEP 562), so that reading the ``models:`` settings
(:mod:`hccrad.survival.config`) does not load the models' statistics libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ModelConfig": "hccrad.survival.config",
    "CoxRiskModel": "hccrad.survival.model",
    "load_model": "hccrad.survival.artifact",
    "make_y": "hccrad.survival.model",
    "fit_models": "hccrad.survival.study",
    "load_models": "hccrad.survival.study",
    "predict_patients": "hccrad.survival.study",
}

__all__ = ["CoxRiskModel", "ModelConfig", "fit_models", "load_model", "load_models", "make_y",
           "predict_patients"]

if TYPE_CHECKING:
    from hccrad.survival.artifact import load_model
    from hccrad.survival.config import ModelConfig
    from hccrad.survival.model import CoxRiskModel, make_y
    from hccrad.survival.study import fit_models, load_models, predict_patients


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hccrad.survival' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
