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


#: A reduced PyRadiomics set for tests that need a whole cohort's features quickly (114 per region).
FAST_COHORT_PARAMS = {
    "setting": {"binWidth": 25, "label": 1, "preCrop": True},
    "imageType": {"Original": {}, "LoG": {"sigma": [3]}},
    "featureClass": {"shape": None, "firstorder": None, "glcm": None, "glszm": None},
}


@pytest.fixture(scope="session")
def demo_cohort_features(tmp_path_factory):
    """The default 120-patient demo cohort (seed 7) with a reduced feature set: (study, feature table)."""
    import yaml

    from hccrad.features import extract_features
    from hccrad.io import load_study
    from hccrad.synth import CohortSpec, generate_cohort

    out = tmp_path_factory.mktemp("demo")
    manifest = generate_cohort(out, CohortSpec(n_patients=120, seed=7, n_jobs=2))
    (out / "fast.yaml").write_text(yaml.safe_dump(FAST_COHORT_PARAMS))
    settings = yaml.safe_load(manifest.read_text())
    settings["features"] = {"params": "fast.yaml", "n_workers": 2}
    manifest.write_text(yaml.safe_dump(settings))
    study = load_study(manifest)
    run = extract_features(study)
    assert run.failures.empty, run.failures
    return study, run.table


@pytest.fixture(scope="session")
def fitted_demo(demo_cohort_features, tmp_path_factory):
    """The four models fitted on the demo cohort's training centers: (study, table, FittedStudy)."""
    from hccrad.pipeline.stages import study_feature_settings
    from hccrad.survival import ModelConfig, fit_models

    study, table = demo_cohort_features
    out = tmp_path_factory.mktemp("models")
    return study, table, fit_models(table, ModelConfig(), out_dir=out, feature_settings=study_feature_settings(study))


@pytest.fixture
def chromium_webdriver():
    """A factory of headless Chromium sessions driven by selenium (Debian's chromium and chromium-driver); fails
    in CI when they are missing (.ci/run installs them), skips elsewhere. The caller quits the session."""
    import os
    import shutil

    def start():
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        driver_path = shutil.which("chromedriver")
        browser_path = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
        if driver_path is None or browser_path is None:
            if os.environ.get("CI"):
                pytest.fail("chromium and chromium-driver are not installed: .ci/run must install them")
            pytest.skip("chromium-driver not installed (apt-get install chromium chromium-driver)")
        options = webdriver.ChromeOptions()
        options.binary_location = browser_path
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2200",
                         "--disable-dev-shm-usage"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        return webdriver.Chrome(service=Service(driver_path), options=options)

    return start


def hcc_tace_settings(output_dir: Path | None = None) -> dict:
    """A clinical-only manifest of the real HCC-TACE-Seg table in ../shared (TTP in weeks, the event column coded
    1 = progressed), with a seeded random split; skips when the table is absent."""
    table = shared_path("reference", "clinical", "HCC-TACE-Seg_clinical_data-V2.xlsx")
    settings = {
        "name": "HCC-TACE-Seg", "clinical_table": str(table), "sheet": "data table",
        "columns": {"patient_id": "TCIA_ID", "center": None, "ct": None, "mask": None,
                    "portal_vein_diameter_mm": None, "afp": "AFP", "child_pugh": "CPS", "bclc": "BCLC",
                    "treatment": "chemotherapy", "pfs_months": "TTP", "pfs_event": "Censored_0_progressed_1"},
        "time_unit": "weeks", "default_center": "MDACC", "require_images": False,
        "split": {"validation_fraction": 0.3, "seed": 1},
    }
    if output_dir is not None:
        settings["output_dir"] = str(output_dir)
    return settings
