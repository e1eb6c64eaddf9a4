"""The fast engine's entry point: PyRadiomics' features of one region from a PyRadiomics parameter set.

The steps are those of PyRadiomics' ``RadiomicsFeatureExtractor.execute``, in its order: normalisation of the whole
image, resampling or pre-cropping, the mask checks, resegmentation, shape (on the resegmented mask only with
``resegmentShape``), then every image type's filtered image cropped to the region's bounding box and every texture
class on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad.features.engine import images, texture
from hccrad.features.engine.shape import shape_features
from hccrad.io.errors import InputError
from hccrad.io.images import spacing_zyx
from hccrad.io.masks import bounding_box

#: Version of the engine's arithmetic; part of every case fingerprint.
ENGINE_VERSION = "4"

SUPPORTED_IMAGE_TYPES = ("Original", "Wavelet", "LoG", "Gradient", "Square", "SquareRoot", "Logarithm",
                         "Exponential")
#: Image types PyRadiomics offers that the engine leaves to PyRadiomics (under ``engine: auto``).
PYRADIOMICS_IMAGE_TYPES = ("LBP2D", "LBP3D")
SUPPORTED_CLASSES = ("shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: Every setting of PyRadiomics' schema (``setting`` and per image type), with what the engine does with it.
#: ``no-op``: it changes nothing in a segment-based extraction of a scalar label map (as in PyRadiomics).
SETTINGS = {
    "minimumROIDimensions": "engine", "minimumROISize": "engine", "geometryTolerance": "no-op",
    "correctMask": "no-op", "additionalInfo": "no-op", "label": "engine", "label_channel": "no-op",
    "binWidth": "engine", "binCount": "engine", "normalize": "engine", "normalizeScale": "engine",
    "removeOutliers": "engine", "resampledPixelSpacing": "engine", "interpolator": "engine", "padDistance": "engine",
    "distances": "engine", "force2D": "engine", "force2Ddimension": "engine", "resegmentRange": "engine",
    "resegmentMode": "engine", "resegmentShape": "engine", "preCrop": "engine", "sigma": "engine",
    "start_level": "engine", "level": "engine", "wavelet": "engine", "gradientUseSpacing": "engine",
    "lbp2DRadius": "LBP2D", "lbp2DSamples": "LBP2D", "lbp2DMethod": "LBP2D", "lbp3DLevels": "LBP3D",
    "lbp3DIcosphereRadius": "LBP3D", "lbp3DIcosphereSubdivision": "LBP3D", "voxelArrayShift": "engine",
    "symmetricalGLCM": "engine", "weightingNorm": "engine", "gldm_a": "engine",
    "enableCExtensions": "no-op",
}
#: Sections of a parameter file; ``voxelSetting`` only applies to voxel-based extraction, which hccrad never runs.
SECTIONS = ("setting", "imageType", "featureClass", "voxelSetting")


class UnsupportedSetting(InputError, ValueError):
    """A PyRadiomics setting the fast engine does not implement (use ``engine: auto`` or ``pyradiomics``)."""


def pyradiomics_image_types(params: dict[str, Any]) -> list[str]:
    """The enabled image types that the engine leaves to PyRadiomics, in the parameter file's order."""
    return [name for name in (params.get("imageType") or {}) if name in PYRADIOMICS_IMAGE_TYPES]


