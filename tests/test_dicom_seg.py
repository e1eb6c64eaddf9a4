"""DICOM SEG export (highdicom) on real DICOM CTs: masks read back voxel for voxel, the referenced instances are
the CT's, dcmqi's own SEG of the same liver agrees, and dciodvfy finds no error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hccrad.io.dicomseg import export_mask
from hccrad.io.images import read_image

from .conftest import shared_path


def _instance_uids_in_slice_order(folder, image) -> list[str]:
    """The CT's SOP Instance UIDs in the order of the image's slices, by position along the slice normal."""
    normal = np.array(image.GetDirection()).reshape(3, 3)[:, 2]
    rows = []
    for path in folder.iterdir():
        dataset = pydicom.dcmread(path)
        if dataset.get("Modality") != "CT":
            continue
        uid = dataset.get("SOPInstanceUID") or dataset.file_meta.MediaStorageSOPInstanceUID
        rows.append((float(np.array(dataset.ImagePositionPatient, float) @ normal), str(uid)))
    return [uid for _, uid in sorted(rows)]


def _read_back(path, uids) -> np.ndarray:
    import highdicom as hd

    seg = hd.seg.segread(path)
    return seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2, 3],
                                             combine_segments=True, skip_overlap_checks=True)


def _dcmqi_ct(tmp_path) -> tuple[Path, Path]:
    """dcmqi's shared test folder and a copy of its 3 CT slices alone (the shared folder also holds a SEG)."""
    source = shared_path("reference", "ct", "dcmqi_3slice")
    folder = tmp_path / "ct"
    folder.mkdir()
    for path in source.glob("ct-3slice_*.dcm"):
        shutil.copy(path, folder)
    return source, folder


def test_liver_tumor_and_portal_vein_round_trip_on_the_real_dicom_ct(tmp_path):
    folder = shared_path("reference", "ct", "totalseg_dicom", "series")
    image = read_image(folder)
    seg = sitk.Resample(sitk.ReadImage(str(shared_path("reference", "ct", "totalseg_dicom",
                                                       "example_seg_dicom.nii.gz"))),
                        image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    classes = sitk.GetArrayFromImage(seg)
    labels = np.zeros(classes.shape, np.uint8)
    labels[classes == 5], labels[classes == 64] = 1, 3
    z, y, x = np.nonzero(labels == 1)
    center = np.round([z.mean(), y.mean(), x.mean()]).astype(int)
    zz, yy, xx = np.ogrid[:labels.shape[0], :labels.shape[1], :labels.shape[2]]
    labels[((zz - center[0]) * 2.0) ** 2 + ((yy - center[1]) * 0.977) ** 2 + ((xx - center[2]) * 0.977) ** 2
           < 15**2] = 2  # a synthetic 3 cm lesion in the real liver
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))

    result = export_mask(folder, tmp_path / "mask.nii.gz", tmp_path / "out" / "P1.dcm", "hccrad nnU-Net")
    assert result.format == "dicom-seg" and result.path.is_file()
    assert "lacks StudyInstanceUID" in result.note  # this anonymised CT has none, and the user is told
    uids = _instance_uids_in_slice_order(folder, image)
    dataset = pydicom.dcmread(result.path)
    assert dataset.Modality == "SEG" and dataset.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in dataset.SegmentSequence] == ["Liver", "Tumor", "Portal vein"]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in dataset.SegmentSequence] == [
        "10200004", "108369006", "32764006"]
    assert dataset.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    referenced = [item.ReferencedSOPInstanceUID
                  for item in dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert sorted(referenced) == sorted(uids)
    np.testing.assert_array_equal(_read_back(result.path, uids), labels)


def test_a_complete_ct_gives_a_valid_seg_that_agrees_with_dcmqi(tmp_path):
    source, folder = _dcmqi_ct(tmp_path)
    result = export_mask(folder, source / "liver_seg.nrrd", tmp_path / "liver.dcm")
    assert result.format == "dicom-seg" and result.note == ""
    image = read_image(folder)
    uids = _instance_uids_in_slice_order(folder, image)
    ours = _read_back(result.path, uids)
    nrrd = sitk.GetArrayFromImage(sitk.ReadImage(str(source / "liver_seg.nrrd")))
    np.testing.assert_array_equal(ours, nrrd)
    import highdicom as hd

    dcmqi = hd.seg.segread(source / "liver.dcm").get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1], combine_segments=True, skip_overlap_checks=True,
        ignore_spatial_locations=True)  # dcmqi does not state that spatial locations are preserved
    np.testing.assert_array_equal(ours == 1, dcmqi == 1)  # dcmqi's SEG of the same liver
    assert pydicom.dcmread(result.path).SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    report = subprocess.run(["dciodvfy", str(result.path)], capture_output=True, text=True)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    assert errors == [], errors


