"""Every PyRadiomics setting a parameter file can hold, in the fast engine, against PyRadiomics in the same test.

Each case runs PyRadiomics' extractor and the engine on the same image and region and requires the same feature
names in the same order and every value within a relative 1e-6 (``test_feature_engine.assert_same_features``).
The phantoms are anisotropic (1.5 x 0.7 x 0.8 mm), so a weighting, a distance or a 2D plane that was applied to
the wrong axis would change the values.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from hccrad.features.config import FeatureConfig, ParameterFileError, check_radiomics_params, lbp3d_unavailable
from hccrad.features.engine import region_features
from hccrad.features.engine.angles import texture_angles
from hccrad.features.extract import engine_plan, radiomics_extractor, radiomics_features, region_radiomics
from tests.conftest import shared_path
from tests.test_feature_engine import assert_same_features, sphere, textured_volume

SPACING = (1.5, 0.7, 0.8)
ALL_CLASSES = {name: None for name in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}


def phantom(dtype=np.float32, seed: int = 3) -> tuple[sitk.Image, np.ndarray]:
    volume = textured_volume((20, 40, 40), seed=seed)
    region = sphere(volume.shape, (10, 20, 20), 8.0, SPACING)
    image = sitk.GetImageFromArray((volume * 3).astype(dtype) if dtype == np.int16 else volume.astype(dtype))
    image.SetSpacing(SPACING[::-1])
    image.SetOrigin((-12.0, 30.5, 7.25))
    return image, region


def compare(image, region, params, pad=5, cast_to_float32=True, engine="hccrad") -> dict[str, float]:
    reference = radiomics_features(radiomics_extractor(params, pad), image, region, "R", cast_to_float32)
    ours = region_radiomics(engine, params, pad, cast_to_float32)(image, region, "R")
    assert_same_features(ours, reference)
    return ours


def settings(**values) -> dict:
    return {"setting": {"binWidth": 10, **values}, "imageType": {"Original": {}}, "featureClass": ALL_CLASSES}


@pytest.mark.parametrize("norm", ["no_weighting", "manhattan", "euclidean", "infinity"])
def test_weighting_norms_sum_the_angles_matrices_as_pyradiomics(norm):
    image, region = phantom()
    weighted = compare(image, region, settings(weightingNorm=norm))
    averaged = region_features(image, region, settings(), 5)
    assert weighted["R_original_glcm_Contrast"] != pytest.approx(averaged["original_glcm_Contrast"], rel=1e-3)


@pytest.mark.parametrize("distances", [[2], [1, 2], [3, 1]])
def test_distances_beyond_one_for_glcm_gldm_and_ngtdm(distances):
    image, region = phantom()
    far = compare(image, region, settings(distances=distances))
    near = region_features(image, region, settings(), 5)
    assert far["R_original_glcm_Contrast"] != pytest.approx(near["original_glcm_Contrast"], rel=1e-3)
    assert far["R_original_glrlm_RunPercentage"] == near["original_glrlm_RunPercentage"]  # runs: distance 1 always


@pytest.mark.parametrize("dimension", [0, 1, 2])
def test_force2d_in_every_plane_for_every_class_and_the_2d_wavelet(dimension):
    image, region = phantom()
    params = {"setting": {"binWidth": 10, "force2D": True, "force2Ddimension": dimension},
              "imageType": {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [1.0]}}, "featureClass": ALL_CLASSES}
    features = compare(image, region, params)
    assert any(name.startswith("R_wavelet-LH_") for name in features)  # two-letter bands in 2D
    assert list(features)[-1].startswith("R_log-sigma")


def test_force2d_with_distances_weighting_and_a_two_level_wavelet():
    image, region = phantom()
    compare(image, region, {"setting": {"binWidth": 10, "force2D": True, "force2Ddimension": 1, "distances": [1, 2],
                                        "weightingNorm": "euclidean"},
                            "imageType": {"Wavelet": {"level": 2, "start_level": 1}}, "featureClass": ALL_CLASSES},
            pad=10)


def test_shape2d_of_a_single_slice_and_a_clear_error_for_a_thick_region():
    image, _ = phantom()
    region = np.zeros((20, 40, 40), bool)
    region[:, 10:30, 21] = sphere((20, 40, 1), (10, 20, 0), 8.0, SPACING)[:, 10:30, 0]
    params = {"setting": {"binWidth": 10, "force2D": True, "force2Ddimension": 2},
              "imageType": {"Original": {}}, "featureClass": {"shape2D": None, "glcm": None}}
    features = compare(image, region, params)
    assert features["R_original_shape2D_PixelSurface"] == pytest.approx(region.sum() * 1.5 * 0.7)
    _, thick = phantom()
    with pytest.raises(ValueError, match="shape2D needs a region one voxel thick along force2Ddimension 2"):
        region_features(image, thick, params, 5)


@pytest.mark.parametrize("extra", [{}, {"normalizeScale": 100, "binWidth": 5},
                                   {"normalizeScale": 50, "removeOutliers": 2.0, "binWidth": 5}])
@pytest.mark.parametrize("resampled", [False, True])
def test_normalisation_of_the_whole_image_before_resampling(extra, resampled):
    image, region = phantom()
    setting = {"binWidth": 0.1, "normalize": True, **extra}
    if resampled:
        setting["resampledPixelSpacing"] = [1, 1, 1]
    compare(image, region, {"setting": setting, "imageType": {"Original": {}, "LoG": {"sigma": [1.0]},
                                                               "Gradient": {}}}, pad=8)


@pytest.mark.parametrize("reseg", [{"resegmentRange": [60, 140]}, {"resegmentRange": [80]},
                                   {"resegmentRange": [0.6], "resegmentMode": "relative"},
                                   {"resegmentRange": [-1.5, 1], "resegmentMode": "sigma"},
                                   {"resegmentRange": [60, 140], "resegmentShape": True}])
@pytest.mark.parametrize("resampled", [False, True])
def test_resegmentation_modes_with_and_without_resampling(reseg, resampled):
    image, region = phantom()
    setting = {"binWidth": 10, **reseg, **({"resampledPixelSpacing": [1, 1, 1]} if resampled else {})}
    compare(image, region, {"setting": setting, "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
                            "featureClass": ALL_CLASSES}, pad=6)


def test_resegmentation_that_shrinks_the_box_keeps_pyradiomics_shape_convention():
    """Without resegmentShape PyRadiomics computes shape on the drawn mask cut to the resegmented box."""
    image, region = phantom()
    ramp = sitk.GetArrayFromImage(image) * 0.2 + 5.0 * np.arange(40)[None, None, :]
    image = sitk.GetImageFromArray(ramp.astype(np.float32))
    image.SetSpacing(SPACING[::-1])
    drawn = compare(image, region, settings(resegmentRange=[100]))
    cut = compare(image, region, settings(resegmentRange=[100], resegmentShape=True))
    whole = region_features(image, region, settings(), 5)
    assert drawn["R_original_shape_VoxelVolume"] < whole["original_shape_VoxelVolume"]
    assert cut["R_original_shape_VoxelVolume"] < drawn["R_original_shape_VoxelVolume"]


@pytest.mark.parametrize("image_type", ["Square", "SquareRoot", "Logarithm", "Exponential"])
@pytest.mark.parametrize("extent", ["whole", "preCrop", "resampled"])
def test_square_root_logarithm_and_exponential_images(image_type, extent):
    """Each rescales by the largest |value| of the image PyRadiomics is given: the whole image, or the crop."""
    image, region = phantom()
    setting = {"binWidth": 10, "preCrop": extent == "preCrop",
               **({"resampledPixelSpacing": [1, 1, 1]} if extent == "resampled" else {})}
    compare(image, region, {"setting": setting, "imageType": {image_type: {}}}, pad=6)


@pytest.mark.parametrize("cast_to_float32", [True, False])
@pytest.mark.parametrize("resampled", [False, True])
def test_an_integer_image_as_stored_or_cast(cast_to_float32, resampled):
    image, region = phantom(np.int16)
    setting = {"binWidth": 25, **({"resampledPixelSpacing": [1, 1, 1]} if resampled else {})}
    params = {"setting": setting, "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.0]}, "Wavelet": {},
                                                "Gradient": {}, "Square": {}}}
    compare(image, region, params, pad=8, cast_to_float32=cast_to_float32)


def test_real_sarcoma_ct_as_stored_with_resegmentation_to_soft_tissue():
    """A real int16 CT, as stored, resampled and resegmented to -100..300 HU, as CT radiomics often is."""
    folder = shared_path("reference", "ct", "ibsi_sts_002")
    image = sitk.ReadImage(str(folder / "CT_image.nii.gz"))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "CT_mask.nii.gz"))) > 0
    params = {"setting": {"binWidth": 25, "resampledPixelSpacing": [1, 1, 1], "resegmentRange": [-100, 300]},
              "imageType": {"Original": {}, "LoG": {"sigma": [2.0]}}, "featureClass": ALL_CLASSES}
    compare(image, mask, params, pad=8, cast_to_float32=False)


def test_angles_are_pyradiomics_own():
    from radiomics import cMatrices

    for box in [(1, 5, 5), (2, 3, 4), (5, 5, 5), (3, 1, 7)]:
        for distances in ([1], [2], [1, 3]):
            for dimension in (None, 0, 2):
                for both in (False, True):
                    ours = texture_angles(box, distances, dimension, both)
                    try:
                        theirs = cMatrices.generate_angles(np.array(box), np.array(distances), both,
                                                           dimension is not None, dimension or 0)
                    except RuntimeError:  # PyRadiomics' C code refuses to build an empty set
                        theirs = np.zeros((0, 3), dtype=np.int64)
                    assert np.array_equal(ours, theirs), (box, distances, dimension, both)


def test_auto_leaves_lbp2d_to_pyradiomics_in_pyradiomics_order():
    image, region = phantom()
    params = {"setting": {"binWidth": 10}, "imageType": {"Original": {}, "LBP2D": {}, "LoG": {"sigma": [1.0]}},
              "featureClass": {"shape": None, "firstorder": None, "glszm": None}}
    features = compare(image, region, params, engine="auto")
    assert any(name.startswith("R_lbp-2D_") for name in features)
    plan = engine_plan("auto", params)
    assert plan["hccrad"] == ["shape", "Original", "LoG"] and plan["pyradiomics"] == ["LBP2D"]
    assert engine_plan("hccrad", params)["pyradiomics"] == []
    only_lbp = {**params, "imageType": {"LBP2D": {"lbp2DRadius": 2}}}
    compare(image, region, only_lbp, engine="auto")


def test_the_settings_as_pyradiomics_writes_them_are_accepted():
    """The settings dict PyRadiomics itself records (no-op values included) passes both checks and computes."""
    written = {"distances": [1], "voxelArrayShift": 2000, "additionalInfo": True, "force2D": False,
               "interpolator": None, "resampledPixelSpacing": None, "gldm_a": 0, "weightingNorm": None,
               "normalizeScale": 1, "normalize": False, "force2Ddimension": 0, "removeOutliers": None,
               "minimumROISize": None, "binWidth": 25, "label": 1, "minimumROIDimensions": 1, "preCrop": False,
               "resegmentRange": None, "padDistance": 5, "correctMask": True, "geometryTolerance": 1e-4}
    params = check_radiomics_params({"setting": written, "imageType": {"Original": {}},
                                     "voxelSetting": {"kernelRadius": 2}}, "written.yaml")
    image, region = phantom()
    compare(image, region, {key: value for key, value in params.items() if key != "voxelSetting"})


@pytest.mark.skipif(not lbp3d_unavailable(), reason="LBP3D can run in this installation")
def test_lbp3d_is_refused_where_pyradiomics_would_skip_it_silently(tmp_path):
    path = tmp_path / "lbp3d.yaml"
    path.write_text("imageType:\n  Original: {}\n  LBP3D: {}\n")
    with pytest.raises(ParameterFileError, match="LBP3D cannot be computed in this installation.*without a word"):
        FeatureConfig(params=str(path)).radiomics_params()
