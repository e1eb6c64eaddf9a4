"""The fast engine's entry point: PyRadiomics' features of one region from a PyRadiomics parameter set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad.features.engine import images, texture
from hccrad.features.engine.shape import shape_features
from hccrad.io.errors import InputError
from hccrad.io.images import spacing_zyx
from hccrad.io.masks import bounding_box

#: Version of the engine's arithmetic; part of every case fingerprint.
ENGINE_VERSION = "3"

SUPPORTED_IMAGE_TYPES = ("Original", "Wavelet", "LoG", "Gradient")
SUPPORTED_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: Settings the engine reads (PyRadiomics' defaults apply when absent); any other setting is refused rather than
#: ignored, and some of these only with their default value (see :func:`check_params`).
SUPPORTED_SETTINGS = frozenset({
    "binWidth", "binCount", "resampledPixelSpacing", "interpolator", "padDistance", "label", "preCrop",
    "correctMask", "geometryTolerance", "normalize", "minimumROIDimensions", "minimumROISize", "voxelArrayShift",
    "symmetricalGLCM", "gldm_a", "distances", "weightingNorm", "force2D", "sigma", "wavelet", "level",
    "start_level", "gradientUseSpacing", "additionalInfo", "enableCExtensions",
})


class UnsupportedSetting(InputError, ValueError):
    """A PyRadiomics setting the fast engine does not implement (use ``engine: pyradiomics``)."""


def check_params(params: dict[str, Any]) -> None:
    """Refuse parameters the engine would not reproduce exactly, naming each one."""
    settings = params.get("setting") or {}
    problems = []
    for key in settings:
        if key not in SUPPORTED_SETTINGS:
            problems.append(f"setting '{key}' is not implemented")
    if settings.get("normalize"):
        problems.append("'normalize: true' is not implemented")
    if settings.get("force2D"):
        problems.append("'force2D: true' is not implemented")
    if settings.get("weightingNorm") is not None:  # no_weighting too: PyRadiomics then sums the 13 directions
        problems.append(f"'weightingNorm: {settings['weightingNorm']}' is not implemented (only none: the "
                        "directions' features averaged)")
    if list(settings.get("distances", [1])) != [1]:
        problems.append("'distances' other than [1] are not implemented")
    for image_type, custom in (params.get("imageType") or {}).items():
        if image_type not in SUPPORTED_IMAGE_TYPES:
            problems.append(f"image type '{image_type}' is not implemented")
        for key in (custom or {}):
            if key not in SUPPORTED_SETTINGS:
                problems.append(f"setting '{key}' of image type '{image_type}' is not implemented")
    for feature_class in (params.get("featureClass") or {}):
        if feature_class not in SUPPORTED_CLASSES:
            problems.append(f"feature class '{feature_class}' is not implemented")
    if problems:
        raise UnsupportedSetting("the hccrad feature engine cannot reproduce these PyRadiomics parameters: "
                                 + "; ".join(problems) + " (set features: {engine: pyradiomics})")


def _check_dimensions(box: tuple[slice, ...], settings: dict[str, Any], n_voxels: int) -> None:
    extent = np.array([b.stop - b.start for b in box])
    n_dims = int(np.sum(extent > 1))
    minimum = settings.get("minimumROIDimensions", 2)
    if n_dims == 0:
        raise ValueError("mask only contains 1 segmented voxel! Cannot extract features for a single voxel.")
    if n_dims < minimum:
        raise ValueError(f"mask has too few dimensions (number of dimensions {n_dims}, minimum required {minimum})")
    minimum_size = settings.get("minimumROISize")
    if minimum_size is not None and n_voxels <= minimum_size:
        raise ValueError(f"Size of the ROI is too small (minimum size: {minimum_size}, ROI size: {n_voxels})")


def _filtered_images(image: sitk.Image, image_types: dict[str, Any], settings: dict[str, Any],
                     box: tuple[slice, slice, slice]) -> Iterator[tuple[str, np.ndarray, dict[str, Any]]]:
    """(name, array z y x cut to ``box``, settings with the image type's own) of every enabled image type, one at
    a time. An array may be a view of a filtered image that lives until the next one is made."""
    for image_type, custom in image_types.items():
        options = {**settings, **(custom or {})}
        if image_type == "Original":
            yield "original", sitk.GetArrayViewFromImage(image)[box], options
        elif image_type == "LoG":
            for name, filtered in images.log_images(image, list(options.get("sigma", [])), box):
                yield name, filtered, options
        elif image_type == "Wavelet":
            for name, band in images.wavelet_images(image, options.get("wavelet", "coif1"),
                                                    options.get("level", 1), options.get("start_level", 0), box):
                yield name, band, options
        elif image_type == "Gradient":
            yield "gradient", images.gradient_image(image, options.get("gradientUseSpacing", True), box), options


def _class_features(values: np.ndarray, box_mask: np.ndarray, classes: dict[str, Any], options: dict[str, Any],
                    voxel_volume: float) -> dict[str, dict[str, float]]:
    """Every texture class's features of one filtered image's region ``values`` (in ``box_mask`` order)."""
    levels = texture.discretise(values, options)
    gray_levels = np.flatnonzero(np.bincount(levels)).astype(np.int64)
    grid = texture.RegionGrid(levels, box_mask, int(options.get("gldm_a", 0)))
    out: dict[str, dict[str, float]] = {}
    neighbourhood = None
    for feature_class in classes:
        if feature_class == "firstorder":
            out[feature_class] = texture.firstorder_features(values, levels, voxel_volume,
                                                             options.get("voxelArrayShift", 0))
        elif feature_class == "glcm":
            out[feature_class] = texture.glcm_features(grid, gray_levels,
                                                       options.get("symmetricalGLCM", True))
        elif feature_class == "glrlm":
            out[feature_class] = texture.glrlm_features(grid, gray_levels)
        elif feature_class == "glszm":
            out[feature_class] = texture.glszm_features(grid, gray_levels)
        elif feature_class in ("gldm", "ngtdm"):
            if neighbourhood is None:
                neighbourhood = texture.neighbourhood_features(grid, gray_levels)
            out[feature_class] = neighbourhood[0] if feature_class == "gldm" else neighbourhood[1]
    return out


def _selected(features: dict[str, float], wanted: Any) -> dict[str, float]:
    """All features of a class (``None`` or empty list), else the named ones in the given order."""
    if not wanted:  # PyRadiomics' order: its feature methods sorted by name
        return dict(sorted(features.items(), key=lambda item: f"get{item[0]}FeatureValue"))
    return {name: features[name] for name in wanted}


def region_features(image: sitk.Image, region: np.ndarray, params: dict[str, Any], pad: int
                    ) -> dict[str, float]:
    """PyRadiomics' features of one region, with PyRadiomics' names (``original_shape_Elongation``, ...).

    Parameters
    ----------
    image
        The CT with its geometry, any pixel type: the engine computes on its values cast to float32, which is the
        image hccrad gives PyRadiomics (it casts only the region's crop, a cheaper way to the same values).
    region
        Boolean mask (z, y, x) on the image grid.
    params
        A PyRadiomics parameter set (``setting``, ``imageType``, ``featureClass``).
    pad
        Voxels of margin around the region before filtering (PyRadiomics' ``padDistance``).
    """
    check_params(params)
    settings = {**(params.get("setting") or {}), "padDistance": int(pad)}
    image_types = params.get("imageType") or {"Original": {}}
    # without a featureClass section PyRadiomics enables every class, in the alphabetical order of its modules
    classes = params.get("featureClass") or {name: None for name in sorted(SUPPORTED_CLASSES)}
    cropped, mask = images.prepare(image, region, settings, int(pad))
    box = bounding_box(mask)
    if box is None:
        raise ValueError("the region is empty after resampling")
    box_mask = np.ascontiguousarray(mask[box])
    n_voxels = int(box_mask.sum())
    _check_dimensions(box, settings, n_voxels)
    features: dict[str, float] = {}
    if "shape" in classes:
        for name, value in _selected(shape_features(box_mask, spacing_zyx(cropped)), classes["shape"]).items():
            features[f"original_shape_{name}"] = value
    texture_classes = {name: wanted for name, wanted in classes.items() if name != "shape"}
    voxel_volume = float(np.multiply.reduce(cropped.GetSpacing()))
    per_image: dict[str, dict[str, float]] = {}
    for image_name, array, options in _filtered_images(cropped, image_types, settings, box):
        values = array[box_mask]
        del array
        computed = _class_features(values, box_mask, texture_classes, options, voxel_volume)
        per_image[image_name] = {f"{image_name}_{feature_class}_{name}": value
                                 for feature_class, wanted in texture_classes.items()
                                 for name, value in _selected(computed[feature_class], wanted).items()}
    for image_name in _pyradiomics_order(list(per_image)):
        features.update(per_image[image_name])
    return features


def _pyradiomics_order(names: list[str]) -> list[str]:
    """Image types in PyRadiomics' output order: the wavelet approximation (``-LLL``) after the detail bands
    (the engine makes it first, to free it first)."""
    approximation = [name for name in names if name.startswith("wavelet") and name.endswith("-LLL")]
    ordered = [name for name in names if name not in approximation]
    if approximation:
        last_wavelet = max(k for k, name in enumerate(ordered) if name.startswith("wavelet"))
        ordered[last_wavelet + 1:last_wavelet + 1] = approximation
    return ordered

