"""Evaluation: time-dependent ROC, DeLong, calibration, decision curves, subgroups and risk groups."""
