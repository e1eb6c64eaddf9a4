"""Evaluation: time-dependent ROC, DeLong, calibration, decision curves, subgroups and risk groups."""

from hccrad.evaluate.study import Evaluation, EvaluationConfig, EvaluationSettings, evaluate_study

__all__ = ["Evaluation", "EvaluationConfig", "EvaluationSettings", "evaluate_study"]
