"""Shared fixtures: the shared reference folder and a small synthetic cohort built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a clear message when that folder is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not available: {path} (the ../shared folder beside the project)")
    return path


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Path:
    """Twelve synthetic patients (every center, NIfTI and DICOM), shared by the tests that only read it."""
    from hccrad.synth import CohortSpec, generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    return generate_cohort(out, CohortSpec(n_patients=12, seed=11, n_jobs=2))
