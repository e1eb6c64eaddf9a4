"""Evaluation: time-dependent ROC, DeLong, calibration, decision curves, subgroups and risk groups."""

from hccrad.evaluate.study import Evaluation, EvaluationSettings, evaluate_study

__all__ = ["Evaluation", "EvaluationSettings", "evaluate_study"]
