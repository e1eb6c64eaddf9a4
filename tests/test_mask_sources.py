"""Masks as hospitals and public datasets ship them (DICOM SEG, RTSTRUCT, per-structure files and DICOM series,
label mappings) on real CTs, and the checks that catch a wrong convention.

Truth: the label map drawn on the real CT (the TotalSegmentator liver and portal vein of a real DICOM series, with a
synthetic lesion drawn into the liver), dcmqi's NRRD of its own SEG, and analytic polygons for RTSTRUCT.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from hccrad.features.config import FeatureConfig
from hccrad.features.extract import CaseJob, compute_case, dense_region_warnings
from hccrad.io.case import CTCase
from hccrad.io.config import MaskConvention, SeriesRule
from hccrad.io.dicomseg import export_mask
from hccrad.io.images import ImageReadError, clipped_intensity_warnings, read_image, read_mask
from hccrad.io.manifest import load_study
from hccrad.io.mask_sources import MaskSource, MaskSourceError, ct_reference, read_case_mask
from hccrad.io.masks import portal_vein_problems

from .conftest import shared_path
from .test_features_cohort import draw_lesion, totalseg_labels, write_like


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    """(CT folder, CT image, hccrad labels, label-map path): the real 20-slice DICOM series with its liver and
    portal vein and a 12 mm lesion drawn into the liver."""
    dicom = shared_path("reference", "ct", "totalseg_dicom")
    folder = tmp_path_factory.mktemp("dicom_case")
    series = read_image(dicom / "series")
    labels = draw_lesion(totalseg_labels(read_mask(dicom / "example_seg_dicom.nii.gz", series, allowed_labels=None)),
                         series.GetSpacing()[::-1], 12.0)
    write_like(labels, series, folder / "labels.nii.gz")
    return dicom / "series", series, labels, folder / "labels.nii.gz"


def _job(ct: Path, source: MaskSource, base: Path) -> CaseJob:
    config = FeatureConfig.model_validate({"params": "demo"})
    return CaseJob("P1", str(ct), str(source.mask or ""), None, config.radiomics_params(base),
                   config.model_dump(mode="json"), SeriesRule().model_dump(), "fingerprint", source.to_dict())


# --- DICOM SEG ----------------------------------------------------------------------------------------------------
def test_dcmqi_seg_matches_dcmqi_nrrd_voxel_for_voxel():
    folder = shared_path("reference", "ct", "dcmqi_3slice")
    image = read_image(folder)
    truth = sitk.GetArrayFromImage(read_mask(folder / "liver_seg.nrrd", image)) > 0
    # dcmqi writes the liver's old SNOMED RT code (SRT T-62000): matched as the liver
    read = read_case_mask(MaskSource(folder / "liver.dcm"), image, ct_reference(folder, image))
    assert np.array_equal(read.labels == 1, truth) and truth.sum() > 1000
    assert read.mapping["format"] == "DICOM SEG" and "1 'Liver'" in read.mapping["structures"]["liver"]
    assert read.mapping["structures"]["tumor"].endswith(": none")


def test_own_seg_export_reads_back_and_gives_the_label_maps_features(dicom_case, tmp_path):
    ct, image, labels, label_map = dicom_case
    exported = export_mask(ct, label_map, tmp_path / "P1.dcm")
    assert exported.format == "dicom-seg"
    source = MaskSource(exported.path)
    read = read_case_mask(source, image, ct_reference(ct, image))
    assert np.array_equal(read.labels, labels)
    # The same features, to the last digit, as from the label map itself
    from_seg = compute_case(_job(ct, source, tmp_path))
    from_map = compute_case(_job(ct, MaskSource(label_map), tmp_path))
    assert from_seg["status"] == "ok" and from_map["status"] == "ok", (from_seg.get("error"), from_map.get("error"))
    assert from_seg["features"] == from_map["features"]
    assert "DICOM SEG" in from_seg["mask_mapping"]["format"]


def test_seg_of_another_series_or_scan_is_refused(dicom_case, tmp_path):
    ct, image, _, _ = dicom_case
    folder = shared_path("reference", "ct", "dcmqi_3slice")
    ge = read_image(folder)
    seg = pydicom.dcmread(folder / "liver.dcm")
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4"
    seg.save_as(tmp_path / "other.dcm")
    with pytest.raises(MaskSourceError, match="references series 1.2.3.4, but the CT is series 1.2.392"):
        read_case_mask(MaskSource(tmp_path / "other.dcm"), ge, ct_reference(folder, ge))
    # dcmqi's SEG given with another patient's CT
    with pytest.raises(MaskSourceError, match="is in frame of reference 1.2.392.* it belongs to another scan"):
        read_case_mask(MaskSource(folder / "liver.dcm"), image, ct_reference(ct, image))
    # ... and with a NIfTI CT (no DICOM identity): its frames do not fall on the CT's grid
    with pytest.raises(MaskSourceError, match="pixel spacing"):
        read_case_mask(MaskSource(folder / "liver.dcm"), image, None)


# --- per-structure files ------------------------------------------------------------------------------------------
def _dicom_mask_series(ct: Path, mask: np.ndarray, out: Path) -> Path:
    """A binary mask written as a DICOM series on the CT's slices (0/255, as 3D-IRCADb ships them)."""
    out.mkdir(parents=True)
    series_uid = generate_uid()
    image = read_image(ct)
    for number, file in enumerate(sorted(Path(ct).iterdir())):
        dataset = pydicom.dcmread(file)
        index = int(round(image.TransformPhysicalPointToContinuousIndex(
            [float(v) for v in dataset.ImagePositionPatient])[2]))
        dataset.decompress()
        dataset.PixelData = (mask[index].astype(np.uint16) * 255).tobytes()
        dataset.PixelRepresentation, dataset.RescaleIntercept, dataset.RescaleSlope = 0, 0, 1
        dataset.SeriesInstanceUID, dataset.SeriesDescription = series_uid, "livermask"
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.save_as(out / f"mask_{number:03d}.dcm")
    return out


