"""Orchestration of the stages for `hccrad run` and `hccrad demo`."""
