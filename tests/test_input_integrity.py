"""Bad input never gives a silently wrong result: each fault is reproduced and must give a clear error (or QC
warning) naming the file, field and expectation, while the other cases' results stay unchanged."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.io import load_study
from hccrad.io.ids import UnsafePatientId, case_path, patient_id_problem
from hccrad.io.images import ImageReadError, choose_series, list_dicom_series, read_image
from hccrad.io.manifest import CensoredValue, parse_number
from hccrad.synth.anatomy import Grid
from hccrad.synth.centers import profile_for
from hccrad.synth.writers import write_dicom_series

from .test_manifest import good_row, write_study

FIRSTORDER_ONLY = {"setting": {"binWidth": 25, "label": 1, "preCrop": True}, "imageType": {"Original": {}},
                   "featureClass": {"firstorder": None}}


# --- patient ids ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("patient_id", ["../../evil", "A/B", "..\\models\\C", ".hidden", "", " P1", "P\x07",
                                        "a:b", "x" * 200])
def test_unsafe_patient_ids_are_manifest_errors(tmp_path, patient_id):
    rows = [good_row("P0"), good_row("P9", center="V"), {**good_row("PX"), "patient_id": patient_id}]
    study = load_study(write_study(tmp_path, rows))
    problems = [issue for issue in study.errors if issue.field == "patient_id" and issue.row == 4]
    assert len(problems) == 1, study.issues
    assert sorted(p.patient_id for p in study.patients) == ["P0", "P9"]


def test_ids_differing_only_in_case_are_refused_on_both_rows(tmp_path):
    study = load_study(write_study(tmp_path, [good_row("p1"), good_row("P1"), good_row("P2", center="V")]))
    messages = {issue.row: issue.message for issue in study.errors}
    assert set(messages) == {2, 3} and "differs only in case" in messages[2] and "row 3 ('P1')" in messages[2]
    assert [p.patient_id for p in study.patients] == ["P2"]


def test_case_paths_never_leave_their_folder(tmp_path):
    assert case_path(tmp_path, "HCC-001", ".json") == tmp_path / "HCC-001.json"
    for unsafe in ("../../models/C", "A/B", ".."):
        assert patient_id_problem(unsafe) is not None
        with pytest.raises(UnsafePatientId):
            case_path(tmp_path, unsafe, ".json")


# --- clinical values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("1234", 1234.0), ("12,5", 12.5), ("0,125", 0.125), ("1,234.5", 1234.5), ("1.234,5", 1234.5),
    ("1,234,567", 1234567.0), ("1.234.567", 1234567.0), ("1.2345", 1.2345), ("0.125", 0.125), ("1 234", 1234.0),
    ("-3", -3.0),
    ("2.5e3", 2500.0),
])
def test_number_rule(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["1,234", "1.234", "1.000", "12 34", "1,2,3", "1.234,56.7", "abc", ""])
def test_ambiguous_or_unreadable_numbers_are_refused(text):
    with pytest.raises(ValueError):
        parse_number(text)


def test_clinical_table_values(tmp_path):
    rows = [
        good_row("P1", afp="1,234"),          # row 2: ambiguous separator
        good_row("P2", afp="12,5"),           # row 3: decimal comma, read as 12.5
        good_row("P3", afp="<20"),            # row 4: a bound
        good_row("P4", pfs_months="1e9"),     # row 5: impossible follow-up
        good_row("P5", pfs_months="300"),     # row 6: 25 years: kept, with a warning
        good_row("P6", center="V", afp="1 500"),
    ]
    study = load_study(write_study(tmp_path, rows))
    errors = {(issue.row, issue.field): issue.message for issue in study.errors}
    warnings = {(issue.row, issue.field): issue.message for issue in study.warnings}
    assert "ambiguous" in errors[(2, "afp")] and "1234" in errors[(2, "afp")] and "1.234" in errors[(2, "afp")]
    assert "bound" in errors[(4, "afp")] and "censored_values: limit" in errors[(4, "afp")]
    assert "plausible" in errors[(5, "pfs_months")]
    assert "unusually long" in warnings[(6, "pfs_months")]
    table = study.table()
    assert table.loc["P2", "afp"] == 12.5 and table.loc["P6", "afp"] == 1500.0
    # With censored_values: limit the bound's number is used, and the row says so.
    study = load_study(write_study(tmp_path, rows, censored_values="limit"))
    assert study.table().loc["P3", "afp"] == 20.0
    assert any(i.row == 4 and i.severity == "warning" and "limit 20" in i.message for i in study.issues)


def test_unknown_keys_in_the_evaluation_section_are_refused(tmp_path):
    path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")], evaluation={"n_bootstrapp": 9999})
    result = CliRunner().invoke(app, ["validate", str(path), "--no-acquisition", "--report",
                                      str(tmp_path / "issues.csv")])
    assert result.exit_code == 1
    issues = pd.read_csv(tmp_path / "issues.csv")
    (message,) = issues.loc[issues["field"] == "evaluation", "message"]
    assert message == "unknown key `evaluation.n_bootstrapp`; did you mean `evaluation.n_bootstrap`?"


# --- images --------------------------------------------------------------------------------------------------


def _case(folder: Path, name: str, ct: np.ndarray, labels: np.ndarray, dtype=np.int16) -> tuple[str, str]:
    image = sitk.GetImageFromArray(ct.astype(dtype))
    image.SetSpacing((1.5, 1.5, 3.0))
    mask = sitk.GetImageFromArray(labels.astype(np.uint8))
    mask.CopyInformation(image)
    sitk.WriteImage(image, str(folder / f"{name}_ct.nii.gz"))
    sitk.WriteImage(mask, str(folder / f"{name}_mask.nii.gz"))
    return f"{name}_ct.nii.gz", f"{name}_mask.nii.gz"


def _phantom(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((16, 40, 40))
    labels = np.zeros(z.shape, np.uint8)
    labels[((z - 8) / 6) ** 2 + ((y - 20) / 14) ** 2 + ((x - 20) / 14) ** 2 < 1] = 1
    labels[((z - 8) / 3) ** 2 + ((y - 20) / 5) ** 2 + ((x - 18) / 5) ** 2 < 1] = 2
    body = ((y - 20) / 19) ** 2 + ((x - 20) / 19) ** 2 < 1
    ct = np.where(labels == 1, 110.0, np.where(labels == 2, 60.0, np.where(body, 0.0, -1000.0)))
    return ct + rng.normal(0, 12, ct.shape), labels


def _features_study(folder: Path, cases: dict[str, tuple[str, str]]) -> Path:
    rows = [good_row(pid, center="V" if k % 2 else "T", ct=ct, mask=mask)
            for k, (pid, (ct, mask)) in enumerate(cases.items())]
    pd.DataFrame(rows).to_csv(folder / "clinical.csv", index=False)
    (folder / "fast.yaml").write_text(yaml.safe_dump(FIRSTORDER_ONLY))
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "name": "integrity", "clinical_table": "clinical.csv", "split": {"validation_centers": ["V"]},
        "output_dir": "out", "features": {"params": "fast.yaml", "n_workers": 1, "min_tumor_voxels": 5}}))
    return folder / "study.yaml"


def test_bad_images_fail_per_case_with_clear_errors_and_leave_the_others_unchanged(tmp_path):
    ct, labels = _phantom(1)
    cases = {"GOOD": _case(tmp_path, "good", ct, labels)}
    # a truncated gzip file
    cases["TRUNC"] = _case(tmp_path, "trunc", ct, labels)
    data = (tmp_path / "trunc_ct.nii.gz").read_bytes()
    (tmp_path / "trunc_ct.nii.gz").write_bytes(data[: len(data) // 2])
    # a gzip stream that ends cleanly but holds half the voxels
    cases["SHORT"] = _case(tmp_path, "short", ct, labels)
    raw = gzip.decompress((tmp_path / "short_ct.nii.gz").read_bytes())
    (tmp_path / "short_ct.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    # half the tumor labelled 7
    relabelled = labels.copy()
    relabelled[:8][relabelled[:8] == 2] = 7
    cases["LABEL7"] = _case(tmp_path, "label7", ct, relabelled)
    # a raw image without its rescale (0..4095)
    cases["RAW"] = _case(tmp_path, "raw", ct + 1024, labels)
    # an all-NaN float image
    cases["NANS"] = _case(tmp_path, "nan", np.full(ct.shape, np.nan), labels, dtype=np.float32)
    # a tumor mask lying in air
    in_air = labels.copy()
    in_air[in_air == 2] = 1
    in_air[7:10, 1:4, 1:4] = 2
    cases["AIR"] = _case(tmp_path, "air", ct, in_air)
    # a dense (bone-like) tumor: computed, with a QC warning
    dense = np.where(labels == 2, 700.0, ct)
    cases["DENSE"] = _case(tmp_path, "dense", dense, labels)

    result = CliRunner().invoke(app, ["features", str(_features_study(tmp_path, cases))])
    assert result.exit_code == 1, result.output
    issues = pd.read_csv(tmp_path / "out" / "features" / "failures.csv")
    errors = issues[issues["severity"] == "error"].set_index("patient_id")["error"].to_dict()
    assert set(errors) == {"TRUNC", "SHORT", "LABEL7", "RAW", "NANS", "AIR"}, errors
    assert "trunc_ct.nii.gz is truncated or corrupt" in errors["TRUNC"]
    assert "short_ct.nii.gz is truncated" in errors["SHORT"] and "header describes" in errors["SHORT"]
    assert "labels [7] are not in the case's convention" in errors["LABEL7"] and "7 (" in errors["LABEL7"]
    assert "tumor [2]" in errors["LABEL7"] and "masks: {labels: {tumor: [2, 7]}}" in errors["LABEL7"]
    assert "not in HU" in errors["RAW"] and "rescale" in errors["RAW"]
    assert "nan_ct.nii.gz holds" in errors["NANS"] and "NaN or infinite voxels" in errors["NANS"]
    assert "Tumor mean attenuation" in errors["AIR"] and "air" in errors["AIR"]
    warnings = issues[issues["severity"] == "warning"]
    assert warnings["patient_id"].tolist() == ["DENSE"] and "bone, metal or lipiodol" in warnings["error"].iloc[0]
    table = pd.read_parquet(tmp_path / "out" / "features" / "features.parquet")
    assert sorted(table.index) == ["DENSE", "GOOD"]
    # The good case's features are those of a study holding it alone.
    alone = tmp_path / "alone"
    alone.mkdir()
    only = {"GOOD": _case(alone, "good", ct, labels), "GOOD2": _case(alone, "good2", *_phantom(2))}
    assert CliRunner().invoke(app, ["features", str(_features_study(alone, only))]).exit_code == 0
    reference = pd.read_parquet(alone / "out" / "features" / "features.parquet")
    columns = [c for c in table.columns if c.startswith(("Tumor_", "Rliver_"))]
    pd.testing.assert_series_equal(table.loc["GOOD", columns], reference.loc["GOOD", columns])


def _write_nifti_gz(path: Path, array: np.ndarray, slope: float | None = None) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 2.5))
    if slope is not None:  # a header rescale, which SimpleITK applies as it reads
        sitk.WriteImage(image, str(path.with_suffix("")))
        raw = bytearray(path.with_suffix("").read_bytes())
        raw[112:116] = np.float32(slope).tobytes()
        path.write_bytes(gzip.compress(bytes(raw)))
    else:
        sitk.WriteImage(image, str(path), useCompression=True)
    return path


def test_a_gzip_nifti_is_decompressed_once_and_still_verified(tmp_path, monkeypatch):
    """read_image checks a .nii.gz against its gzip trailer (CRC-32 and length of the header and the voxels
    SimpleITK read); the full stream check runs only where that cannot prove the file whole, and then names the
    fault."""
    import hccrad.io.images as images

    full_checks = []
    real_check = images.check_image_file
    monkeypatch.setattr(images, "check_image_file", lambda path: (full_checks.append(path.name), real_check(path)))
    ct = np.random.default_rng(3).integers(-1000, 1500, (12, 20, 24)).astype(np.int16)
    whole = _write_nifti_gz(tmp_path / "whole.nii.gz", ct)
    assert np.array_equal(sitk.GetArrayFromImage(read_image(whole)), ct) and full_checks == []

    # the same stream with a wrong CRC in its trailer: the voxels cannot be proved, the full check refuses it
    data = bytearray(whole.read_bytes())
    data[-8] ^= 0xFF
    (tmp_path / "bad_crc.nii.gz").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="bad_crc.nii.gz is truncated or corrupt"):
        read_image(tmp_path / "bad_crc.nii.gz")
    assert full_checks == ["bad_crc.nii.gz"]

    # one voxel's bytes changed inside a valid-looking stream (recompressed, CRC of the old data kept)
    raw = bytearray(gzip.decompress(whole.read_bytes()))
    raw[-2:] = (int.from_bytes(raw[-2:], "little") ^ 0x55).to_bytes(2, "little")
    (tmp_path / "changed.nii.gz").write_bytes(gzip.compress(bytes(raw))[:-8] + whole.read_bytes()[-8:])
    with pytest.raises(ImageReadError, match="changed.nii.gz is truncated or corrupt"):
        read_image(tmp_path / "changed.nii.gz")

    # an infinite float voxel: SimpleITK keeps it, the bytes match, the finiteness check refuses it
    floats = ct.astype(np.float32)
    floats[3, 4, 5] = np.inf
    with pytest.raises(ImageReadError, match="holds 1 NaN or infinite voxels"):
        read_image(_write_nifti_gz(tmp_path / "inf.nii.gz", floats))

    # a scale slope: SimpleITK's voxels are not the file's bytes, so the full check runs and passes
    full_checks.clear()
    scaled = read_image(_write_nifti_gz(tmp_path / "scaled.nii.gz", ct, slope=2.0))
    assert full_checks == ["scaled.nii.gz"]
    assert np.array_equal(sitk.GetArrayFromImage(scaled), 2.0 * ct)


def _series(folder: Path, description: str, n_slices: int, offset_hu: int, series_number: int,
            spacing_z: float = 2.0) -> np.ndarray:
    grid = Grid(shape=(n_slices, 16, 16), spacing=(spacing_z, 1.5, 1.5), origin=(-12.0, -12.0, 0.0))
    array = (np.arange(n_slices * 256).reshape(n_slices, 16, 16) % 50 - 1000 + offset_hu).astype(np.int16)
    write_dicom_series(array, grid, folder, profile_for("F"), "P", series_description=description,
                       series_number=series_number)
    return array


def test_a_tie_between_dicom_series_is_an_error_unless_the_manifest_settles_it(tmp_path):
    from hccrad.io.config import SeriesRule

    _series(tmp_path, "Portal venous", 5, 0, 3)
    brighter = _series(tmp_path, "Portal venous (copy)", 5, 200, 7)
    with pytest.raises(ImageReadError, match=r"2 DICOM series .* fit the series rule equally: series 3 .*series 7"):
        read_image(tmp_path)
    found = list_dicom_series(tmp_path)
    chosen = choose_series(found, SeriesRule(tie_break="highest_series_number"), tmp_path)
    image = sitk.ReadImage(list(chosen.files))
    assert np.array_equal(sitk.GetArrayFromImage(image), brighter)
    assert choose_series(found, SeriesRule(tie_break="lowest_series_number"), tmp_path).series_number == 3


def test_a_dicom_series_with_a_missing_or_truncated_slice_is_refused(tmp_path):
    missing = tmp_path / "missing"
    missing.mkdir()
    _series(missing, "venous", 6, 0, 1)
    files = sorted(missing.iterdir())
    positions = {f: float(__import__("pydicom").dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
                 for f in files}
    middle = sorted(files, key=positions.get)[3]
    middle.unlink()
    with pytest.raises(ImageReadError, match="uneven slice spacing: a gap of 4.00 mm"):
        read_image(missing)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    _series(truncated, "venous", 4, 0, 1)
    last = max(truncated.iterdir(), key=lambda f: float(
        __import__("pydicom").dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    last.write_bytes(last.read_bytes()[:-200])  # the end slice: no gap would show it
    with pytest.raises(ImageReadError, match=f"{last.name} .*(truncated|cannot be read)"):
        read_image(truncated)


def test_censored_value_exception_carries_its_limit():
    with pytest.raises(CensoredValue) as info:
        parse_number("> 1000")
    assert info.value.limit == 1000.0


# --- runs ----------------------------------------------------------------------------------------------------


def _clinical_study(folder: Path, n: int = 40, **settings) -> Path:
    rng = np.random.default_rng(4)
    rows = [good_row(f"P{k:02d}", center="V" if k % 4 == 0 else "T", ct="", afp=str(round(10 ** rng.uniform(0, 4), 1)),
                     child_pugh="AB"[k % 2], bclc="ABC"[k % 3], pfs_months=str(round(rng.uniform(1, 20), 1)),
                     pfs_event=str(int(rng.random() < 0.7))) for k in range(n)]
    rows[5]["afp"] = "1,234"  # one bad row
    pd.DataFrame(rows).to_csv(folder / "clinical.csv", index=False)
    manifest = {"name": "clinical", "clinical_table": "clinical.csv", "split": {"validation_centers": ["V"]},
                "columns": {"ct": None, "mask": None, "portal_vein_diameter_mm": None}, "require_images": False,
                "models": {"models": ["C"]}, "output_dir": "out", "evaluation": {"n_bootstrap": 20}}
    manifest.update(settings)
    (folder / "study.yaml").write_text(yaml.safe_dump(manifest))
    return folder / "study.yaml"


def test_run_with_a_failed_case_reports_the_rest_and_exits_non_zero(tmp_path):
    result = CliRunner().invoke(app, ["run", str(_clinical_study(tmp_path))])
    assert result.exit_code == 1, result.output
    assert "P05" in result.output and "ambiguous" in " ".join(result.output.split())
    assert (tmp_path / "out" / "report" / "report.html").is_file()
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["stopped"] is None and [c["patient_id"] for c in summary["failed_cases"]] == ["P05"]


def test_unwritable_output_and_too_few_patients_are_one_line_errors(tmp_path):
    (tmp_path / "a-file").write_text("in the way")
    result = CliRunner().invoke(app, ["run", str(_clinical_study(tmp_path, output_dir="a-file/out"))])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot write to the output folder" in " ".join(result.output.split())
    few = tmp_path / "few"
    few.mkdir()
    result = CliRunner().invoke(app, ["run", str(_clinical_study(few, n=8))])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "too few training patients" in " ".join(result.output.split())


def test_an_interrupted_run_says_so_in_its_summary(tmp_path, monkeypatch):
    import hccrad.pipeline.run as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "fit_models", interrupted, raising=False)
    monkeypatch.setattr("hccrad.survival.fit_models", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_study(_clinical_study(tmp_path))
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["stopped"] == "interrupted (Ctrl-C); run again to resume"
    assert summary["stages"][-1] == {**summary["stages"][-1], "name": "fit", "status": "failed",
                                     "detail": "interrupted (Ctrl-C)"}


def test_geometry_messages_print_plain_numbers(tmp_path):
    image = sitk.Image(10, 12, 8, sitk.sitkInt16)
    image.SetSpacing((0.7, 0.7, 5.0))
    mask = sitk.Image(10, 12, 8, sitk.sitkUInt8)
    mask.SetSpacing((0.7, 0.7, 2.5))
    mask.SetOrigin((0.3, 0.0, 0.0))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    from hccrad.io.images import GeometryMismatchError, read_mask

    with pytest.raises(GeometryMismatchError) as info:
        read_mask(tmp_path / "mask.nii.gz", image)
    message = str(info.value)
    assert "spacing (0.7, 0.7, 2.5) != image (0.7, 0.7, 5)" in message and "np.float64" not in message


def test_run_refuses_an_invalid_section_before_any_stage(tmp_path):
    result = CliRunner().invoke(app, ["run", str(_clinical_study(tmp_path, evaluation={"n_bootstrapp": 20}))])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "n_bootstrapp" in " ".join(result.output.split())
    assert not (tmp_path / "out" / "run_summary.json").exists()  # no stage ran
    issues = pd.read_csv(tmp_path / "out" / "manifest_issues.csv")
    assert "evaluation" in set(issues["field"])


def test_a_multifocal_tumor_and_an_unmeasured_portal_vein_are_said(tmp_path):
    """The paper's largest-lesion rule dropping 40% of the tumor is a QC warning naming the lesions and the share;
    a case without label 3 and without a clinical diameter gets a console note saying why the diameter is
    missing."""
    from hccrad.features.extract import multifocal_warnings

    tumor = np.zeros((10, 20, 20), dtype=bool)
    tumor[1:4, 2:8, 2:8] = True  # 108 voxels
    tumor[6:9, 12:16, 12:18] = True  # 72 voxels: the largest holds 60%
    kept = np.zeros_like(tumor)
    kept[1:4, 2:8, 2:8] = True
    [warning] = multifocal_warnings(tumor, kept)
    assert warning.startswith("multifocal: the largest of 2 lesions holds 60% of the tumor volume")
    small = tumor.copy()
    small[6:9, 12:16, 12:18] = False
    small[6, 12, 12] = True  # a one-voxel second lesion: under the 20% rule, no warning
    assert multifocal_warnings(small, kept) == []

    ct, labels = _phantom(3)
    labels[((np.indices(labels.shape)[1] - 20) ** 2 + (np.indices(labels.shape)[2] - 27) ** 2 < 5)
           & (labels == 1) & (np.indices(labels.shape)[0] == 8)] = 2  # a second, small lesion
    study = _features_study(tmp_path, {"P1": _case(tmp_path, "p1", ct, labels),
                                       "P2": _case(tmp_path, "p2", *_phantom(4))})
    result = CliRunner().invoke(app, ["features", str(study)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "portal-vein diameter not measured for 2 case(s) (P1, P2)" in output
    assert "no label-3 voxel in the mask" in output
