"""Synthetic cohort: determinism, label geometry, realistic HU, DICOM round trip and the true outcome model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull

from hccrad.io import load_study, read_image, read_mask
from hccrad.io.acquisition import acquisition_table, center_acquisition_summary
from hccrad.synth import CohortSpec, generate_cohort
from hccrad.synth.patients import MEDIAN_PFS_AT_ZERO_MONTHS, TRUE_COEFFICIENTS, draw_outcome


@pytest.fixture(scope="module")
def cohort(small_cohort):
    study = load_study(small_cohort)
    assert study.ok, study.errors
    return study


def load_case(record):
    image = read_image(record.ct)
    mask = read_mask(record.mask, image)
    return sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask), image


def test_cohort_manifest_validates_with_every_center_and_split(cohort):
    table = cohort.table()
    assert len(table) == 12 and set(table["center"]) == set("ABCDEF")
    assert set(table.loc[table["dataset"] == "validation", "center"]) == {"D", "E", "F"}
    # Center C records Child-Pugh as a score, the others as a grade; both load as grades.
    assert table.loc[table["center"] == "C", "child_pugh_score"].notna().all()
    assert set(table["child_pugh"].dropna()) <= {"A", "B", "C"}


def test_generation_is_deterministic_whatever_the_worker_count(tmp_path):
    first = generate_cohort(tmp_path / "one", CohortSpec(n_patients=6, seed=3, n_jobs=1))
    second = generate_cohort(tmp_path / "two", CohortSpec(n_patients=6, seed=3, n_jobs=2))
    other = generate_cohort(tmp_path / "other", CohortSpec(n_patients=6, seed=4, n_jobs=2))
    clinical_one = pd.read_csv(first.parent / "clinical.csv")
    assert clinical_one.equals(pd.read_csv(second.parent / "clinical.csv"))
    assert not clinical_one.equals(pd.read_csv(other.parent / "clinical.csv"))
    for ct in clinical_one["ct"]:
        a = sitk.GetArrayFromImage(read_image(first.parent / ct))
        b = sitk.GetArrayFromImage(read_image(second.parent / ct))
        assert np.array_equal(a, b)
    dicom = [ct for ct in clinical_one["ct"] if ct.endswith("dicom")]
    assert dicom, "a six-patient cohort has one patient per center, three of them DICOM"
    name = sorted((first.parent / dicom[0]).iterdir())[0].name
    uid_one = pydicom.dcmread(first.parent / dicom[0] / name).SOPInstanceUID
    uid_two = pydicom.dcmread(second.parent / dicom[0] / name).SOPInstanceUID
    assert uid_one == uid_two


def test_label_geometry_is_anatomical(cohort):
    for record in cohort.patients:
        ct, labels, image = load_case(record)
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
        voxel_ml = np.prod(image.GetSpacing()) / 1000.0
        liver = np.isin(labels, (1, 2, 3))
        tumor = labels == 2
        liver_ml = (labels == 1).sum() * voxel_ml
        assert 600 < liver_ml < 2600, (record.patient_id, liver_ml)
        # The largest tumor dominates: at least 70% of all tumor voxels (satellites are small).
        components, count = ndimage.label(tumor, structure=np.ones((3, 3, 3)))
        sizes = np.sort(np.bincount(components.ravel())[1:])[::-1]
        assert count >= 1 and sizes[0] >= 0.7 * sizes.sum(), (record.patient_id, sizes[:4])
        # Portal vein exists and touches the liver parenchyma (it enters at the hilum).
        portal = labels == 3
        assert portal.sum() > 0
        assert (ndimage.binary_dilation(portal) & (labels == 1)).any()
        # Everything labelled lies inside the body, never in air.
        assert ct[liver].min() > -500


def solidity(mask: np.ndarray, spacing_zyx: np.ndarray) -> float:
    points = np.argwhere(mask) * spacing_zyx
    return mask.sum() * np.prod(spacing_zyx) / ConvexHull(points).volume


def test_liver_is_lobed_not_an_ellipsoid(cohort):
    for record in cohort.patients:
        _, labels, image = load_case(record)
        spacing = np.array(image.GetSpacing()[::-1])
        liver = np.isin(labels, (1, 2, 3))
        # Reference: the digitised ellipsoid with the liver's extents on the same grid (convex, so its
        # solidity is the grid's own value, about 1).
        points = np.argwhere(liver) * spacing
        center, half = points.mean(axis=0), (points.max(axis=0) - points.min(axis=0)) / 2
        grid = np.indices(liver.shape).transpose(1, 2, 3, 0) * spacing
        ellipsoid = (((grid - center) / half) ** 2).sum(axis=-1) <= 1
        # Lobes and the hilum notch make the liver clearly less convex.
        assert solidity(liver, spacing) < solidity(ellipsoid, spacing) - 0.08, record.patient_id


def test_venous_phase_hu_ranges(cohort):
    for record in cohort.patients:
        ct, labels, _ = load_case(record)
        parenchyma = ndimage.binary_erosion(labels == 1, iterations=2)
        liver_mean = ct[parenchyma].mean()
        tumor_mean = ct[labels == 2].mean()
        assert 95 < liver_mean < 140, (record.patient_id, liver_mean)
        assert tumor_mean < liver_mean - 5, (record.patient_id, tumor_mean, liver_mean)
        assert ct[labels == 3].mean() > liver_mean  # enhanced portal vein
        assert ct[labels == 2].std() > 8  # heterogeneous tumor


def test_dicom_centers_write_real_acquisition_tags(cohort):
    table = acquisition_table(cohort.patients)
    dicom = table[table["source"] == "dicom"]
    assert set(dicom["center"]) == {"B", "E", "F"}
    row = dicom[dicom["center"] == "F"].iloc[0]
    assert row["manufacturer"] == "SIEMENS" and row["kernel"] == "B60f" and row["tube_current_ma"] == 160
    assert row["slice_thickness_mm"] == 2 and row["collimation"] == "64x0.625" and row["fov_mm"] == 350
    summary = center_acquisition_summary(table).set_index("center")
    assert summary.loc["B", "fov_mm"] == "500" and summary.loc["D", "slice_thickness_mm"] == "2"


def test_truth_matches_the_masks(small_cohort, cohort):
    truth = json.loads((small_cohort.parent / "truth" / "model.json").read_text())
    assert truth["coefficients"] == TRUE_COEFFICIENTS
    latent = pd.read_csv(small_cohort.parent / "truth" / "latent.csv").set_index("patient_id")
    for record in cohort.patients[:4]:
        _, labels, image = load_case(record)
        # Independent count with SimpleITK's connected components (full connectivity).
        tumor = sitk.GetImageFromArray((labels == 2).astype(np.uint8))
        components = sitk.RelabelComponent(sitk.ConnectedComponent(tumor, True))
        largest = (sitk.GetArrayFromImage(components) == 1).sum() * np.prod(image.GetSpacing()) / 1000
        assert latent.loc[record.patient_id, "tumor_volume_ml"] == pytest.approx(largest, rel=1e-9)
        expected_lp = sum(TRUE_COEFFICIENTS[n] * latent.loc[record.patient_id, f"term_{n}"] for n in TRUE_COEFFICIENTS)
        assert latent.loc[record.patient_id, "linear_predictor"] == pytest.approx(expected_lp)


def test_outcomes_follow_the_stated_weibull_cox_model():
    from lifelines import CoxPHFitter

    lps = np.repeat([0.0, 0.7], 2000)
    draws = [draw_outcome(lp, seed) for seed, lp in enumerate(lps)]
    times = np.array([d["true_event_months"] for d in draws])
    assert np.median(times[lps == 0]) == pytest.approx(MEDIAN_PFS_AT_ZERO_MONTHS, rel=0.06)
    # lp = 0.7 * group: the Cox coefficient of the group indicator must be the log hazard ratio 0.7.
    frame = pd.DataFrame({
        "x": (lps > 0).astype(float), "t": [d["pfs_months"] for d in draws], "e": [d["pfs_event"] for d in draws],
    })
    fit = CoxPHFitter().fit(frame, "t", "e")
    assert fit.params_["x"] == pytest.approx(0.7, abs=0.08)
    assert 0.5 < frame["e"].mean() < 0.9