def test_per_structure_nifti_and_dicom_series_give_the_label_map(dicom_case, tmp_path):
    ct, image, labels, label_map = dicom_case
    # liver including the tumor, 0/255; the tumor as NIfTI; the portal vein as a DICOM series like 3D-IRCADb's
    write_like(((labels == 1) | (labels == 2)).astype(np.uint8) * 255, image, tmp_path / "liver.nii.gz")
    write_like((labels == 2).astype(np.uint8), image, tmp_path / "tumor.nii.gz")
    portal = _dicom_mask_series(ct, labels == 3, tmp_path / "portal_vein")
    pd.DataFrame([{"patient_id": "P1", "center": "A", "ct": str(ct), "mask_liver": "liver.nii.gz",
                   "mask_tumor": "tumor.nii.gz", "mask_portal_vein": "portal_vein", "pfs_months": 6,
                   "pfs_event": 1}]).to_csv(tmp_path / "clinical.csv", index=False)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "per structure", "clinical_table": "clinical.csv", "split": {"validation_fraction": 0.5},
        "masks": {"liver_includes_tumor": True}}))
    study = load_study(tmp_path / "study.yaml")
    assert study.ok, study.errors
    record = study.patient("P1")
    assert record.mask is None and record.has_mask and record.mask_structures["portal_vein"] == (portal,)
    case = CTCase.read(record.ct, record.mask_source)
    assert np.array_equal(case.labels, labels)
    assert case.mask_mapping["warnings"] == []
    assert "any non-zero" in case.mask_mapping["structures"]["liver"]
    # the same files with the opposite stated convention: a warning that names the share and the fix
    wrong = MaskSource(None, record.mask_structures, MaskConvention(liver_includes_tumor=False))
    warnings = read_case_mask(wrong, image).mapping["warnings"]
    assert len(warnings) == 1 and "100% of the tumor lies inside the liver mask" in warnings[0]


