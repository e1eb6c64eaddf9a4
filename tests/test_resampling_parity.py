"""Resampling on a real CT equal to PyRadiomics' at every spacing, pad and interpolator.

The real DICOM series (TotalSegmentator's example, 0.977 x 0.977 x 2 mm, int16) with its liver and a lesion
drawn in. PyRadiomics resamples only the region's bounding box plus ``padDistance`` voxels, on a grid whose origin
moves with the pad; SimpleITK then resolves exact ties (a nearest-neighbour position at .5, an upsampled voxel on
an input centre) according to that origin, so its resampled mask depends on the pad. The engine must give the same
mask, voxel for voxel, and the same image, bit for bit, at every pad, and therefore every feature.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from hccrad.features.engine import images, region_features
from hccrad.features.extract import radiomics_extractor, radiomics_features
from tests.conftest import shared_path
from tests.test_features_cohort import draw_lesion, totalseg_labels

SPACINGS = (1.0, 2.0, 3.0)
PADS = (3, 5, 10)
INTERPOLATORS = ("sitkBSpline", "sitkLinear", "sitkNearestNeighbor")
#: every feature within this relative difference of PyRadiomics' (absolute near zero)
RELATIVE, ABSOLUTE = 1e-9, 1e-12


@pytest.fixture(scope="module")
def real_case() -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """The real series as stored (int16), the drawn tumor and the remnant liver (boolean, z y x)."""
    from hccrad.io.images import read_image, read_mask

    folder = shared_path("reference", "ct", "totalseg_dicom")
    series = read_image(folder / "series")
    segmentation = read_mask(folder / "example_seg_dicom.nii.gz", series, allowed_labels=None)
    labels = draw_lesion(totalseg_labels(segmentation), series.GetSpacing()[::-1], 12.0)
    return series, labels == 2, labels == 1


@pytest.fixture(scope="module")
def coarse_case() -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """The real abdominal CT at 3 mm (NIfTI, stored as int16), where resampling to 2 mm puts every third output
    voxel at exactly .5 between two input voxels: the case whose mask depended on the pad."""
    folder = shared_path("reference", "ct", "totalseg_abdomen")
    image = sitk.Cast(sitk.ReadImage(str(folder / "example_ct_sm.nii.gz")), sitk.sitkInt16)
    labels = draw_lesion(totalseg_labels(sitk.ReadImage(str(folder / "example_seg.nii.gz"))),
                         image.GetSpacing()[::-1], 15.0)
    return image, labels == 2, labels == 1


def _pyradiomics_resampled(image: sitk.Image, region: np.ndarray, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    from radiomics import imageoperations

    resampled_image, resampled_mask = imageoperations.resampleImage(image, images.region_image(region, image),
                                                                    **settings)
    return sitk.GetArrayFromImage(resampled_image), sitk.GetArrayFromImage(resampled_mask) == 1


@pytest.mark.parametrize("interpolator", INTERPOLATORS)
@pytest.mark.parametrize("as_stored", [False, True], ids=["float32", "int16"])
@pytest.mark.parametrize("case", ["real_case", "coarse_case"], ids=["dicom-0.98mm", "nifti-3mm"])
def test_resampled_image_and_mask_are_pyradiomics_at_every_spacing_and_pad(case, interpolator, as_stored, request):
    series, tumor, remnant_liver = request.getfixturevalue(case)
    image = series if as_stored else sitk.Cast(series, sitk.sitkFloat32)
    counts = {}
    for spacing in SPACINGS:
        for pad in PADS:
            settings = {"resampledPixelSpacing": [spacing] * 3, "interpolator": interpolator, "padDistance": pad,
                        "label": 1}
            for name, region in (("tumor", tumor), ("remnant liver", remnant_liver)):
                expected_image, expected_mask = _pyradiomics_resampled(image, region, settings)
                ours_image, ours_mask = images.prepare(image, region, settings, pad, convert=lambda crop: crop)
                ours_image = sitk.GetArrayFromImage(ours_image)
                assert ours_mask.sum() == expected_mask.sum(), (name, spacing, pad)
                np.testing.assert_array_equal(ours_mask, expected_mask, err_msg=f"{name} {spacing} mm pad {pad}")
                np.testing.assert_array_equal(ours_image, expected_image, err_msg=f"{name} {spacing} mm pad {pad}")
                counts[name, spacing, pad] = int(expected_mask.sum())
    if case == "coarse_case":  # what this guards: PyRadiomics' own mask changes with the pad (the .5 ties move)
        assert len({counts["remnant liver", 2.0, pad] for pad in PADS}) > 1


def pyradiomics(image: sitk.Image, region: np.ndarray, params: dict, pad: int, as_stored: bool = False
                ) -> dict[str, float]:
    """PyRadiomics' own features, the image cast to float32 or (``as_stored``) as given."""
    return radiomics_features(radiomics_extractor(params, pad), image, region, "", cast_to_float32=not as_stored)


