"""Pre-processing and filtered images exactly as PyRadiomics makes them: resampling on the region's crop,
pre-cropping, and the Original, LoG, Wavelet and Gradient image types.

The same operations run on the same crop as in PyRadiomics: PyWavelets' own calls, and SimpleITK's LoG,
gradient and resampling recomputed with ITK's arithmetic (:mod:`hccrad.features.engine.filters`), so the
filtered values are PyRadiomics' own bit for bit, the resampled image and mask included, at every pad.
The wavelet sub-bands are produced one at a time (depth first over the axes) rather than all eight at once,
which bounds memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pywt
import SimpleITK as sitk

from hccrad.features.engine import filters


def region_image(region: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """The region (boolean, z y x) as a UInt8 label image on the reference grid (label 1)."""
    mask = sitk.GetImageFromArray(region.astype(np.uint8))
    mask.CopyInformation(reference)
    return mask


def _box_xyz(region: np.ndarray) -> np.ndarray:
    """The region's bounding box as SimpleITK's ``LabelShapeStatisticsImageFilter`` gives it: (x, y, z start,
    x, y, z size)."""
    occupied = [np.flatnonzero(np.any(region, axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if any(axis.size == 0 for axis in occupied):
        raise ValueError("label 1 not present in the mask")
    start = [int(axis[0]) for axis in occupied][::-1]
    size = [int(axis[-1] - axis[0] + 1) for axis in occupied][::-1]
    return np.array(start + size)


def pyradiomics_grid(image: sitk.Image, region: np.ndarray, settings: dict[str, Any], pad: int
                     ) -> dict[str, Any] | None:
    """The output grid of PyRadiomics' ``resampleImage`` for ``region`` (boolean, z y x, on ``image``'s grid):
    ``origin``, ``spacing`` (x y z mm), ``size`` (x y z voxels) and ``direction`` (3 x 3), or ``None`` when the
    target spacing is the image's own (PyRadiomics then crops instead of resampling).

    The grid is aligned with the input: it covers the region's bounding box plus ``pad`` output voxels, from
    ``floor((start - 0.5) * ratio - pad)`` to ``ceil((stop + 0.5) * ratio + pad)`` output voxels (``ratio`` the
    input spacing over the output's), clipped to the image, and its origin is that first voxel's centre, as
    PyRadiomics computes it (the origin therefore moves with the pad, and so do SimpleITK's roundings)."""
    mask_spacing = np.array(image.GetSpacing())
    dims = len(mask_spacing)
    target = np.array(settings["resampledPixelSpacing"], dtype=float)
    target = np.where(target == 0, mask_spacing, target)
    box = _box_xyz(region)
    target = np.where(box[dims:] != 1, target, mask_spacing)
    if np.allclose(mask_spacing, target):
        return None
    ratio = mask_spacing / target
    lower = np.floor((box[:dims] - 0.5) * ratio - pad)
    upper = np.ceil((box[:dims] + box[dims:] - 0.5) * ratio + pad)
    max_upper = np.ceil(np.array(image.GetSize()) * ratio) - 1
    lower = np.where(lower < 0, 0, lower)
    upper = np.where(upper > max_upper, max_upper, upper)
    origin_index = np.array(.5 * (target - mask_spacing) / mask_spacing) + lower / ratio
    return {"origin": np.array(image.TransformContinuousIndexToPhysicalPoint(origin_index)), "spacing": target,
            "size": np.array(upper - lower + 1, dtype="int").tolist(),
            "direction": np.array(image.GetDirection()).reshape(3, 3)}


def resample_to_spacing(image: sitk.Image, region: np.ndarray, settings: dict[str, Any], pad: int,
                        convert: Callable[[sitk.Image], sitk.Image]) -> tuple[sitk.Image, np.ndarray]:
    """Resample image (settings' interpolator) and region (nearest neighbour; boolean z y x on the image's grid) to
    ``resampledPixelSpacing`` (x, y, z mm; 0 keeps a dimension) on PyRadiomics' grid (:func:`pyradiomics_grid`),
    as PyRadiomics' ``resampleImage``. ``convert`` makes the image the pixel type PyRadiomics is given (float32
    by default). Returns the image and the region on the new grid (boolean, z y x).

    Every output position is the continuous index ITK computes on the *whole* input image, so every tie
    (a nearest-neighbour position at exactly .5, an upsampled voxel on an input centre) is resolved as
    SimpleITK resolves it in PyRadiomics' call, at any pad. A B-spline of an image whose values float32 holds
    exactly runs in the engine's compiled resampler on the input voxels the grid reads (plus
    :data:`BSPLINE_MARGIN`), read in place, with ITK's taps and weights; the region in its nearest neighbour on
    the whole region. Any other pixel type or interpolator is SimpleITK's own call on the whole image, as in
    PyRadiomics: ties there are truncations to an integer pixel type, or interpolators the engine does not
    reproduce."""
    grid = pyradiomics_grid(image, region, settings, pad)
    if grid is None:
        box = _box_xyz(region)
        return crop_to_box(image, region, box[:3], box[:3] + box[3:] - 1, pad)
    interpolator = settings.get("interpolator", sitk.sitkBSpline)
    if isinstance(interpolator, str):
        interpolator = getattr(sitk, interpolator)
    converted = _converted_type(image, convert)
    if interpolator == sitk.sitkBSpline and converted == sitk.sitkFloat32:
        positions = filters.axis_aligned_positions(_geometry(image), grid)
        if positions is not None:
            shape = region.shape
            lower, upper = filters.cubic_support(positions, shape, BSPLINE_MARGIN)
            if _exact_in_float32(image):  # the stored values are the float32 ones: read them in place
                support = sitk.GetArrayViewFromImage(image)[lower[2]:upper[2] + 1, lower[1]:upper[1] + 1,
                                                            lower[0]:upper[0] + 1]
            else:
                support = sitk.GetArrayFromImage(
                    convert(sitk.RegionOfInterest(image, (upper - lower + 1).tolist(), lower.tolist())))
            resampled = filters.resample_cubic(support, positions, tuple(int(v) for v in lower), shape)
            return _on_grid(resampled, grid), filters.resample_nearest(region, positions)
    image = convert(image)
    resampler = sitk.ResampleImageFilter()
    resampler.SetOutputSpacing(grid["spacing"])
    resampler.SetOutputDirection(grid["direction"].ravel())
    resampler.SetSize(grid["size"])
    resampler.SetOutputOrigin(tuple(float(v) for v in grid["origin"]))
    resampler.SetOutputPixelType(image.GetPixelID())
    resampler.SetInterpolator(interpolator)
    resampled_image = resampler.Execute(image)
    resampler.SetOutputPixelType(sitk.sitkUInt8)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    resampled_mask = resampler.Execute(region_image(region, image))
    return resampled_image, sitk.GetArrayViewFromImage(resampled_mask) == 1


def _converted_type(image: sitk.Image, convert: Callable[[sitk.Image], sitk.Image]) -> int:
    """The pixel type ``convert`` gives the image, from one voxel of it."""
    return convert(sitk.RegionOfInterest(image, [1] * image.GetDimension(), [0] * image.GetDimension())).GetPixelID()


def _geometry(image: sitk.Image) -> dict[str, np.ndarray]:
    return {"origin": np.array(image.GetOrigin()), "spacing": np.array(image.GetSpacing()),
            "direction": np.array(image.GetDirection()).reshape(3, 3)}


def _on_grid(array: np.ndarray, grid: dict[str, np.ndarray]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(tuple(float(v) for v in grid["origin"]))
    image.SetSpacing(tuple(float(v) for v in grid["spacing"]))
    image.SetDirection(tuple(float(v) for v in grid["direction"].ravel()))
    return image


#: Input voxels kept around the output grid's footprint before B-spline resampling. The cubic B-spline's
#: prefilter is recursive with pole -0.268: a crop's edge changes the coefficients this far inside by about
#: 0.268^48 = 3e-28 of the edge's value, below the last bit of a double coefficient, so the coefficients the
#: output reads are those of the whole image (ITK's), bit for bit.
BSPLINE_MARGIN = 48


#: Pixel types whose every value a float32 holds exactly: the compiled filters, which read float32, give ITK's
#: values for these (ITK reads each pixel as a double).
_FLOAT32_EXACT = (sitk.sitkFloat32, sitk.sitkInt8, sitk.sitkUInt8, sitk.sitkInt16, sitk.sitkUInt16)


def _exact_in_float32(image: sitk.Image) -> bool:
    return image.GetPixelID() in _FLOAT32_EXACT


def as_float32(image: sitk.Image) -> sitk.Image:
    """The image in float32, the pixel type hccrad gives PyRadiomics. Casting a crop gives the same values as
    cropping the cast CT, without a float32 copy of the whole CT."""
    if image.GetPixelID() == sitk.sitkFloat32:
        return image
    return sitk.Cast(image, sitk.sitkFloat32)


def crop_to_box(image: sitk.Image, region: np.ndarray, start_xyz: np.ndarray, stop_xyz: np.ndarray, pad: int
                ) -> tuple[sitk.Image, np.ndarray]:
    """Crop image and region (boolean, z y x) to the inclusive index box ``start..stop`` (x, y, z) grown by
    ``pad`` voxels."""
    size = np.array(image.GetSize())
    lower = np.maximum(np.asarray(start_xyz) - pad, 0)
    upper = np.minimum(np.asarray(stop_xyz) + pad, size - 1)
    cropped = sitk.RegionOfInterest(image, (upper - lower + 1).tolist(), lower.tolist())
    return cropped, region[lower[2]:upper[2] + 1, lower[1]:upper[1] + 1, lower[0]:upper[0] + 1]


def resamples(settings: dict[str, Any]) -> bool:
    """Whether PyRadiomics resamples with these settings: a ``resampledPixelSpacing`` and an interpolator (its
    default is sitkBSpline: an absent key resamples, an explicit null does not)."""
    return settings.get("interpolator", "sitkBSpline") is not None and settings.get("resampledPixelSpacing") is not None


def filters_whole_image(settings: dict[str, Any]) -> bool:
    """Whether PyRadiomics' filters run on the whole image (neither resampled nor ``preCrop``-ped to the region)."""
    return not resamples(settings) and not settings.get("preCrop", False)


def prepare(image: sitk.Image, region: np.ndarray, settings: dict[str, Any], pad: int,
            convert: Callable[[sitk.Image], sitk.Image] = as_float32) -> tuple[sitk.Image, np.ndarray]:
    """The image PyRadiomics' filters run on (resampled and cropped to the region's box plus ``pad``, cropped, or
    whole, as PyRadiomics' ``loadImage``), converted by ``convert`` (float32 by default), and the region on its grid
    (boolean, z y x)."""
    if resamples(settings):
        image, region = resample_to_spacing(image, region, settings, pad, convert)
    elif settings.get("preCrop", False):
        box = _box_xyz(region)
        image, region = crop_to_box(image, region, box[:3], box[:3] + box[3:] - 1, pad)
    return convert(image), np.ascontiguousarray(region, dtype=bool)


def log_images(image: sitk.Image, sigmas: list[float], box: tuple[slice, slice, slice] | None = None
               ) -> Iterator[tuple[str, np.ndarray]]:
    """Laplacian of Gaussian (recursive, normalised across scale) per sigma in mm, as (name, array z y x cut to
    ``box``, index slices of the crop); sigmas too large for the crop are skipped, as in PyRadiomics. The values
    are SimpleITK's ``LaplacianRecursiveGaussianImageFilter``'s (:func:`filters.laplacian_of_gaussian`)."""
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing())
    if np.min(size) < 4:
        return
    data = sitk.GetArrayViewFromImage(image)
    for sigma in sigmas:
        if sigma > 0.0 and np.all(size >= np.ceil(sigma / spacing) + 1):
            name = "log-sigma-{}-mm-3D".format(str(sigma).replace(".", "-"))
            if _exact_in_float32(image):
                yield name, filters.laplacian_of_gaussian(data, tuple(spacing[::-1]), float(sigma), box)
            else:  # ITK reads the doubles themselves: let it filter them
                filtered = sitk.LaplacianRecursiveGaussian(image, sigma=float(sigma), normalizeAcrossScale=True)
                yield name, sitk.GetArrayFromImage(filtered)[box if box is not None else (slice(None),) * 3]


def wrap_to_even(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` with each odd extent made even by one wrapped voxel at its end, axis after axis: the
    values of ``np.pad(array, [(0, n % 2) for n in shape], "wrap")`` (PyRadiomics' padding before the wavelet),
    in one allocation and plain copies (np.pad's wrap mode took 0.06 s per paper-sized liver crop)."""
    padded = np.empty(tuple(n + n % 2 for n in array.shape), dtype=array.dtype)
    padded[tuple(slice(0, n) for n in array.shape)] = array
    for axis, n in enumerate(array.shape):
        if n % 2:
            last = [slice(None)] * array.ndim
            first = [slice(None)] * array.ndim
            for earlier in range(axis + 1, array.ndim):  # axes not yet padded hold only the original extent
                last[earlier] = first[earlier] = slice(0, array.shape[earlier])
            last[axis], first[axis] = n, 0
            padded[tuple(last)] = padded[tuple(first)]
    return padded


def wavelet_images(image: sitk.Image, wavelet: str = "coif1", level: int = 1, start_level: int = 0,
                   box: tuple[slice, slice, slice] | None = None, axes: tuple[int, ...] = (2, 1, 0)
                   ) -> Iterator[tuple[str, np.ndarray]]:
    """Undecimated (stationary) wavelet sub-bands of the crop, one at a time, as (name, array z y x) cut to
    ``box`` (index slices of the crop; default the whole crop).

    As PyRadiomics: odd dimensions are padded by one wrapped voxel, ``axes`` (array axes) are filtered in their
    order, by default x, then y, then z, and the band name lists the filter per axis in that order (``LLH`` is
    low-pass in x and y, high-pass in z). Under PyRadiomics' ``force2D`` the out-of-plane axis is left out
    (``LH`` is low-pass in x, high-pass in y, for ``force2Ddimension`` 0).

    Memory: the bands are made depth first, a parent array is released once split, and at the last level each
    axis is cut to ``box`` as soon as it is filtered. The stationary transform filters every line of an axis
    on its own, so later axes give the same values inside the box; only the box's lines are kept.
    """
    view = sitk.GetArrayViewFromImage(image)
    box = box if box is not None else tuple(slice(0, n) for n in view.shape)
    data = wrap_to_even(view)
    del view
    bank = pywt.Wavelet(wavelet)

    def one_axis(array: np.ndarray, axis: int, crop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        # PyWavelets' own arithmetic in compiled code (:func:`filters.swt_level`), only the box's outputs when cut;
        # PyWavelets filters integer data as float64
        if array.dtype.kind in "biu":
            array = array.astype(np.float64)
        computed = filters.swt_level(array, bank.name, axis, box[axis] if crop else None)
        if computed is not None:
            return computed
        (approximation, detail), = pywt.swt(array, bank, level=1, start_level=0, axis=axis)
        if crop:
            cut = tuple(box[axis] if k == axis else slice(None) for k in range(3))
            approximation, detail = approximation[cut].copy(), detail[cut].copy()
        return approximation, detail

    def depth_first(holder: list[np.ndarray], depth: int, name: str, crop: bool
                    ) -> Iterator[tuple[str, np.ndarray]]:
        if depth == len(axes):
            yield name, holder.pop()
            return
        parent = holder.pop()
        low, high = one_axis(parent, axes[depth], crop)
        del parent
        yield from depth_first([low], depth + 1, name + "L", crop)
        del low
        yield from depth_first([high], depth + 1, name + "H", crop)

    for _ in range(start_level):
        for axis in axes:
            data = one_axis(data, axis)[0]
    holder = [data]
    del data
    # at the last level the filtered axes are cut as they are filtered; an axis left out (force2D) is cut here
    unfiltered = tuple(slice(None) if axis in axes else box[axis] for axis in range(3))
    for index in range(1, level + 1):
        prefix = "wavelet" if index == 1 else f"wavelet{index}"
        last = index == level
        approximation = None
        for name, band in depth_first(holder, 0, "", crop=last):
            if name == "L" * len(axes) and not last:
                approximation = band  # the next level decomposes this level's approximation, uncut
                continue
            yield f"{prefix}-{name}", band[unfiltered] if last else band[box]
        holder = [approximation]


def gradient_image(image: sitk.Image, use_spacing: bool = True, box: tuple[slice, slice, slice] | None = None
                   ) -> np.ndarray:
    """Gradient magnitude (mm units when ``use_spacing``) as an array z y x cut to ``box``: SimpleITK's
    ``GradientMagnitudeImageFilter``'s values (:func:`filters.gradient_magnitude`)."""
    if not _exact_in_float32(image):
        filtered = sitk.GradientMagnitude(image, useImageSpacing=use_spacing)
        return sitk.GetArrayFromImage(filtered)[box if box is not None else (slice(None),) * 3]
    return filters.gradient_magnitude(sitk.GetArrayViewFromImage(image), tuple(image.GetSpacing()[::-1]),
                                      use_spacing, box)


def power_image(image: sitk.Image, image_type: str, box: tuple[slice, slice, slice]) -> np.ndarray:
    """PyRadiomics' ``Square``, ``SquareRoot``, ``Logarithm`` or ``Exponential`` image as float64 (z y x) cut to
    ``box``. Each rescales by the largest absolute value of the whole image it is given (the crop, or the whole CT
    without resampling or preCrop), so that maximum is taken over all of it and only the box is transformed."""
    whole = sitk.GetArrayViewFromImage(image)
    largest = max(abs(float(whole.min())), abs(float(whole.max())))  # max |x|, exact, without a float64 copy
    values = np.array(whole[box], dtype=np.float64)
    if image_type == "Square":
        return (1 / np.sqrt(largest) * values) ** 2
    if image_type == "SquareRoot":
        positive, negative = values > 0, values < 0
        values[positive] = np.sqrt(values[positive] * largest)
        values[negative] = -np.sqrt(-values[negative] * largest)
        return values
    if image_type == "Logarithm":
        positive, negative = values > 0, values < 0
        values[positive] = np.log(values[positive] + 1)
        values[negative] = -np.log(-(values[negative] - 1))
        # PyRadiomics rescales by max|x| / max|log image|; the log image's largest magnitude is log(max|x| + 1)
        return values * (largest / np.log(largest + 1)) if largest > 0 else values * np.nan
    if image_type == "Exponential":
        return np.exp(np.log(largest) / largest * values)
    raise ValueError(f"unknown image type {image_type!r}")
