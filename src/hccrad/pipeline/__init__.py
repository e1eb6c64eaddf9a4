"""Orchestration of the stages for `hccrad run` and `hccrad demo`."""

from hccrad.pipeline.run import RunResult, run_study

__all__ = ["RunResult", "run_study"]