def _assert_equal_features(ours: dict[str, float], reference: dict[str, float], context: str) -> None:
    assert list(ours) == list(reference), context
    worst, worst_name = 0.0, None
    for name, expected in reference.items():
        value = ours[name]
        if (math.isnan(expected) and math.isnan(value)) or abs(value - expected) <= ABSOLUTE:
            continue
        relative = abs(value - expected) / max(abs(value), abs(expected))
        if not relative <= worst:
            worst, worst_name = relative, name
    assert worst <= RELATIVE, (f"{context}: worst feature {worst_name}: ours {ours[worst_name]}, PyRadiomics "
                               f"{reference[worst_name]}, relative {worst:.3g}")


FEATURE_PARAMS = {"setting": {"binWidth": 25, "label": 1},
                  "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 3.0]}, "Gradient": {}}}


@pytest.mark.parametrize("spacing", SPACINGS)
def test_every_feature_is_pyradiomics_at_every_pad(real_case, spacing):
    """Every feature of the drawn tumor, B-spline resampled to ``spacing`` mm, at pads 3, 5 and 10, with the CT
    cast to float32 (hccrad's default) and as stored (int16)."""
    series, tumor, _ = real_case
    for as_stored, image in ((False, sitk.Cast(series, sitk.sitkFloat32)), (True, series)):
        for pad in PADS:
            params = {**FEATURE_PARAMS, "setting": {**FEATURE_PARAMS["setting"],
                                                    "resampledPixelSpacing": [spacing] * 3}}
            ours = region_features(image, tumor, params, pad, cast_to_float32=not as_stored)
            _assert_equal_features(ours, pyradiomics(image, tumor, params, pad, as_stored),
                                   f"{spacing} mm, pad {pad}, {'int16' if as_stored else 'float32'}")


@pytest.mark.parametrize("interpolator", ["sitkLinear", "sitkNearestNeighbor"])
def test_every_feature_is_pyradiomics_with_other_interpolators(real_case, interpolator):
    series, tumor, _ = real_case
    image = sitk.Cast(series, sitk.sitkFloat32)
    for spacing in SPACINGS:
        params = {**FEATURE_PARAMS, "setting": {**FEATURE_PARAMS["setting"], "interpolator": interpolator,
                                                "resampledPixelSpacing": [spacing] * 3}}
        _assert_equal_features(region_features(image, tumor, params, 10), pyradiomics(image, tumor, params, 10),
                               f"{interpolator}, {spacing} mm")


@pytest.mark.parametrize("case", ["real_case", "coarse_case"], ids=["dicom-0.98mm", "nifti-3mm"])
def test_no_interpolator_key_with_precrop_on_the_remnant_liver(case, request):
    """No ``interpolator`` key (PyRadiomics' default, a B-spline), ``resampledPixelSpacing: [2, 2, 2]`` and
    ``preCrop: true`` (ignored by PyRadiomics when it resamples) on the remnant liver, a large region reaching the
    image's edge; on the 3 mm CT every third output voxel is a .5 tie."""
    series, _, remnant_liver = request.getfixturevalue(case)
    image = sitk.Cast(series, sitk.sitkFloat32)
    params = {"setting": {"binWidth": 25, "label": 1, "resampledPixelSpacing": [2, 2, 2], "preCrop": True},
              "imageType": {"Original": {}}, "featureClass": {"firstorder": None, "shape": None}}
    for pad in PADS:
        ours = region_features(image, remnant_liver, params, pad)
        _assert_equal_features(ours, pyradiomics(image, remnant_liver, params, pad), f"pad {pad}")
