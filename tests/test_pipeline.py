"""`hccrad run`: the whole study, reuse on a second run, the clinical-only real table, and the report in a
real headless browser."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.pipeline import run_study

from .conftest import ROOT, shared_path

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def demo_run(demo_cohort_features):
    study, _ = demo_cohort_features
    manifest = study.config.base_dir / "study.yaml"
    first = run_study(manifest, n_bootstrap=50)
    second = run_study(manifest, n_bootstrap=50)
    return manifest, first, second


def test_whole_study_runs_and_a_second_run_reuses_everything(demo_run):
    manifest, first, second = demo_run
    statuses = {record.name: record.status for record in first.stages}
    assert statuses["features"] == "reused"  # the fixture computed every case already
    assert statuses["fit"] == "ran" and statuses["evaluate"] == "ran" and statuses["report"] == "ran"
    again = {record.name: record.status for record in second.stages}
    assert again["features"] == "reused" and again["fit"] == "reused" and again["evaluate"] == "reused"
    out = manifest.parent / "output"
    summary = json.loads((out / "run_summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["validate", "segment", "features", "fit", "evaluate", "report"]
    assert all(s["seconds"] >= 0 for s in summary["stages"])
    log = (out / "hccrad-run.log").read_text()
    assert log.count("run of") == 2 and "stage fit: start" in log
    # On the demo cohort the image signal makes C-T&L beat C in the validation centers.
    concordance = pd.read_csv(out / "evaluation" / "tables" / "concordance.csv").set_index(["model", "dataset"])
    assert concordance.loc[("C-T&L", "validation"), "harrell_c"] > concordance.loc[("C", "validation"), "harrell_c"]


def test_report_has_every_section_with_content(demo_run):
    _, first, _ = demo_run
    text = first.report.read_text()
    for heading in ("1. Cohort", "2. CT acquisition", "3. Segmentation", "4. Features", "5. Models",
                    "6. Reproducibility"):
        assert heading in text
    for content in ("Baseline characteristics", "SIEMENS", "Quality control", "Supplementary Table 2",
                    "Supplementary Table 3", "Supplementary Figure 1", "Supplementary Table 4",
                    "Supplementary Figure 3", "Supplementary Figure 4", "Kaplan-Meier", "decision curves",
                    "manifest (sha256)", "lifelines"):
        assert content in text, content
    # Every patient's QC image is reachable from the cohort table.
    links = set(re.findall(r'href="#qc-([^"]+)"', text))
    anchors = set(re.findall(r'id="qc-([^"]+)"', text))
    assert len(links) == 120 and links <= anchors
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    # Every table of statistics at a horizon is captioned with the rule it was computed with (the default).
    from hccrad.evaluate.horizon import RULE_CAPTIONS

    assert text.count(html.escape(RULE_CAPTIONS["case"])) >= 9
    assert "not recorded" not in text
    report_dir = first.report.parent
    assert (report_dir / "tables" / "delong.csv").is_file()
    assert (report_dir / "figures" / "hazard_ratios.svg").is_file()


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: .ci/run must install Debian's chromium")
    pytest.skip("chromium not installed (apt-get install chromium)")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]


def test_report_in_a_real_headless_browser(demo_run, tmp_path):
    _, first, _ = demo_run
    browser = chromium()
    url = first.report.resolve().as_uri()
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'a'}", "--virtual-time-budget=10000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    decoded = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert decoded, "the page's load handler did not run"
    assert int(decoded.group(1)) == int(decoded.group(2)) > 100, decoded.groups()
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("ERROR" in line or
                                                                                         "Uncaught" in line)]
    assert not console_errors, console_errors
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-first-screen.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'b'}", "--window-size=1280,900",
                    f"--screenshot={shot}", url], capture_output=True, timeout=180, check=True)
    assert shot.stat().st_size > 20_000


def test_clinical_only_run_on_the_real_hcc_tace_seg_table(tmp_path):
    table = shared_path("reference", "clinical", "HCC-TACE-Seg_clinical_data-V2.xlsx")
    manifest = {
        "name": "HCC-TACE-Seg (clinical only)", "clinical_table": str(table), "sheet": "data table",
        "columns": {"patient_id": "TCIA_ID", "center": None, "ct": None, "mask": None, "portal_vein_diameter_mm": None,
                    "afp": "AFP", "child_pugh": "CPS", "bclc": "BCLC", "treatment": "chemotherapy",
                    "pfs_months": "TTP", "pfs_event": "Censored_0_progressed_1"},
        "value_maps": {"treatment": {"Cisplatin, doxorubicin, Mitomycin-C": "cTACE", "Cisplatin, Mitomycin-C": "cTACE",
                                     "Cisplastin": "cTACE", "doxorubicin LC beads": "DEB-TACE"}},
        "time_unit": "weeks", "default_center": "MDACC", "require_images": False,
        "split": {"validation_fraction": 0.3, "seed": 1}, "models": {"models": ["C"]}, "output_dir": "out",
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(manifest))
    result = CliRunner().invoke(app, ["run", str(path), "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    hazards = pd.read_csv(out / "models" / "C_hazard_ratios.csv")
    assert hazards["paper_factor"].tolist() == ["AFP level", "Child-Pugh grade", "BCLC stage", "Treatment style"]
    discrimination = pd.read_csv(out / "evaluation" / "tables" / "discrimination.csv")
    assert set(discrimination["horizon"]) == {6.0, 12.0} and set(discrimination["model"]) == {"C"}
    assert discrimination["auc_ipcw"].between(0.3, 1.0).all()
    assert (out / "evaluation" / "figures" / "km_C_validation.png").is_file()
    report = (out / "report" / "report.html").read_text()
    assert "clinical-only study" in report and "Kaplan-Meier risk groups" in report and "alt=\"C validation\"" in report