def test_a_nifti_ct_gets_a_nifti_mask_and_the_reason(tmp_path):
    ct = shared_path("reference", "ct", "totalseg_abdomen", "example_ct_sm.nii.gz")
    image = sitk.ReadImage(str(ct))
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(tmp_path / "m.nii.gz"))
    result = export_mask(ct, tmp_path / "m.nii.gz", tmp_path / "out" / "P1.dcm")
    assert result.format == "nifti" and result.path.name == "P1.nii.gz" and "not a DICOM series" in result.note
    assert result.path.read_bytes() == (tmp_path / "m.nii.gz").read_bytes()


def test_segment_export_command_writes_the_seg(tmp_path):
    from typer.testing import CliRunner

    from hccrad.cli.main import app

    source, folder = _dcmqi_ct(tmp_path)
    result = CliRunner().invoke(app, ["segment", "export", "--ct", str(folder), "--mask",
                                      str(source / "liver_seg.nrrd"), "--out", str(tmp_path / "x.dcm"),
                                      "--algorithm", "my model"])
    assert result.exit_code == 0, result.output
    dataset = pydicom.dcmread(tmp_path / "x.dcm")
    assert dataset.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert dataset.SegmentSequence[0].SegmentAlgorithmName == "my model"


def test_segment_export_of_a_study_writes_seg_for_dicom_and_nifti_for_nifti(small_cohort, tmp_path):
    from typer.testing import CliRunner

    from hccrad.cli.main import app
    from hccrad.io import load_study
    from hccrad.io.images import read_mask

    shutil.copytree(small_cohort.parent, tmp_path / "cohort")
    manifest = tmp_path / "cohort" / small_cohort.name
    result = CliRunner().invoke(app, ["segment", "export", str(manifest)])
    assert result.exit_code == 0, result.output
    study = load_study(manifest)
    kinds = set()
    for record in study.patients:
        exported = study.config.layout.exported_mask(record.patient_id)
        if Path(record.ct).is_dir():  # synthetic DICOM: written without some type-2 attributes, still referenced
            image = read_image(record.ct)
            uids = _instance_uids_in_slice_order(Path(record.ct), image)
            expected = sitk.GetArrayFromImage(read_mask(record.mask, image))
            np.testing.assert_array_equal(_read_back(exported, uids), expected)
            kinds.add("dicom")
        else:
            assert exported.with_name(f"{record.patient_id}.nii.gz").is_file()
            kinds.add("nifti")
    assert kinds == {"dicom", "nifti"}


def test_two_series_on_the_same_grid_in_one_folder_are_refused_not_mixed(tmp_path):
    """A second series with the CT's slice positions (a reconstruction, a copy) must not be referenced in its
    place or mixed slice by slice: the export names both series."""
    import highdicom as hd

    from hccrad.io.dicomseg import DicomSegError, mask_to_dicom_seg
    from hccrad.io.images import read_mask

    source, folder = _dcmqi_ct(tmp_path)
    image = read_image(folder)
    mask = read_mask(source / "liver_seg.nrrd", image)
    second_uid = str(hd.UID())
    for path in sorted(folder.glob("ct-3slice_*.dcm")):
        dataset = pydicom.dcmread(path)
        dataset.SeriesInstanceUID = second_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = str(hd.UID())
        dataset.save_as(folder / f"copy_{path.name}")
    with pytest.raises(DicomSegError, match=f"several DICOM series fit the CT's grid .*{second_uid}"):
        mask_to_dicom_seg(mask, folder, image)
