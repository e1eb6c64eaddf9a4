"""Reading NIfTI, NRRD and DICOM (real series from ../shared), series choice, geometry checks, headers."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hccrad.io import GeometryMismatchError, ImageReadError, SeriesRule, check_geometry, read_image, read_mask
from hccrad.io.acquisition import center_acquisition_summary, dicom_acquisition
from hccrad.io.images import choose_series, list_dicom_series
from hccrad.synth.anatomy import Grid
from hccrad.synth.centers import profile_for
from hccrad.synth.writers import to_sitk, write_dicom_series

from .conftest import shared_path


def test_reads_real_dicom_series_with_geometry_and_hu():
    folder = shared_path("reference", "ct", "totalseg_dicom", "series")
    image = read_image(folder)
    assert image.GetSize() == (512, 512, 20)
    assert image.GetSpacing() == pytest.approx((0.9765625, 0.9765625, 2.0))
    # Rescale is applied: air outside the body is about -1000 HU and the range is CT-like.
    array = sitk.GetArrayViewFromImage(image)
    assert array.min() <= -1000 and 300 < array.max() <= 3100
    assert np.median(array[:, :5, :5]) < -900
    # Independent check: pydicom's own rescale of the first slice's corner pixel.
    first = sorted(folder.iterdir())
    headers = [pydicom.dcmread(f) for f in first]
    lowest = min(headers, key=lambda h: float(h.ImagePositionPatient[2]))
    expected = lowest.pixel_array[0, 0] * float(lowest.RescaleSlope) + float(lowest.RescaleIntercept)
    assert array[0, 0, 0] == expected


def test_real_multilabel_nifti_with_flipped_axis_is_aligned_exactly_to_dicom():
    ct = read_image(shared_path("reference", "ct", "totalseg_dicom", "series"))
    seg_path = shared_path("reference", "ct", "totalseg_dicom", "example_seg_dicom.nii.gz")
    raw = read_image(seg_path)
    assert raw.GetDirection()[4] == -1.0  # stored with the y axis flipped
    aligned = read_mask(seg_path, ct, allowed_labels=None)  # TotalSegmentator labels, not 0-3
    assert aligned.GetSize() == ct.GetSize() and aligned.GetOrigin() == pytest.approx(ct.GetOrigin())
    raw_array, aligned_array = sitk.GetArrayFromImage(raw), sitk.GetArrayFromImage(aligned)
    # Re-indexing only: the label counts are unchanged and the rows are the flipped rows.
    assert np.array_equal(np.bincount(raw_array.ravel()), np.bincount(aligned_array.ravel()))
    assert np.array_equal(aligned_array, raw_array[:, ::-1, :])
    liver_ml = (aligned_array == 5).sum() * np.prod(ct.GetSpacing()) / 1000
    assert liver_ml > 100


def test_nrrd_mask_and_dicom_slices_with_a_seg_object_in_the_folder():
    folder = shared_path("reference", "ct", "dcmqi_3slice")
    series = list_dicom_series(folder)
    assert {s.modality for s in series} == {"CT", "SEG"}
    ct = read_image(folder)  # the SEG object is skipped, the 3-slice CT is read
    assert ct.GetSize() == (512, 512, 3)
    mask = read_mask(folder / "liver_seg.nrrd", ct)
    assert sitk.GetArrayViewFromImage(mask).max() == 1


def _small_series(folder, description, n_slices, offset_hu):
    grid = Grid(shape=(n_slices, 16, 16), spacing=(2.0, 1.5, 1.5), origin=(-12.0, -12.0, 0.0))
    array = (np.arange(n_slices * 256).reshape(n_slices, 16, 16) % 50 + offset_hu).astype(np.int16)
    write_dicom_series(array, grid, folder, profile_for("F"), "P", series_description=description,
                       series_number=n_slices)
    return grid, array


def test_series_rule_picks_the_venous_series(tmp_path):
    _small_series(tmp_path, "Abdomen arterial", 6, 0)
    _, venous = _small_series(tmp_path, "Abdomen portal venous", 4, 100)
    _small_series(tmp_path, "Abdomen plain", 8, 200)
    image = read_image(tmp_path)
    assert image.GetSize() == (16, 16, 4)
    assert np.array_equal(sitk.GetArrayFromImage(image), venous)
    found = list_dicom_series(tmp_path)
    strict = SeriesRule(prefer=["hepatobiliary"], exclude=[], require_match=True)
    with pytest.raises(ImageReadError, match="matches"):
        choose_series(found, strict, tmp_path)
    most_slices = choose_series(found, SeriesRule(prefer=["delayed"], exclude=[]), tmp_path)
    assert most_slices.n_slices == 8


def test_geometry_mismatch_names_every_difference():
    image = sitk.Image(10, 12, 8, sitk.sitkInt16)
    image.SetSpacing((0.7, 0.7, 5.0))
    same = sitk.Image(10, 12, 8, sitk.sitkUInt8)
    same.CopyInformation(image)
    check_geometry(image, same)

    shifted = sitk.Image(same)
    shifted.SetOrigin((0.0, 0.0, 2.5))
    with pytest.raises(GeometryMismatchError, match="origin"):
        check_geometry(image, shifted)
    respaced = sitk.Image(same)
    respaced.SetSpacing((0.7, 0.7, 2.0))
    with pytest.raises(GeometryMismatchError, match="spacing"):
        check_geometry(image, respaced)
    smaller = sitk.Image(10, 12, 7, sitk.sitkUInt8)
    smaller.SetSpacing((0.7, 0.7, 5.0))
    with pytest.raises(GeometryMismatchError, match="size"):
        check_geometry(image, smaller)


def test_mask_on_another_grid_fails_with_a_clear_message(tmp_path):
    image = sitk.Image(10, 12, 8, sitk.sitkInt16)
    mask = sitk.Image(10, 12, 8, sitk.sitkUInt8)
    mask.SetOrigin((0.3, 0.0, 0.0))  # a sub-voxel shift is not a re-indexing
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    with pytest.raises(GeometryMismatchError, match=r"mask mask.nii.gz does not match the CT geometry: origin"):
        read_mask(tmp_path / "mask.nii.gz", image)


def test_corrupt_and_missing_files_raise_image_read_error(tmp_path):
    corrupt = tmp_path / "ct.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not really a gzip stream")
    with pytest.raises(ImageReadError, match="ct.nii.gz"):
        read_image(corrupt)
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "absent.nrrd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="no DICOM CT series"):
        read_image(tmp_path / "empty")


def test_nifti_round_trip_keeps_geometry(tmp_path):
    grid = Grid(shape=(5, 6, 7), spacing=(5.0, 0.8, 0.8), origin=(-10.0, 20.0, -30.0))
    array = np.arange(210, dtype=np.int16).reshape(5, 6, 7)
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(to_sitk(array, grid), str(path))
    image = read_image(path)
    assert image.GetSpacing() == pytest.approx((0.8, 0.8, 5.0))
    assert image.GetOrigin() == pytest.approx((-10.0, 20.0, -30.0))
    assert np.array_equal(sitk.GetArrayFromImage(image), array)


def test_acquisition_metadata_of_the_real_siemens_series():
    folder = shared_path("reference", "ct", "totalseg_dicom", "series")
    meta = dicom_acquisition(folder)
    # Values stated in ../shared/README.md for this series.
    assert meta["manufacturer"] == "SIEMENS" and meta["model"].startswith("Biograph40")
    assert meta["kvp"] == 120 and meta["tube_current_ma"] == 615
    assert meta["kernel"].startswith("Br38f")
    assert meta["slice_thickness_mm"] == 3 and meta["fov_mm"] == 500
    assert meta["matrix"] == "512x512" and meta["n_slices"] == 20
    assert meta["collimation"] == "16x1.2"


def test_acquisition_of_the_real_ge_slices():
    meta = dicom_acquisition(shared_path("reference", "ct", "dcmqi_3slice"))
    assert meta["manufacturer"].startswith("GE") and meta["kvp"] == 120 and meta["tube_current_ma"] == 300
    assert meta["kernel"] == "STANDARD" and meta["slice_thickness_mm"] == 1.25


def test_center_summary_reports_ranges_and_common_values():
    import pandas as pd

    table = pd.DataFrame({
        "patient_id": ["a", "b", "c"], "center": ["X", "X", "Y"], "source": ["dicom"] * 3,
        "manufacturer": ["Philips", "Philips", "SIEMENS"], "model": ["Brilliance", "Brilliance", "Flash"],
        "kvp": [120, 120, 100], "tube_current_ma": [200, 300, 160], "rotation_time_s": [0.5, 0.5, 0.5],
        "collimation": ["64x0.625"] * 3, "fov_mm": [350, 350, 300], "matrix": ["512x512"] * 3,
        "kernel": ["B", "B", "B60f"], "slice_thickness_mm": [5, 5, 2], "n_slices": [40, 40, 100],
    })
    summary = center_acquisition_summary(table).set_index("center")
    assert summary.loc["X", "tube_current_ma"] == "200-300"
    assert summary.loc["X", "scanner"] == "Philips Brilliance" and summary.loc["X", "patients"] == 2
    assert summary.loc["Y", "slice_thickness_mm"] == "2"


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32])
def test_value_counts_equal_numpy_unique(dtype, monkeypatch):
    """The chunked bincount gives numpy.unique's values and counts for every mask type (negative values, chunk
    boundaries, an empty array); other types fall through to numpy.unique itself."""
    from hccrad.io import images

    monkeypatch.setattr(images, "VALUE_COUNT_CHUNK_VOXELS", 1000)  # several chunks, one ragged
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    low, high = (max(info.min, -300), min(info.max, 300)) if info is not None else (-5, 5)
    array = rng.integers(low, high + 1, size=(7, 13, 37)).astype(dtype)
    for case in (array, array[:0]):
        values, counts = images.value_counts(case)
        expected_values, expected_counts = np.unique(case, return_counts=True)
        assert values.dtype == case.dtype
        np.testing.assert_array_equal(values, expected_values)
        np.testing.assert_array_equal(counts, expected_counts)
