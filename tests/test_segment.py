"""Segmentation post-processing on hand-built volumes and DSC / HD95 on analytic cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.segment import compare_labels, dice, hd95, postprocess_labels


def ball(shape, center, radius, spacing=(1.0, 1.0, 1.0)):
    grid = np.indices(shape).astype(float)
    distance2 = sum(((grid[a] - center[a]) * spacing[a]) ** 2 for a in range(3))
    return distance2 <= radius**2


def test_two_tumors_the_larger_stays_and_the_smaller_becomes_liver():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[5:35, 5:35, 5:35] = 1
    labels[ball(labels.shape, (15, 15, 15), 6)] = 2
    labels[ball(labels.shape, (28, 28, 28), 3)] = 2
    out = postprocess_labels(labels)
    assert out[15, 15, 15] == 2 and out[28, 28, 28] == 1
    assert (out == 2).sum() == ball(labels.shape, (15, 15, 15), 6).sum()


def test_holes_are_filled_in_the_tumor_and_in_the_liver():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[5:35, 5:35, 5:35] = 1
    labels[ball(labels.shape, (20, 20, 20), 8)] = 2
    labels[20, 20, 20] = 0  # a hole inside the tumor
    labels[8:10, 8:10, 8:10] = 0  # a hole inside the liver
    out = postprocess_labels(labels)
    assert out[20, 20, 20] == 2
    assert (out[8:10, 8:10, 8:10] == 1).all()
    assert (out[0] == 0).all()  # background outside stays background


def test_tumor_outside_the_liver_is_removed_even_when_larger():
    labels = np.zeros((40, 40, 60), np.uint8)
    labels[5:35, 5:35, 5:30] = 1
    labels[ball(labels.shape, (20, 20, 15), 4)] = 2  # in the liver
    labels[ball(labels.shape, (20, 20, 48), 7)] = 2  # a larger false positive far from the liver
    out = postprocess_labels(labels)
    assert out[20, 20, 15] == 2 and out[20, 20, 48] == 0


def test_dice_and_hd95_of_a_shifted_sphere_with_anisotropic_spacing():
    spacing = (2.0, 0.5, 0.5)
    shape = (40, 120, 120)
    reference = ball(shape, (20, 60, 60), 12.0, spacing)
    shifted = ball(shape, (20, 66, 60), 12.0, spacing)  # 6 voxels x 0.5 mm = 3 mm along y
    assert dice(reference, reference) == 1.0
    # Two spheres of radius R shifted by d overlap in a lens: DSC = 1 - 3d/(4R) + d^3/(16 R^3).
    d, radius = 3.0, 12.0
    assert dice(reference, shifted) == pytest.approx(1 - 3 * d / (4 * radius) + d**3 / (16 * radius**3), abs=0.01)
    # Surface distances of a shifted sphere range from 0 to d: the 95th percentile is just below d.
    assert 0.8 * d <= hd95(reference, shifted, spacing) <= d + 0.5


def test_hd95_of_two_spheres_a_known_distance_apart():
    shape = (30, 30, 90)
    first = ball(shape, (15, 15, 20), 6)
    second = ball(shape, (15, 15, 60), 6)
    # Nearest surfaces are 40 - 12 = 28 mm apart, farthest 40 mm: the 95th percentile lies between.
    value = hd95(first, second, (1.0, 1.0, 1.0))
    assert 28 <= value <= 40


def test_a_distant_false_positive_blob_and_the_pooled_percentile():
    shape = (40, 40, 120)
    reference = ball(shape, (20, 20, 20), 10)
    # A tiny blob 80 mm away: under 5% of the pooled surface voxels, so the pooled 95th percentile ignores it
    # (MONAI's max-of-directed-percentiles would not); Dice barely moves.
    tiny = reference | ball(shape, (20, 20, 100), 3)
    assert dice(tiny, reference) > 0.97
    assert hd95(tiny, reference, (1.0, 1.0, 1.0)) < 2
    # A blob holding well over 5% of the surface voxels moves HD95 to about its distance.
    larger = reference | ball(shape, (20, 20, 100), 7)
    assert dice(larger, reference) > 0.7
    assert hd95(larger, reference, (1.0, 1.0, 1.0)) > 60


def test_empty_masks_follow_the_written_rule():
    empty = np.zeros((5, 5, 5), bool)
    full = np.ones((5, 5, 5), bool)
    assert dice(empty, empty) == 1.0 and hd95(empty, empty, (1, 1, 1)) == 0.0
    assert dice(full, empty) == 0.0 and math.isnan(hd95(full, empty, (1, 1, 1)))
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    rows = {row["region"]: row for row in compare_labels(labels, labels, (1, 1, 1))}
    assert rows["tumor"]["note"] == "both empty" and rows["tumor"]["dsc"] == 1.0
    with_tumor = labels.copy()
    with_tumor[2, 2, 2] = 2
    rows = {row["region"]: row for row in compare_labels(labels, with_tumor, (1, 1, 1))}
    assert rows["tumor"]["note"] == "prediction empty" and math.isnan(rows["tumor"]["hd95_mm"])


def test_segment_evaluate_command_summarises_per_label_and_center(small_cohort, tmp_path):
    from hccrad.io import load_study

    study = load_study(small_cohort)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for record in study.patients[:6]:
        reference = sitk.ReadImage(str(record.mask))
        array = sitk.GetArrayFromImage(reference)
        eroded = array.copy()
        eroded[(array == 2) & ~np.roll(array == 2, 1, axis=2)] = 1  # shave one tumor boundary layer
        image = sitk.GetImageFromArray(eroded)
        image.CopyInformation(reference)
        sitk.WriteImage(image, str(predictions / f"{record.patient_id}.nii.gz"))
    settings = yaml.safe_load(small_cohort.read_text())
    settings["output_dir"] = str(tmp_path / "out")
    manifest = tmp_path / "study.yaml"
    settings["clinical_table"] = str(small_cohort.parent / "clinical.csv")
    manifest.write_text(yaml.safe_dump(settings))
    # image paths in the clinical table are relative to the original cohort folder
    clinical = pd.read_csv(small_cohort.parent / "clinical.csv")
    clinical["ct"] = [str(small_cohort.parent / p) for p in clinical["ct"]]
    clinical["mask"] = [str(small_cohort.parent / p) for p in clinical["mask"]]
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    settings["clinical_table"] = "clinical.csv"
    manifest.write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(app, ["segment", "evaluate", str(manifest), "--predictions", str(predictions)])
    assert result.exit_code == 0, result.output
    cases = pd.read_csv(tmp_path / "out" / "segmentation" / "evaluation.csv")
    assert len(cases) == 12 and set(cases["region"]) == {"liver", "tumor"}
    assert (cases.loc[cases["region"] == "liver", "dsc"] == 1.0).all()
    tumor = cases[cases["region"] == "tumor"]
    assert tumor["dsc"].between(0.5, 0.999).all() and (tumor["hd95_mm"] > 0).all()
    summary = pd.read_csv(tmp_path / "out" / "segmentation" / "evaluation_summary.csv")
    assert {"all"} <= set(summary["center"]) and len(set(summary["center"])) > 2


def test_totalsegmentator_label_mapping_on_built_masks():
    from hccrad.segment.totalseg import TotalSegmentatorUnavailable, map_totalsegmentator, run_totalsegmentator

    total = np.zeros((20, 40, 80), np.uint8)
    total[5:15, 5:35, 5:35] = 5  # liver
    total[8:12, 18:22, 35:40] = 64  # portal vein entering the liver
    total[8:12, 18:22, 70:78] = 64  # splenic vein, far away
    total[8:12, 25:30, 60:65] = 1  # spleen: not mapped
    vessels = np.zeros_like(total)
    vessels[8:12, 10:16, 10:16] = 2  # tumor inside the liver
    vessels[6:8, 20:24, 20:24] = 1  # liver vessels: stay liver
    labels = map_totalsegmentator(total, vessels, (1.0, 1.0, 1.0))
    assert (labels[8:12, 10:16, 10:16] == 2).all()
    assert (labels[6:8, 20:24, 20:24] == 1).all()
    assert (labels[8:12, 18:22, 35:40] == 3).all() and (labels[8:12, 18:22, 70:78] == 0).all()
    assert (labels[8:12, 25:30, 60:65] == 0).all()
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    # Without the package (or its weights) the backend says what is missing instead of failing obscurely.
    try:
        import totalsegmentator  # noqa: F401
    except ImportError:
        with pytest.raises(TotalSegmentatorUnavailable, match="pip install TotalSegmentator"):
            run_totalsegmentator(Path("ct.nii.gz"), Path("work"))