def check_params(params: dict[str, Any], allow_pyradiomics_types: bool = False) -> None:
    """Refuse parameters the engine would not reproduce exactly, naming each one.

    ``allow_pyradiomics_types``: image types left to PyRadiomics (LBP) are not refused (``engine: auto`` computes
    them with PyRadiomics and removes them before calling the engine).
    """
    problems = []
    for section in params:
        if section not in SECTIONS:
            problems.append(f"section '{section}' is not a PyRadiomics section")
    settings = params.get("setting") or {}
    customs = [(None, settings)] + [(name, custom or {}) for name, custom in (params.get("imageType") or {}).items()]
    for image_type, options in customs:
        where = f" of image type '{image_type}'" if image_type else ""
        for key in options:
            if key not in SETTINGS:
                problems.append(f"setting '{key}'{where} is not a PyRadiomics setting")
        reseg = options.get("resegmentRange")
        if reseg is not None and not 1 <= len(reseg) <= 2:
            problems.append(f"'resegmentRange: {reseg}'{where} must hold 1 or 2 values (PyRadiomics refuses "
                            f"{len(reseg)})")
    for image_type in (params.get("imageType") or {}):
        if image_type in PYRADIOMICS_IMAGE_TYPES and not allow_pyradiomics_types:
            problems.append(f"image type '{image_type}' is not implemented in the engine")
        elif image_type not in SUPPORTED_IMAGE_TYPES + PYRADIOMICS_IMAGE_TYPES:
            problems.append(f"image type '{image_type}' is not a PyRadiomics image type")
    for feature_class in (params.get("featureClass") or {}):
        if feature_class not in SUPPORTED_CLASSES:
            problems.append(f"feature class '{feature_class}' is not a PyRadiomics feature class")
    if problems:
        raise UnsupportedSetting("the hccrad feature engine cannot reproduce these PyRadiomics parameters: "
                                 + "; ".join(problems) + " (set features: {engine: auto}, which leaves what the "
                                 "engine lacks to PyRadiomics, or engine: pyradiomics)")


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


