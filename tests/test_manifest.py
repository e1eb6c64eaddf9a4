"""Study manifest: every kind of bad row is reported with its row and field; real spreadsheets load."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.io import ManifestError, load_study
from hccrad.io.manifest import normalize_bclc, normalize_child_pugh

from .conftest import shared_path


def write_study(folder: Path, rows: list[dict], **settings) -> Path:
    """A manifest and clinical CSV in ``folder``; image paths are created when they start with 'img/'."""
    (folder / "img").mkdir(exist_ok=True)
    for row in rows:
        ct = row.get("ct")
        if isinstance(ct, str) and ct.startswith("img/"):
            (folder / ct).write_bytes(b"placeholder")
    pd.DataFrame(rows).to_csv(folder / "clinical.csv", index=False)
    manifest = {"name": "test", "clinical_table": "clinical.csv", "split": {"validation_centers": ["V"]}}
    manifest.update(settings)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def good_row(patient_id: str, center: str = "T", **changes) -> dict:
    row = {
        "patient_id": patient_id, "center": center, "ct": f"img/{patient_id}.nii.gz", "mask": "",
        "afp": "25.5", "child_pugh": "A", "bclc": "B", "treatment": "TACE", "pfs_months": "7.5", "pfs_event": "1",
    }
    row.update(changes)
    return row


def test_valid_study_loads_with_split(tmp_path):
    rows = [good_row("P1"), good_row("P2", child_pugh="8"), good_row("P3", center="V", bclc="Stage-C")]
    study = load_study(write_study(tmp_path, rows))
    assert study.ok, study.issues
    table = study.table()
    assert list(table.index) == ["P1", "P2", "P3"]
    assert table.loc["P2", "child_pugh"] == "B" and table.loc["P2", "child_pugh_score"] == 8
    assert table.loc["P3", "bclc"] == "C"
    assert table["dataset"].to_dict() == {"P1": "training", "P2": "training", "P3": "validation"}
    assert table.loc["P1", "ct"] == str((tmp_path / "img" / "P1.nii.gz").resolve())


def test_every_problem_is_reported_at_once_with_row_and_field(tmp_path):
    rows = [
        good_row("P1"),
        good_row("P2", ct="scans/missing.nii.gz"),  # row 3: missing file
        good_row("P1"),  # row 4: duplicate
        good_row("P4", bclc="E"),  # row 5: unknown category
        good_row("P5", pfs_months="-3"),  # row 6: negative time
        good_row("P6", pfs_event="2"),  # row 7: event not 0/1
        good_row("P7", afp="high"),  # row 8: AFP not a number
        good_row("P8", child_pugh="X", treatment="surgery"),  # row 9: two problems in one row
        good_row("P9", afp="", center="V"),  # row 10: missing AFP is only a warning
    ]
    study = load_study(write_study(tmp_path, rows, treatment_categories=["TACE", "TACE+systemic"]))
    found = {(issue.row, issue.field, issue.severity) for issue in study.issues}
    expected_errors = {
        (3, "ct"), (4, "patient_id"), (5, "bclc"), (6, "pfs_months"), (7, "pfs_event"), (8, "afp"),
        (9, "child_pugh"), (9, "treatment"),
    }
    for row, field in expected_errors:
        assert (row, field, "error") in found, (row, field, study.issues)
    assert (10, "afp", "warning") in found
    messages = {(issue.row, issue.field): issue.message for issue in study.issues}
    assert "duplicate identifier, also on row 2" in messages[(4, "patient_id")]
    assert "duplicate identifier, also on row 4" in messages[(2, "patient_id")]  # the first row has its own issue
    assert "'E'" in messages[(5, "bclc")] and "0, A, B, C, D" in messages[(5, "bclc")]
    assert "negative" in messages[(6, "pfs_months")]
    assert "'high' is not a number" in messages[(8, "afp")]
    # P1 is ambiguous (duplicate) and every row with an error is out; the warning row stays in.
    assert [p.patient_id for p in study.patients] == ["P9"]
    assert len(study.errors) == 9


def test_missing_image_file_is_an_error(tmp_path):
    path = write_study(tmp_path, [good_row("P1", center="V"), good_row("P2", ct="scans/nowhere.nii.gz")])
    study = load_study(path)
    (issue,) = study.errors
    assert (issue.row, issue.patient_id, issue.field) == (3, "P2", "ct")
    assert "file not found" in issue.message and "nowhere.nii.gz" in issue.message


def test_bad_yaml_is_a_manifest_error(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: x\nclinical_table: c.csv\nsplit: {validation_fraction: 1.5}\nunknown_key: 1\n")
    with pytest.raises(ManifestError) as info:
        load_study(path)
    assert "validation_fraction" in str(info.value) and "unknown_key" in str(info.value)


def test_random_split_is_seeded_and_stratified(tmp_path):
    rows = [good_row(f"P{i:02d}", center="AB"[i % 2], pfs_event=str(i // 2 % 2)) for i in range(40)]
    path = write_study(tmp_path, rows, split={"validation_fraction": 0.25, "seed": 5})
    first, second = load_study(path).table(), load_study(path).table()
    assert first["dataset"].equals(second["dataset"])
    validation = first[first["dataset"] == "validation"]
    assert len(validation) == 10
    # Four (center, event) strata of 10 patients: quotas of 2.5 each, remainders shared out to total 10.
    counts = validation.groupby(["center", "pfs_event"]).size()
    assert counts.min() >= 2 and counts.max() <= 3


def test_validate_command_prints_report_and_exits_nonzero(tmp_path):
    path = write_study(tmp_path, [good_row("P1", center="V"), good_row("P2", pfs_event="yes")])
    result = CliRunner().invoke(app, ["validate", str(path), "--report", str(tmp_path / "issues.csv")])
    assert result.exit_code == 1, result.output
    assert "pfs_event" in result.output and "P2" in result.output
    report = pd.read_csv(tmp_path / "issues.csv")
    errors = report[report["severity"] == "error"]
    assert errors[["row", "patient_id", "field"]].values.tolist() == [[3, "P2", "pfs_event"]]


def test_validate_command_passes_on_a_good_study(tmp_path):
    path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")])
    result = CliRunner().invoke(app, ["validate", str(path), "--no-acquisition"])
    assert result.exit_code == 0, result.output
    assert "2 valid patients (1 training, 1 validation), 0 errors" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("text", "stage"), [("Stage-A", "A"), ("bclc b", "B"), ("0", "0"), ("C", "C"), ("stage D", "D"), ("E", None)]
)
def test_bclc_spellings(text, stage):
    assert normalize_bclc(text) == stage


@pytest.mark.parametrize(
    ("value", "expected"),
    [("A", ("A", None)), ("Child-Pugh B", ("B", None)), ("5", ("A", 5)), (6.0, ("A", 6)), ("7", ("B", 7)),
     ("9", ("B", 9)), ("10", ("C", 10)), ("15", ("C", 15)), ("4", (None, None)), ("6.5", (None, None))],
)
def test_child_pugh_grades_from_scores(value, expected):
    assert normalize_child_pugh(value) == expected


def test_reads_the_real_hcc_tace_seg_table_with_week_conversion(tmp_path):
    table = shared_path("reference", "clinical", "HCC-TACE-Seg_clinical_data-V2.xlsx")
    manifest = {
        "name": "HCC-TACE-Seg",
        "clinical_table": str(table),
        "sheet": "data table",
        "columns": {
            "patient_id": "TCIA_ID", "center": None, "ct": None, "mask": None, "portal_vein_diameter_mm": None,
            "afp": "AFP", "child_pugh": "CPS", "bclc": "BCLC", "treatment": "chemotherapy",
            "pfs_months": "TTP", "pfs_event": "Censored_0_progressed_1",
        },
        "time_unit": "weeks",
        "default_center": "MDACC",
        "require_images": False,
        "split": {"validation_fraction": 0.3, "seed": 1},
    }
    path = tmp_path / "tace.yaml"
    path.write_text(yaml.safe_dump(manifest))
    study = load_study(path)
    assert study.ok, study.errors[:5]
    assert len(study.patients) == 105
    raw = pd.read_excel(table, sheet_name="data table").set_index("TCIA_ID")
    loaded = study.table()
    # TTP in weeks -> months: 1 week = 7 / 30.4375 months.
    assert loaded.loc["HCC_001", "pfs_months"] == pytest.approx(raw.loc["HCC_001", "TTP"] * 7 / 30.4375)
    assert loaded["pfs_event"].sum() == raw["Censored_0_progressed_1"].sum() == 45
    assert loaded["bclc"].value_counts().to_dict() == {"C": 66, "B": 24, "A": 12, "D": 3}
    assert loaded["child_pugh"].value_counts().to_dict() == {"A": 86, "B": 18, "C": 1}
    # 17 patients have no chemotherapy regimen: kept, each with a warning naming the row.
    treatment_warnings = [i for i in study.warnings if i.field == "treatment"]
    assert len(treatment_warnings) == 17 and loaded["treatment"].isna().sum() == 17
    assert loaded.loc["HCC_001", "afp"] == pytest.approx(raw.loc["HCC_001", "AFP"])


def test_validate_checks_the_stage_sections(tmp_path):
    path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")],
                       features={"params": "missing.yaml"}, models={"lasso_rule": "lambda.max"})
    result = CliRunner().invoke(app, ["validate", str(path), "--no-acquisition", "--report", str(tmp_path / "i.csv")])
    assert result.exit_code == 1
    issues = pd.read_csv(tmp_path / "i.csv").set_index("field")
    assert "parameter file not found" in issues.loc["features", "message"]
    assert "lasso_rule" in issues.loc["models", "message"]


def test_a_duplicated_header_is_an_error_naming_both_columns(tmp_path):
    """Two afp columns, the first all 999: without the check every patient would silently get AFP >= 400."""
    path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")])
    csv = tmp_path / "clinical.csv"
    lines = csv.read_text().splitlines()
    lines = [lines[0] + ",afp"] + [line + ",25.5" for line in lines[1:]]
    csv.write_text("\n".join(lines).replace(",25.5,", ",999,", 2) + "\n")
    study = load_study(path)
    assert not study.patients
    [issue] = study.errors
    assert issue.field == "clinical_table"
    assert "'afp' is the name of columns 5, 11" in issue.message and str(csv) in issue.message
    result = CliRunner().invoke(app, ["validate", str(path), "--no-acquisition"], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and "columns 5, 11" in result.output


def test_a_byte_order_mark_is_stripped(tmp_path):
    path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")])
    csv = tmp_path / "clinical.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    study = load_study(path)
    assert study.ok, study.issues
    assert sorted(study.table().index) == ["P1", "P2"]


def test_an_xlsx_header_is_read_as_the_csv_one(tmp_path):
    rows = [good_row("P1"), good_row("P2", center="V")]
    path = write_study(tmp_path, rows, clinical_table="clinical.xlsx")
    pd.DataFrame(rows).rename(columns={"afp": " afp "}).to_excel(tmp_path / "clinical.xlsx", index=False)
    study = load_study(path)
    assert study.ok, study.issues
    assert study.table().loc["P1", "afp"] == 25.5


def test_center_spellings_that_differ_in_case_or_spacing_are_errors_with_the_remedy(tmp_path):
    """A validation-center patient typed 'v' would otherwise be a training patient of a center 'v'."""
    rows = [good_row("P1"), good_row("P2", center="V"), good_row("P3", center="V"), good_row("P4", center="v")]
    path = write_study(tmp_path, rows)
    study = load_study(path)
    [issue] = [i for i in study.errors if i.field == "center"]
    assert issue.row == 5 and issue.patient_id == "P4"
    assert "'v' is another spelling of 'V'" in issue.message and "value_maps: {center: {'v': 'V'}}" in issue.message
    assert "'V' on rows 3, 4; 'v' on row 5" in issue.message
    table = study.table()
    assert "P4" not in table.index and set(table["center"]) == {"T", "V"}
    # Mapped in the manifest, the row counts for its center.
    study = load_study(write_study(tmp_path, rows, value_maps={"center": {"v": "V"}}))
    assert study.ok, study.issues
    assert study.table().loc["P4", "dataset"] == "validation"


def test_split_centers_must_match_the_tables_spelling_and_training_centers_cover_every_center(tmp_path):
    rows = [good_row("P1"), good_row("P2", center="V"), good_row("P3", center="X")]
    study = load_study(write_study(tmp_path, rows, split={"validation_centers": ["v"]}))
    messages = [i.message for i in study.errors if i.field == "split"]
    assert messages == ["validation center 'v' has no patient; the table spells it 'V': write that in the manifest"]
    study = load_study(write_study(tmp_path, rows, split={"validation_centers": ["V"], "training_centers": ["T"]}))
    [issue] = [i for i in study.errors if i.field == "center"]
    assert issue.patient_id == "P3" and "neither split.training_centers nor split.validation_centers" in issue.message
    assert study.table()["dataset"].to_dict() == {"P1": "training", "P2": "validation"}
    with pytest.raises(ManifestError, match="both training_centers and validation_centers"):
        load_study(write_study(tmp_path, rows, split={"validation_centers": ["V"], "training_centers": ["V"]}))


def test_validate_refuses_a_parameter_file_before_any_case_runs(tmp_path):
    """What PyRadiomics would refuse, and what the fast engine cannot reproduce, is said by `validate`."""
    (tmp_path / "lbp.yaml").write_text(yaml.safe_dump({"imageType": {"Original": {}, "LBP2D": {}}}))
    (tmp_path / "sigma.yaml").write_text(yaml.safe_dump({"imageType": {"LoG": {"sigma": [0, 2]}}}))
    for name, engine, words in (("lbp.yaml", "hccrad", "image type 'LBP2D' is not implemented in the engine"),
                                ("sigma.yaml", "auto", "Path: '/imageType/LoG/sigma/0'")):
        path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")],
                           features={"params": name, "engine": engine})
        result = CliRunner().invoke(app, ["validate", str(path), "--no-acquisition", "--report",
                                          str(tmp_path / "i.csv")])
        assert result.exit_code == 1
        assert words in pd.read_csv(tmp_path / "i.csv").set_index("field").loc["features", "message"]
    # engine: auto leaves LBP2D to PyRadiomics: the same file is valid
    path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")], features={"params": "lbp.yaml"})
    assert CliRunner().invoke(app, ["validate", str(path), "--no-acquisition"]).exit_code == 0


@pytest.mark.parametrize(("text", "words"), [("nan", "is not a number"), ("-Infinity", "is not a number"),
                                             ("1_000", "'_' is not a digit separator"),
                                             ("\uff15\uff12\uff10", "digits 0-9"), ("1e400", "too large")])
def test_numbers_pythons_float_reads_but_no_one_types_are_refused(text, words):
    from hccrad.io.manifest import parse_number

    assert float(text) is not None  # Python itself reads every one of them
    with pytest.raises(ValueError, match=words):
        parse_number(text)


def test_an_implausible_afp_in_the_table_is_an_error_and_minus_zero_is_zero(tmp_path):
    rows = [good_row("P1", afp="2e7"), good_row("P2", center="V", afp="-0")]
    study = load_study(write_study(tmp_path, rows))
    [issue] = study.errors
    assert issue.patient_id == "P1" and issue.field == "afp" and "above the plausible maximum of 1e+07" in issue.message
    assert str(study.table().loc["P2", "afp"]) == "0.0"