def test_two_tumor_files_and_a_label_map_with_a_separate_tumor(dicom_case, tmp_path):
    _, image, labels, _ = dicom_case
    tumor = labels == 2
    first, second = tumor.copy(), tumor.copy()
    cut = int(np.flatnonzero(tumor.any(axis=(0, 1))).mean())
    first[:, :, cut:], second[:, :, :cut] = False, False
    write_like(first.astype(np.uint8), image, tmp_path / "t1.nii.gz")
    write_like(second.astype(np.uint8) * 7, image, tmp_path / "t2.nii.gz")
    liver_and_vein = np.where(tumor, 1, labels).astype(np.uint8)  # a tool's map with no tumor label
    write_like(liver_and_vein, image, tmp_path / "liver_pv.nii.gz")
    source = MaskSource(tmp_path / "liver_pv.nii.gz", {"tumor": (tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz")})
    assert np.array_equal(read_case_mask(source, image).labels, labels)


# --- RTSTRUCT -----------------------------------------------------------------------------------------------------
def _rtstruct(rois: dict[str, list[np.ndarray]], path: Path, series_uid: str = "", frame_uid: str = "") -> Path:
    """An RTSTRUCT whose ROIs are lists of closed planar contours, each an (n, 3) array of points in mm."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "RTSTRUCT"
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_uid
    if series_uid:
        study, series = Dataset(), Dataset()
        series.SeriesInstanceUID = series_uid
        study.RTReferencedSeriesSequence = Sequence([series])
        frame.RTReferencedStudySequence = Sequence([study])
    dataset.ReferencedFrameOfReferenceSequence = Sequence([frame])
    structure_set, contours = [], []
    for number, (name, polygons) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        structure_set.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        items = []
        for polygon in polygons:
            item = Dataset()
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(polygon)
            item.ContourData = [f"{v:.6f}" for v in polygon.ravel()]
            items.append(item)
        roi_contour.ContourSequence = Sequence(items)
        contours.append(roi_contour)
    dataset.StructureSetROISequence = Sequence(structure_set)
    dataset.ROIContourSequence = Sequence(contours)
    dataset.save_as(path, enforce_file_format=True)
    return path


def _to_mm(image: sitk.Image, columns: np.ndarray, rows: np.ndarray, slice_index: int) -> np.ndarray:
    return np.array([image.TransformContinuousIndexToPhysicalPoint((float(c), float(r), float(slice_index)))
                     for c, r in zip(columns, rows, strict=True)])


def _run_rectangles(image: sitk.Image, mask: np.ndarray) -> list[np.ndarray]:
    """Contours tracing each run of a mask's rows along the voxel edges (half-integer indices)."""
    polygons = []
    for z, y in zip(*np.nonzero(mask.any(axis=2)), strict=True):
        row = np.concatenate([[False], mask[z, y], [False]])
        starts, stops = np.flatnonzero(row[1:] & ~row[:-1]), np.flatnonzero(~row[1:] & row[:-1])
        for start, stop in zip(starts, stops, strict=True):
            columns = np.array([start, stop, stop, start]) - 0.5
            rows = np.array([y, y, y + 1, y + 1]) - 0.5
            polygons.append(_to_mm(image, columns, rows, int(z)))
    return polygons


def test_rtstruct_of_a_real_liver_and_analytic_shapes_follow_the_stated_rule(dicom_case, tmp_path):
    ct, image, labels, _ = dicom_case
    liver = labels != 0  # the liver ROI covers the lesion and the portal vein
    # a ring (outer radius 20 mm, inner 8 mm: the inner contour is a hole) on slice 10 inside the liver
    z = 10
    deep = np.argwhere(liver[z])
    centre = deep[len(deep) // 2][::-1].astype(float)  # (column, row)
    angles = np.linspace(0, 2 * np.pi, 361)[:-1]
    spacing = image.GetSpacing()

    def circle(radius_mm: float) -> np.ndarray:
        return _to_mm(image, centre[0] + radius_mm / spacing[0] * np.cos(angles),
                      centre[1] + radius_mm / spacing[1] * np.sin(angles), z)

    square = _to_mm(image, np.array([0.0, 4.0, 4.0, 0.0]), np.array([0.0, 0.0, 4.0, 4.0]), 0)
    reference = ct_reference(ct, image)
    path = _rtstruct({"Liver": _run_rectangles(image, liver), "Tumor ring": [circle(20.0), circle(8.0)],
                      "edges": [square]}, tmp_path / "rs.dcm", reference.series_uid, reference.frame_of_reference_uid)
    # the real liver traced along its voxel edges comes back voxel for voxel
    liver_only = MaskConvention(names={"tumor": [], "portal_vein": []})
    read = read_case_mask(MaskSource(path, convention=liver_only), image, reference)
    assert np.array_equal(read.labels == 1, liver) and not (read.labels > 1).any()
    assert read.mapping["format"] == "RTSTRUCT" and "ring" in " ".join(read.mapping["found"])
    convention = MaskConvention(names={"tumor": ["tumorring"], "portal_vein": ["edges"]})
    read = read_case_mask(MaskSource(path, convention=convention), image, reference)
    # the ring: centres strictly between the radii (0.01 mm margin for the 360-gon) in, the hole and outside out
    rows, columns = np.indices(liver[z].shape)
    radius = np.hypot((columns - centre[0]) * spacing[0], (rows - centre[1]) * spacing[1])
    ring = read.labels[z] == 2
    assert ring[(radius > 8.01) & (radius < 20 * np.cos(np.pi / 360) - 0.01)].all()
    assert not ring[(radius < 8 * np.cos(np.pi / 360) - 0.01) | (radius > 20.01)].any()
    # half-open edges: a square with corners on voxel centres (0,0)-(4,4) covers columns and rows 0-3
    edges = read.labels[0, :6, :6] == 3
    assert np.array_equal(np.argwhere(edges).min(axis=0), [0, 0]) and edges.sum() == 16 and edges[:4, :4].all()


def test_rtstruct_off_the_ct_slices_or_of_another_series_is_refused(dicom_case, tmp_path):
    ct, image, _, _ = dicom_case
    reference = ct_reference(ct, image)
    off = _to_mm(image, np.array([10.0, 20, 20]), np.array([10.0, 10, 20]), 0) + np.array([0, 0, 1.0])
    path = _rtstruct({"Liver": [off]}, tmp_path / "off.dcm", reference.series_uid, reference.frame_of_reference_uid)
    with pytest.raises(MaskSourceError, match="not drawn on one of the CT's slices"):
        read_case_mask(MaskSource(path), image, reference)
    other = _rtstruct({"Liver": []}, tmp_path / "other.dcm", "1.2.3", "1.2.3.4")
    with pytest.raises(MaskSourceError, match="frame of reference 1.2.3.4|references series 1.2.3"):
        read_case_mask(MaskSource(other), image, reference)


# --- wrong conventions --------------------------------------------------------------------------------------------
def _second_tumor(labels: np.ndarray, spacing_zyx, radius_mm: float) -> np.ndarray:
    """A second spherical lesion, labelled 3, in the liver far from the first; no real portal vein."""
    out = np.where(labels == 3, 1, labels).astype(np.uint8)
    first = np.argwhere(labels == 2).mean(axis=0)
    liver = np.argwhere(out == 1)
    far = liver[np.argmax(np.linalg.norm((liver - first) * spacing_zyx, axis=1))]
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(out == 1, sampling=spacing_zyx)
    candidates = np.argwhere(depth >= radius_mm)
    centre = candidates[np.argmin(np.linalg.norm((candidates - far) * spacing_zyx, axis=1))]
    grid = np.indices(out.shape).astype(float)
    distance = np.sqrt(sum(((grid[a] - centre[a]) * spacing_zyx[a]) ** 2 for a in range(3)))
    out[(distance <= radius_mm) & (out == 1)] = 3
    return out


def test_second_tumor_given_label_3_is_refused_and_mappable(dicom_case, tmp_path):
    ct, image, labels, _ = dicom_case
    spacing = image.GetSpacing()[::-1]
    wrong = _second_tumor(labels, spacing, 10.0)
    problems = portal_vein_problems(wrong, spacing, 25.0)
    assert len(problems) == 1 and "closed blob inside the liver" in problems[0]
    assert "masks: {labels: {tumor: [2, 3], portal_vein: []}}" in problems[0]
    # a 39 mm-wide "portal vein" (3D-IRCADb's second tumor): refused by its width whatever its shape
    wide = wrong.copy()
    wide[:, 100:160, 100:160] = np.where(wide[:, 100:160, 100:160] == 0, 3, wide[:, 100:160, 100:160])
    assert "above the plausible 25 mm" in portal_vein_problems(wide, spacing, 25.0)[0]
    write_like(wrong, image, tmp_path / "wrong.nii.gz")
    failed = compute_case(_job(ct, MaskSource(tmp_path / "wrong.nii.gz"), tmp_path))
    assert failed["status"] == "failed" and "closed blob inside the liver" in failed["error"]
    mapped = MaskConvention(labels={"liver": [1], "tumor": [2, 3], "portal_vein": []})
    read = read_case_mask(MaskSource(tmp_path / "wrong.nii.gz", convention=mapped), image)
    assert not (read.labels == 3).any() and (read.labels == 2).sum() == (wrong == 2).sum() + (wrong == 3).sum()
    # the real (TotalSegmentator) portal and splenic vein passes both checks
    assert portal_vein_problems(labels, spacing, 25.0) == []


def _surface_lesion(labels: np.ndarray, spacing_zyx, radius_mm: float, depth_share: float, bulging: bool
                    ) -> np.ndarray:
    """A lesion labelled 3 at the liver's surface: a sphere whose centre lies ``depth_share`` of its radius inside
    the liver, cut by the surface (``bulging``: the part outside the liver is drawn too, as a lesion that bulges)."""
    from scipy import ndimage

    out = np.where(labels == 3, 1, labels).astype(np.uint8)
    depth = ndimage.distance_transform_edt(out == 1, sampling=spacing_zyx)
    candidates = np.argwhere(np.abs(depth - max(depth_share * radius_mm, 0.5)) < 0.6)
    centre = candidates[len(candidates) // 3]
    grid = np.indices(out.shape).astype(float)
    distance = np.sqrt(sum(((grid[a] - centre[a]) * spacing_zyx[a]) ** 2 for a in range(3)))
    sphere = (distance <= radius_mm) & ((out == 1) | ((out == 0) & bulging))
    out[sphere] = 3
    return out


@pytest.mark.parametrize("radius_mm, depth_share, bulging", [
    (12.0, 0.1, False),  # a shallow cap where the liver's edge is thin: 4.9 times its inscribed ball, 2.1 long
    (12.0, 0.3, False), (20.0, 0.1, False), (12.0, 0.1, True), (10.0, 0.3, True)])
def test_a_subcapsular_lesion_given_label_3_is_refused(dicom_case, radius_mm, depth_share, bulging):
    """A lesion at the liver's surface is not enclosed by liver (half its border or more is outside), which the
    closed-blob rule requires; the surface rule catches it by its shape: compact, and about as long as it is wide."""
    _, image, labels, _ = dicom_case
    spacing = image.GetSpacing()[::-1]
    wrong = _surface_lesion(labels, spacing, radius_mm, depth_share, bulging)
    problems = portal_vein_problems(wrong, spacing, 25.0)
    assert len(problems) == 1 and "compact lesion at the liver's surface" in problems[0], problems
    assert "masks: {labels: {tumor: [2, 3], portal_vein: []}}" in problems[0]


def test_real_portal_veins_at_the_liver_surface_pass(dicom_case):
    """Real portal veins (TotalSegmentator's portal and splenic vein) touch the liver's surface and are not
    enclosed; they are tubes (6 and 8 times their inscribed ball, 4 and 9 diameters long) and pass."""
    _, image, labels, _ = dicom_case
    assert portal_vein_problems(labels, image.GetSpacing()[::-1], 25.0) == []
    abdomen = shared_path("reference", "ct", "totalseg_abdomen")
    segmentation = sitk.ReadImage(str(abdomen / "example_seg.nii.gz"))
    assert portal_vein_problems(totalseg_labels(segmentation), segmentation.GetSpacing()[::-1], 25.0) == []


def test_binary_masks_and_unmapped_labels_name_the_fix(dicom_case, tmp_path):
    _, image, labels, _ = dicom_case
    write_like(((labels > 0) * 255).astype(np.uint8), image, tmp_path / "binary.nii.gz")
    with pytest.raises(MaskSourceError) as binary:
        read_case_mask(MaskSource(tmp_path / "binary.nii.gz"), image)
    assert "labels [255] are not in the case's convention" in str(binary.value)
    assert "mask_liver or mask_tumor column" in str(binary.value) and "{liver: [255]}" in str(binary.value)
    extra = labels.copy()
    extra[labels == 2] = 5
    extra[0, 0, 0] = 2
    write_like(extra, image, tmp_path / "extra.nii.gz")
    with pytest.raises(MaskSourceError, match=r"labels \[5\] .*tumor: \[2, 5\]"):
        read_case_mask(MaskSource(tmp_path / "extra.nii.gz"), image)


def test_liver_with_the_tumor_as_a_hole_names_the_hole(dicom_case, tmp_path):
    ct, image, labels, _ = dicom_case
    write_like(np.where(labels == 2, 0, labels).astype(np.uint8), image, tmp_path / "hole.nii.gz")
    failed = compute_case(_job(ct, MaskSource(tmp_path / "hole.nii.gz"), tmp_path))
    assert failed["status"] == "failed"
    assert failed["error"].startswith("Tumor region is empty: label map ") and "holds labels 1 (" in failed["error"]
    assert "encloses a hole of" in failed["error"] and "mask_tumor column" in failed["error"]


def test_conventions_per_center_and_per_row(tmp_path):
    image = sitk.Image(8, 8, 4, sitk.sitkInt16)
    write_like(np.zeros((4, 8, 8), np.int16), image, tmp_path / "ct.nii.gz")
    pd.DataFrame([{"patient_id": f"P{i}", "center": center, "ct": "ct.nii.gz", "mask_convention": name,
                   "pfs_months": 6, "pfs_event": 1}
                  for i, (center, name) in enumerate([("A", None), ("b", None), ("A", "ircad"), ("A", "nope")])]
                 ).to_csv(tmp_path / "clinical.csv", index=False)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "conventions", "clinical_table": "clinical.csv", "split": {"validation_fraction": 0.5},
        "masks": {"centers": {"B": {"labels": {"liver": [5], "tumor": [6], "portal_vein": [7]}}},
                  "conventions": {"ircad": {"labels": {"liver": [255]}, "liver_includes_tumor": True}}}}))
    study = load_study(tmp_path / "study.yaml")
    by_id = {record.patient_id: record for record in study.patients}
    assert by_id["P0"].mask_convention.labels["liver"] == [1]
    assert by_id["P1"].mask_convention.labels["tumor"] == [6]  # center "b" is center "B"
    assert by_id["P2"].mask_convention.labels == {"liver": [255], "tumor": [], "portal_vein": []}
    assert any(issue.field == "mask_convention" and "unknown convention 'nope'" in issue.message
               for issue in study.errors)
    with pytest.raises(Exception, match="label 3 is given for both liver and tumor"):
        MaskConvention(labels={"liver": [3], "tumor": [3]})


# --- DICOM series -------------------------------------------------------------------------------------------------
def test_duplicated_slices_are_refused_naming_the_files(tmp_path):
    series = shared_path("reference", "ct", "totalseg_dicom", "series")
    folder = tmp_path / "twice"
    folder.mkdir()
    for file in series.iterdir():
        shutil.copy(file, folder / file.name)
        shutil.copy(file, folder / f"copy_{file.name}")
    with pytest.raises(ImageReadError, match=r"40 slices in 20 groups with the same SOPInstanceUID .*copy_CT"):
        read_image(folder)
    moved = tmp_path / "same_position"
    moved.mkdir()
    for file in series.iterdir():
        shutil.copy(file, moved / file.name)
    copy = pydicom.dcmread(next(iter(sorted(series.iterdir()))))
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    copy.save_as(moved / "extra.dcm")
    with pytest.raises(ImageReadError, match="2 slices in 1 groups with the same slice position"):
        read_image(moved)


def test_a_tie_suggests_only_rules_that_tell_the_series_apart(dicom_case, tmp_path):
    ct, _, labels, _ = dicom_case
    folder = tmp_path / "mixed"
    folder.mkdir()
    for file in Path(ct).iterdir():
        shutil.copy(file, folder / file.name)
    _dicom_mask_series(ct, labels == 1, tmp_path / "mask")
    for file in (tmp_path / "mask").iterdir():
        dataset = pydicom.dcmread(file)
        dataset.SeriesDescription = "CT Body 3.0"  # the same description as the CT, no SeriesNumber either
        dataset.save_as(folder / file.name)
    with pytest.raises(ImageReadError) as tie:
        read_image(folder)
    assert "fit the series rule equally" in str(tie.value) and "tie_break" not in str(tie.value)
    assert "move the other series out of the folder" in str(tie.value) and "mask series" in str(tie.value)


def test_export_of_a_series_without_frame_of_reference_works_with_a_note(dicom_case, tmp_path):
    import highdicom as hd

    ct, image, labels, label_map = dicom_case
    folder = tmp_path / "no_for"
    folder.mkdir()
    for file in Path(ct).iterdir():
        dataset = pydicom.dcmread(file)
        del dataset.FrameOfReferenceUID
        dataset.save_as(folder / file.name)
    result = export_mask(folder, label_map, tmp_path / "P1.dcm")
    assert result.format == "dicom-seg" and "has no FrameOfReferenceUID" in result.note
    assert hd.seg.segread(result.path).FrameOfReferenceUID  # a viewer's reader takes it
    read = read_case_mask(MaskSource(result.path), image, ct_reference(folder, image))
    assert np.array_equal(read.labels, labels)
    assert any("no FrameOfReferenceUID" in note for note in read.mapping["notes"])


# --- QC warnings --------------------------------------------------------------------------------------------------
def test_clipped_ct_and_dense_tumor_warnings():
    rng = np.random.default_rng(0)
    body = rng.normal(40, 300, size=200_000).clip(-1024, None)
    clipped = np.minimum(body, 1023).round()
    assert (clipped == 1023).sum() > 100
    warnings = clipped_intensity_warnings(clipped, "ct.nii.gz")
    assert len(warnings) == 1 and "sit at exactly 1023 HU" in warnings[0]
    assert clipped_intensity_warnings(body.round(), "ct.nii.gz") == []  # the same CT unclipped
    assert clipped_intensity_warnings(np.minimum(body, 1100).round(), "ct.nii.gz") == []  # not a ceiling
    # a tumor of 75 HU with 6% dense voxels at 600 HU: the share and the rate-75 factor it moves
    tumor = np.concatenate([rng.normal(75, 15, 9400), np.full(600, 600.0)])
    region = np.ones(tumor.size, bool)
    dense = dense_region_warnings(tumor, region, "Tumor", (0.25, 0.75), "robust_range")
    assert len(dense) == 1 and "6.0% of the tumor lies above 200 HU" in dense[0] and "Tumor_HU_rate75" in dense[0]
    assert dense_region_warnings(tumor[:9400], region[:9400], "Tumor", (0.25, 0.75), "robust_range") == []


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32])
def test_label_map_relabelled_by_table_equals_painting_value_by_value(dtype, tmp_path, monkeypatch):
    """A label map's structures relabelled through a table (a chunk at a time) equal hccrad's painting, value by
    value, liver then portal vein then tumor, for 8- and 16-bit masks and a float mask (painted), with a convention
    that maps several values to one structure; the voxel counts reported are the file's own."""
    from hccrad.io import mask_sources

    monkeypatch.setattr(mask_sources, "RELABEL_CHUNK_VOXELS", 97)  # several chunks, one ragged
    rng = np.random.default_rng(5)
    values = np.array([0, 5, 6, 9, 200, 7])
    array = values[rng.integers(0, len(values), size=(6, 11, 13))].astype(dtype)
    image = sitk.Image(13, 11, 6, sitk.sitkInt16)
    write_like(array, image, tmp_path / "mask.nii.gz")
    convention = MaskConvention(labels={"liver": [5, 200], "tumor": [6, 9], "portal_vein": [7]})
    case_mask = read_case_mask(MaskSource(mask=tmp_path / "mask.nii.gz", convention=convention), image)
    expected = np.zeros(array.shape, np.uint8)
    for values_of, label in (([5, 200], 1), ([7], 3), ([6, 9], 2)):
        expected[np.isin(array, values_of)] = label
    np.testing.assert_array_equal(case_mask.labels, expected)
    assert case_mask.mapping["voxels"] == {"liver": int(np.isin(array, [5, 200]).sum()),
                                           "tumor": int(np.isin(array, [6, 9]).sum()),
                                           "portal_vein": int((array == 7).sum())}
    own = np.where(array == 200, 0, array % 4).astype(dtype)  # hccrad's labels 0-3: copied as they are
    write_like(own, image, tmp_path / "own.nii.gz")
    np.testing.assert_array_equal(read_case_mask(MaskSource(mask=tmp_path / "own.nii.gz"), image).labels, own)