def resegment(values: np.ndarray, mask: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """PyRadiomics' ``resegmentMask``: the mask's voxels whose value lies in ``resegmentRange`` (one value: at or
    above it; two: between them, both included). ``resegmentMode``: ``absolute`` (the values themselves, default),
    ``relative`` (fractions of the region's maximum) or ``sigma`` (the region's mean plus multiples of its
    standard deviation).

    Parameters
    ----------
    values
        The image (z, y, x) the mask lies on, after resampling (any dtype; thresholds compare in it).
    mask
        Boolean region (z, y, x).
    """
    bounds = sorted(settings["resegmentRange"])
    mode = settings.get("resegmentMode", "absolute")
    inside = values[mask]
    if mode == "absolute":
        thresholds = bounds
    elif mode == "relative":
        largest = np.max(inside)
        thresholds = [largest * bound for bound in bounds]
    elif mode == "sigma":
        mean, deviation = np.mean(inside), np.std(inside)
        thresholds = [mean + deviation * bound for bound in bounds]
    else:
        raise ValueError(f"resegmentMode {mode!r}: expected absolute, relative or sigma")
    kept = inside >= thresholds[0]
    if len(thresholds) == 2:
        kept &= inside <= thresholds[1]
    if np.count_nonzero(kept) <= 1:
        raise ValueError(f"resegmentation ({mode} range {bounds}) kept {np.count_nonzero(kept)} of the region's "
                         f"{inside.size} voxels; cannot extract features")
    resegmented = np.zeros_like(mask)
    resegmented[mask] = kept
    return resegmented


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
            axes = [2, 1, 0]
            if options.get("force2D", False):
                axes.remove(int(options.get("force2Ddimension", 0)))
            for name, band in images.wavelet_images(image, options.get("wavelet", "coif1"), options.get("level", 1),
                                                    options.get("start_level", 0), box, tuple(axes)):
                yield name, band, options
        elif image_type == "Gradient":
            yield "gradient", images.gradient_image(image, options.get("gradientUseSpacing", True), box), options
        else:  # Square, SquareRoot, Logarithm, Exponential
            yield image_type.lower(), images.power_image(image, image_type, box), options


def _class_features(values: np.ndarray, box_mask: np.ndarray, classes: dict[str, Any], options: dict[str, Any],
                    voxel_volume: float, spacing: tuple[float, float, float],
                    voxels: dict[int, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """Every texture class's features of one filtered image's region ``values`` (in ``box_mask`` order).
    ``voxels`` carries the region's flat voxel indices per padding from one image of the region to the next."""
    settings = texture.TextureSettings.from_options(options, spacing)
    pad = max(settings.distances)
    voxels = {} if voxels is None else voxels
    grid = texture.RegionGrid.from_values(values, texture.discretisation_edges(values, options), box_mask, settings,
                                          voxels.get(pad))
    voxels[pad] = grid.voxels
    level_counts = grid.level_counts
    gray_levels = np.flatnonzero(level_counts).astype(np.int64)
    out: dict[str, dict[str, float]] = {}
    neighbourhood = None
    for feature_class in classes:
        if feature_class == "firstorder":
            out[feature_class] = texture.firstorder_features(values, None, voxel_volume,
                                                             options.get("voxelArrayShift", 0), level_counts)
        elif feature_class == "glcm":
            out[feature_class] = texture.glcm_features(grid, gray_levels)
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


def _shape2d_features(image: sitk.Image, box_mask: np.ndarray, box: tuple[slice, ...], settings: dict[str, Any],
                      wanted: Any) -> dict[str, float]:
    """PyRadiomics' shape2D class on the region's box, with PyRadiomics' own conditions: computed only under
    ``force2D`` and when the box is wider than one voxel along the axis PyRadiomics tests (its bounding box is x y z
    while ``force2Ddimension`` counts z y x, so for 0 it tests x); the region must then lie in one plane of
    ``force2Ddimension``. The class itself is PyRadiomics' (a 2D mesh of one slice costs nothing)."""
    from radiomics.shape2D import RadiomicsShape2D

    dimension = int(settings.get("force2Ddimension", 0))
    extent_xyz = [b.stop - b.start for b in box][::-1]
    if not settings.get("force2D", False) or not extent_xyz[dimension] > 1:
        return {}
    if box_mask.shape[dimension] > 1:
        raise ValueError(f"shape2D needs a region one voxel thick along force2Ddimension {dimension} (array axis z, "
                         f"y, x); this one is {box_mask.shape[dimension]} voxels thick: remove shape2D, or use a "
                         "single-slice mask")
    mask = sitk.GetImageFromArray(box_mask.astype(np.uint8))
    mask.SetSpacing(image.GetSpacing())
    reference = sitk.GetImageFromArray(np.zeros(box_mask.shape, dtype=np.float32))
    reference.CopyInformation(mask)
    calculator = RadiomicsShape2D(reference, mask, **{**settings, "label": 1})
    for name in (wanted or []):
        calculator.enableFeatureByName(name)
    if not wanted:
        calculator.enableAllFeatures()
    return {name: float(value) for name, value in calculator.execute().items()}


@dataclass
class PreparedRegion:
    """A region ready for its features: the image PyRadiomics' filters run on (resampled or cropped, converted) and
    the region on its grid (boolean, z y x). It holds no reference to the whole CT, which can be released."""

    image: sitk.Image
    mask: np.ndarray
    settings: dict[str, Any]


def prepare_regions(image: sitk.Image, regions: list[np.ndarray], params: dict[str, Any], pad: int,
                    cast_to_float32: bool = True) -> list[PreparedRegion]:
    """The first half of :func:`region_features` for each of ``regions`` (boolean, z y x, on ``image``'s grid):
    checks, normalisation and resampling or cropping. What does not depend on the region is made once for all of
    them: the normalised image, and the whole image converted to float32 where the filters run on it whole (no
    resampling, no ``preCrop``; PyRadiomics converts it per region, to the same values)."""
    check_params(params)
    settings = {**(params.get("setting") or {}), "padDistance": int(pad)}
    convert = images.as_float32 if cast_to_float32 else (lambda crop: crop)
    if settings.get("normalize", False):  # PyRadiomics normalises the whole image it is given, before resampling
        from radiomics.imageoperations import normalizeImage

        image = normalizeImage(convert(image), **settings)
        convert = lambda crop: crop  # noqa: E731  (already converted)
    if images.filters_whole_image(settings):
        image = convert(image)
        convert = lambda crop: crop  # noqa: E731  (already converted)
    prepared = []
    for region in regions:
        cropped, mask = images.prepare(image, region, settings, int(pad), convert)
        prepared.append(PreparedRegion(cropped, mask, settings))
    return prepared


def prepare_region(image: sitk.Image, region: np.ndarray, params: dict[str, Any], pad: int,
                   cast_to_float32: bool = True) -> PreparedRegion:
    """The first half of :func:`region_features` (:func:`prepare_regions` of one region)."""
    return prepare_regions(image, [region], params, pad, cast_to_float32)[0]


def region_features(image: sitk.Image, region: np.ndarray, params: dict[str, Any], pad: int,
                    cast_to_float32: bool = True) -> dict[str, float]:
    """PyRadiomics' features of one region, with PyRadiomics' names (``original_shape_Elongation``, ...).

    Parameters
    ----------
    image
        The image with its geometry, any pixel type.
    region
        Boolean mask (z, y, x) on the image grid.
    params
        A PyRadiomics parameter set (``setting``, ``imageType``, ``featureClass``).
    pad
        Voxels of margin around the region before filtering (PyRadiomics' ``padDistance``).
    cast_to_float32
        Compute on the image cast to float32 (what hccrad gives PyRadiomics by default); else on its values as
        stored, as PyRadiomics does when given the image as read (an integer image then stays integer through
        resampling). The engine casts only the region's crop, a cheaper way to the same values.
    """
    return prepared_features(prepare_region(image, region, params, pad, cast_to_float32), params)


def prepared_features(prepared: PreparedRegion, params: dict[str, Any]) -> dict[str, float]:
    """The second half of :func:`region_features`: every feature of a :class:`PreparedRegion`."""
    cropped, mask, settings = prepared.image, prepared.mask, prepared.settings
    image_types = params.get("imageType") or {"Original": {}}
    # without a featureClass section PyRadiomics enables every class, in the alphabetical order of its modules
    classes = params.get("featureClass") or {name: None for name in sorted(SUPPORTED_CLASSES)}
    box = bounding_box(mask)
    if box is None:
        raise ValueError("the region is empty after resampling")
    _check_dimensions(box, settings, int(np.count_nonzero(mask[box])))
    shape_mask = mask
    if settings.get("resegmentRange") is not None:
        resegmented = resegment(sitk.GetArrayViewFromImage(cropped), mask, settings)
        box = bounding_box(resegmented)
        _check_dimensions(box, settings, int(np.count_nonzero(resegmented)))
        if settings.get("resegmentShape", False):
            shape_mask = resegmented
        mask = resegmented
    box_mask = np.ascontiguousarray(mask[box])
    features: dict[str, float] = {}
    spacing = spacing_zyx(cropped)
    if "shape" in classes:  # on the box of the (resegmented) region, as PyRadiomics crops it
        for name, value in _selected(shape_features(np.ascontiguousarray(shape_mask[box]), spacing),
                                     classes["shape"]).items():
            features[f"original_shape_{name}"] = value
    if "shape2D" in classes:
        for name, value in _shape2d_features(cropped, np.ascontiguousarray(shape_mask[box]), box, settings,
                                             classes["shape2D"]).items():
            features[f"original_shape2D_{name}"] = value
    texture_classes = {name: wanted for name, wanted in classes.items() if not name.startswith("shape")}
    voxel_volume = float(np.multiply.reduce(cropped.GetSpacing()))
    per_image: dict[str, dict[str, float]] = {}
    region_voxels: dict[int, np.ndarray] = {}
    for image_name, array, options in _filtered_images(cropped, image_types, settings, box):
        values = array[box_mask]
        del array
        computed = _class_features(values, box_mask, texture_classes, options, voxel_volume, spacing,
                                   region_voxels)
        per_image[image_name] = {f"{image_name}_{feature_class}_{name}": value
                                 for feature_class, wanted in texture_classes.items()
                                 for name, value in _selected(computed[feature_class], wanted).items()}
    for image_name in _pyradiomics_order(list(per_image)):
        features.update(per_image[image_name])
    return features


def _pyradiomics_order(names: list[str]) -> list[str]:
    """Image types in PyRadiomics' output order: each wavelet level's approximation (``-LLL``, ``-LL`` under
    force2D) after the detail bands (the engine makes it first, to free it first)."""
    def approximation(name: str) -> bool:
        return name.startswith("wavelet") and set(name.split("-", 1)[1]) == {"L"}

    approximations = [name for name in names if approximation(name)]
    ordered = [name for name in names if not approximation(name)]
    if approximations:
        last_wavelet = max(k for k, name in enumerate(ordered) if name.startswith("wavelet"))
        ordered[last_wavelet + 1:last_wavelet + 1] = approximations
    return ordered
