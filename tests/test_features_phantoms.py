"""Features on analytic phantoms: volumes, HU statistics, portal-vein diameter and the region definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hccrad.features.morphology import attenuation_statistics, largest_inscribed_diameter_mm, morphological_factors
from hccrad.features.regions import RegionError, check_region, remnant_liver_mask, tumor_mask


def sphere(shape, spacing, center_mm, radius_mm):
    z, y, x = (np.arange(n) * s for n, s in zip(shape, spacing, strict=True))
    return ((z[:, None, None] - center_mm[0]) ** 2 + (y[None, :, None] - center_mm[1]) ** 2
            + (x[None, None, :] - center_mm[2]) ** 2) <= radius_mm**2


def test_sphere_volume_converges_to_four_thirds_pi_r_cubed():
    spacing = (0.5, 0.4, 0.4)
    mask = sphere((120, 150, 150), spacing, (30, 30, 30), 25.0)
    labels = mask.astype(np.uint8) * 2
    labels[(labels == 0)] = 1  # everything else liver
    ct = np.zeros(labels.shape, np.float32)
    factors, _ = morphological_factors(ct, spacing, tumor_mask(labels), remnant_liver_mask(labels), 12.0)
    expected_ml = 4 / 3 * math.pi * 25.0**3 / 1000
    assert factors["Tumor_volume_mL"] == pytest.approx(expected_ml, rel=0.005)
    total_ml = np.prod(labels.shape) * np.prod(spacing) / 1000
    assert factors["Rliver_volume_mL"] == pytest.approx(total_ml - factors["Tumor_volume_mL"])
    assert factors["Tumor_to_Rliver_volume_ratio"] == pytest.approx(expected_ml / (total_ml - expected_ml), rel=0.01)
    assert factors["Rliver_volume_to_PV_diameter_mL_per_mm"] == pytest.approx(factors["Rliver_volume_mL"] / 12.0)


def test_hu_statistics_of_known_distributions():
    rng = np.random.default_rng(0)
    normal = rng.normal(60.0, 15.0, size=400_000)
    statistics = attenuation_statistics(normal, "Tumor")
    z75 = stats.norm.ppf(0.75)
    assert statistics["Tumor_HU_mean"] == pytest.approx(60.0, abs=0.1)
    assert statistics["Tumor_HU_median"] == pytest.approx(60.0, abs=0.15)
    assert statistics["Tumor_HU_p25"] == pytest.approx(60.0 - 15.0 * z75, abs=0.2)
    assert statistics["Tumor_HU_p75"] == pytest.approx(60.0 + 15.0 * z75, abs=0.2)
    assert statistics["Tumor_HU_IQR"] == pytest.approx(2 * 15.0 * z75, abs=0.3)
    # The "rate" is a position in the HU range, distinct from the percentiles.
    uniform = np.arange(-50, 151, dtype=float)  # -50 ... 150
    rate = attenuation_statistics(uniform, "R", rate_definition="range")
    assert rate["R_HU_rate25"] == pytest.approx(-50 + 0.25 * 200)
    assert rate["R_HU_rate75"] == pytest.approx(-50 + 0.75 * 200)
    skewed = np.concatenate([np.full(90, 10.0), np.full(10, 110.0)])
    values = attenuation_statistics(skewed, "S", rate_definition="range")
    assert values["S_HU_p75"] == 10.0 and values["S_HU_rate75"] == 85.0
    robust = attenuation_statistics(np.r_[np.zeros(1000), 5000.0], "X")  # the default definition
    assert robust["X_HU_rate75"] == 0.0  # the single outlier beyond the 99th percentile does not count
    stray = attenuation_statistics(np.r_[np.full(1000, 40.0), -1000.0], "Y")  # one voxel of air in the mask
    assert stray["Y_HU_rate25"] == 40.0
    assert attenuation_statistics(np.r_[np.full(1000, 40.0), -1000.0], "Y", rate_definition="range")[
        "Y_HU_rate25"] == pytest.approx(-1000 + 0.25 * 1040)


def test_portal_vein_diameter_of_a_cylinder_with_anisotropic_spacing():
    spacing = (2.0, 0.5, 0.5)
    radius = 6.0
    z, y, x = (np.arange(n) * s for n, s in zip((30, 80, 80), spacing, strict=True))
    cylinder = np.broadcast_to(((y[:, None] - 20) ** 2 + (x[None, :] - 20) ** 2) <= radius**2, (30, 80, 80))
    diameter = largest_inscribed_diameter_mm(cylinder.copy(), spacing)
    # 2 x max EDT lies between the true diameter and the diameter plus two in-plane voxels.
    assert 2 * radius <= diameter <= 2 * radius + 2 * 0.5
    assert math.isnan(largest_inscribed_diameter_mm(np.zeros((3, 3, 3), bool), spacing))


def test_missing_portal_vein_diameter_leaves_the_ratio_missing_with_a_reason():
    labels = np.ones((10, 10, 10), np.uint8)
    labels[3:6, 3:6, 3:6] = 2
    factors, notes = morphological_factors(np.zeros(labels.shape), (1, 1, 1), tumor_mask(labels),
                                           remnant_liver_mask(labels), None)
    assert math.isnan(factors["Rliver_volume_to_PV_diameter_mL_per_mm"])
    assert "portal-vein diameter" in notes["Rliver_volume_to_PV_diameter_mL_per_mm"]


def test_regions_tumor_is_the_largest_component_and_rliver_excludes_every_tumor_voxel():
    labels = np.ones((40, 40, 40), np.uint8)
    labels[5:15, 5:15, 5:15] = 2  # 1000 voxels
    labels[25:28, 25:28, 25:28] = 2  # 27 voxels: a satellite
    labels[30:32, 2:4, 2:4] = 2  # touching diagonally? no: separate 8-voxel blob
    tumor = tumor_mask(labels)
    assert tumor.sum() == 1000 and tumor[10, 10, 10] and not tumor[26, 26, 26]
    rliver = remnant_liver_mask(labels)
    assert not (rliver & (labels == 2)).any()
    assert rliver.sum() == (labels == 1).sum()


def test_rliver_portal_vein_rule():
    labels = np.zeros((5, 30, 30), np.uint8)
    labels[:, 5:25, 5:25] = 1
    labels[:, 12:15, 12:15] = 3  # a branch enclosed by liver in every slice
    labels[:, 20:30, 26:29] = 3  # a trunk outside the liver, touching its border
    with_vein = remnant_liver_mask(labels)
    without_vein = remnant_liver_mask(labels, exclude_portal_vein=True)
    assert with_vein.sum() - without_vein.sum() == 5 * 9
    assert not with_vein[:, 20:30, 26:29].any()


def test_empty_or_tiny_regions_fail_clearly():
    with pytest.raises(RegionError, match="Tumor region is empty"):
        check_region(np.zeros((4, 4, 4), bool), "Tumor", 27)
    tiny = np.zeros((4, 4, 4), bool)
    tiny[0, 0, :3] = True
    with pytest.raises(RegionError, match="3 voxels, fewer than the minimum 27"):
        check_region(tiny, "Tumor", 27)
