"""Evaluation: time-dependent ROC, DeLong, calibration, decision curves, subgroups and risk groups.

The names below load on first use (PEP 562), so that reading the ``evaluation:`` settings
(:mod:`hccrad.evaluate.config`) does not load the statistics and plotting libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "EvaluationConfig": "hccrad.evaluate.config",
    "Evaluation": "hccrad.evaluate.study",
    "EvaluationSettings": "hccrad.evaluate.study",
    "evaluate_study": "hccrad.evaluate.study",
}

__all__ = ["Evaluation", "EvaluationConfig", "EvaluationSettings", "evaluate_study"]

if TYPE_CHECKING:
    from hccrad.evaluate.config import EvaluationConfig
    from hccrad.evaluate.study import Evaluation, EvaluationSettings, evaluate_study


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hccrad.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
