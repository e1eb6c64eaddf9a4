"""Synthetic multi-center HCC cohort: CTs, reference masks, clinical factors and outcomes with known truth."""

from hccrad.synth.cohort import CohortSpec, generate_cohort

__all__ = ["CohortSpec", "generate_cohort"]
