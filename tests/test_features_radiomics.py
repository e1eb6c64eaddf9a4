"""PyRadiomics features: the paper's 1130 per region, its factor names, and cropping that changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hccrad.features.config import FeatureConfig, crop_pad_voxels
from hccrad.features.extract import radiomics_extractor, radiomics_features
from hccrad.features.names import PAPER_FIGURE1_CODES, PAPER_TABLE3, paper_column


def textured_phantom(seed: int = 0):
    """A CT-like volume (1.5 x 0.7 x 0.7 mm) with a heterogeneous spherical tumor in textured liver."""
    rng = np.random.default_rng(seed)
    shape, spacing = (36, 90, 90), (1.5, 0.7, 0.7)
    texture = ndimage.gaussian_filter(rng.normal(size=shape), (1.0, 2.0, 2.0))
    texture /= texture.std()
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    distance = np.sqrt(((z - 18) * spacing[0]) ** 2 + ((y - 45) * spacing[1]) ** 2 + ((x - 45) * spacing[2]) ** 2)
    tumor = distance <= 10.0
    ct = np.where(tumor, 80 + 25 * texture - 40 * (distance < 4), 115 + 8 * texture).astype(np.float32)
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing(spacing[::-1])
    return image, tumor


PAPER_LIKE_NATIVE = FeatureConfig(params="demo").radiomics_params()


@pytest.fixture(scope="module")
def phantom_features():
    image, tumor = textured_phantom()
    extractor = radiomics_extractor(PAPER_LIKE_NATIVE, 30)
    return radiomics_features(extractor, image, tumor, "Tumor")


def test_paper_parameter_file_defines_1130_features_per_region(phantom_features):
    assert len(phantom_features) == 1130
    shape = [name for name in phantom_features if "_shape_" in name]
    assert len(shape) == 14
    image_types = {name.split("_")[1] for name in phantom_features if "_shape_" not in name}
    assert image_types == {"original", "gradient", "log-sigma-1-mm-3D", "log-sigma-3-mm-3D",
                           *(f"wavelet-{band}" for band in ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH"))}
    assert all(np.isfinite(value) for value in phantom_features.values())
    paper = FeatureConfig().radiomics_params()
    assert paper["setting"]["binWidth"] == 25
    assert paper["setting"]["resampledPixelSpacing"] == [0.647, 0.647, 1.5]
    assert paper["setting"]["interpolator"] == "sitkBSpline"
    assert paper["imageType"] == PAPER_LIKE_NATIVE["imageType"]


def test_every_paper_factor_maps_to_a_produced_column(phantom_features):
    image, tumor = textured_phantom()
    liver = ~tumor
    extractor = radiomics_extractor(PAPER_LIKE_NATIVE, 30)
    produced = set(phantom_features) | set(radiomics_features(extractor, image, liver, "Rliver"))
    produced |= {"Tumor_HU_median", "Tumor_to_Rliver_volume_ratio", "afp", "child_pugh", "bclc", "treatment"}
    for name in PAPER_TABLE3:
        assert paper_column(name) in produced, name
    for code in PAPER_FIGURE1_CODES:
        assert paper_column(code) in produced, code
    assert len(PAPER_TABLE3) == 4 + 11 + 13 and len(PAPER_FIGURE1_CODES) == 28


def relative_differences(first: dict, second: dict) -> dict[str, float]:
    out = {}
    for name, a in first.items():
        b = second[name]
        scale = max(abs(a), abs(b), 1e-9)
        out[name] = abs(a - b) / scale
    return out


def test_cropping_with_the_sigma_derived_pad_matches_the_uncropped_volume():
    image, tumor = textured_phantom(seed=1)
    params = {"setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}, "LoG": {"sigma": [1, 3]},
                                                                       "Wavelet": {}},
              "featureClass": {"firstorder": None, "glcm": None, "glszm": None}}
    pad = crop_pad_voxels(params, (1.5, 0.7, 0.7), FeatureConfig().pad_sigmas)
    assert pad == 24  # 5 sigma (15 mm) over 0.7 mm, plus 2
    uncropped = dict(params, setting={**params["setting"], "preCrop": False})
    cropped = dict(params, setting={**params["setting"], "preCrop": True})
    reference = radiomics_features(radiomics_extractor(uncropped, pad), image, tumor, "T")
    ours = radiomics_features(radiomics_extractor(cropped, pad), image, tumor, "T")
    differences = relative_differences(reference, ours)
    worst = max(differences, key=differences.get)
    assert differences[worst] < 1e-3, (worst, differences[worst])
    # PyRadiomics' default pad of 5 voxels is not enough for sigma 3 mm: that is why the pad is derived.
    small = radiomics_features(radiomics_extractor(cropped, 5), image, tumor, "T")
    small_differences = relative_differences(reference, small)
    assert max(v for k, v in small_differences.items() if "sigma-3" in k) > 1e-3
