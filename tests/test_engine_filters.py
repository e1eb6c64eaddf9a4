"""The engine's compiled filters against SimpleITK, voxel for voxel: the recursive Laplacian of Gaussian, cubic
B-spline and nearest-neighbour resampling, and the binning against numpy.digitize."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from hccrad.features.engine import filters, images
from hccrad.features.engine.kernels import digitize
from hccrad.features.engine.texture import bin_edges


def _image(array: np.ndarray, spacing_xyz, origin=(-170.3, -20.1, 33.3), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(tuple(float(d) for d in np.asarray(direction).ravel()))
    return image


def _itk_log(array: np.ndarray, spacing_zyx, sigma: float) -> np.ndarray:
    log = sitk.LaplacianRecursiveGaussianImageFilter()
    log.SetNormalizeAcrossScale(True)
    log.SetSigma(sigma)
    return sitk.GetArrayFromImage(log.Execute(_image(array, spacing_zyx[::-1])))


@pytest.mark.parametrize("shape, spacing_zyx, sigma", [
    ((4, 4, 4), (1.0, 1.0, 1.0), 1.0),                # the smallest image the filter accepts
    ((7, 9, 11), (1.5, 0.7, 0.6), 1.0),
    ((7, 9, 11), (1.5, 0.7, 0.6), 3.0),
    ((30, 41, 37), (1.5, 0.647, 0.647), 3.0),
    ((12, 5, 64), (2.5, 0.9, 0.3), 0.5),
])
def test_laplacian_of_gaussian_is_simpleitks_bit_for_bit(shape, spacing_zyx, sigma):
    rng = np.random.default_rng(sum(shape))
    array = (rng.normal(size=shape) * 120 + 40).astype(np.float32)
    expected = _itk_log(array, spacing_zyx, sigma)
    ours = filters.laplacian_of_gaussian(array, spacing_zyx, sigma)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, expected)


def test_laplacian_of_gaussian_in_a_box_filters_whole_lines():
    rng = np.random.default_rng(3)
    array = (rng.normal(size=(20, 25, 30)) * 100).astype(np.float32)
    expected = _itk_log(array, (1.5, 0.7, 0.7), 2.0)
    for box in [(slice(5, 12), slice(3, 20), slice(10, 11)), (slice(0, 20), slice(24, 25), slice(0, 30))]:
        np.testing.assert_array_equal(filters.laplacian_of_gaussian(array, (1.5, 0.7, 0.7), 2.0, box), expected[box])


@pytest.mark.parametrize("slab_bytes", [1, 7 * 25 * 4 * 3])
def test_laplacian_of_gaussian_in_slabs_is_simpleitks_bit_for_bit(monkeypatch, slab_bytes):
    """The first passes run slab by slab across the last smoothing axis (one plane at a time, or three, the last
    slab shorter): SimpleITK's values inside the box, whatever the slabs."""
    monkeypatch.setattr(filters, "LOG_SLAB_BYTES", slab_bytes)
    rng = np.random.default_rng(5)
    array = (rng.normal(size=(20, 25, 30)) * 100).astype(np.float32)
    expected = _itk_log(array, (1.5, 0.7, 0.7), 2.0)
    box = (slice(5, 12), slice(3, 20), slice(10, 21))
    np.testing.assert_array_equal(filters.laplacian_of_gaussian(array, (1.5, 0.7, 0.7), 2.0, box), expected[box])
    np.testing.assert_array_equal(filters.laplacian_of_gaussian(array, (1.5, 0.7, 0.7), 2.0), expected)


def test_laplacian_of_gaussian_refuses_an_image_thinner_than_4():
    with pytest.raises(ValueError, match="at least 4"):
        filters.laplacian_of_gaussian(np.zeros((3, 8, 8), np.float32), (1.0, 1.0, 1.0), 1.0)


def _itk_resample(image: sitk.Image, origin, spacing, size, interpolator, pixel) -> np.ndarray:
    resampler = sitk.ResampleImageFilter()
    resampler.SetOutputSpacing(tuple(float(s) for s in spacing))
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetSize([int(n) for n in size])
    resampler.SetOutputOrigin(tuple(float(o) for o in origin))
    resampler.SetOutputPixelType(pixel)
    resampler.SetInterpolator(interpolator)
    return sitk.GetArrayFromImage(resampler.Execute(image))


def _geometry(image: sitk.Image) -> dict[str, np.ndarray]:
    return {"origin": np.array(image.GetOrigin()), "spacing": np.array(image.GetSpacing()),
            "direction": np.array(image.GetDirection()).reshape(3, 3)}


@pytest.mark.parametrize("shape, spacing, target, lower, extra", [
    ((20, 30, 40), (0.7, 0.71, 1.5), (0.647, 0.647, 1.5), (3, 2, 0), (0, 0, 0)),   # PyRadiomics-like grid
    ((5, 9, 7), (0.9, 0.8, 2.0), (0.5, 0.6, 1.1), (0, 0, 0), (0, 0, 0)),           # lines shorter than the horizon
    ((1, 12, 14), (0.8, 0.8, 5.0), (0.6, 0.6, 5.0), (0, 0, 0), (0, 0, 0)),         # one slice
    ((8, 16, 16), (1.0, 1.0, 1.0), (0.7, 0.9, 1.3), (-4, 2, -3), (9, 6, 5)),       # reaching past the image
])
def test_cubic_and_nearest_resampling_are_simpleitks(shape, spacing, target, lower, extra):
    rng = np.random.default_rng(sum(shape))
    array = (rng.normal(size=shape) * 100 + 40).astype(np.float32)
    labels = (rng.random(shape) > 0.5).astype(np.uint8)
    image = _image(array, spacing)
    mask = _image(labels, spacing)
    spacing, target = np.array(spacing), np.array(target)
    ratio = spacing / target
    size = (np.ceil(np.array(shape[::-1]) * ratio) - np.array(lower) + np.array(extra)).astype(int)
    origin = image.TransformContinuousIndexToPhysicalPoint(.5 * (target - spacing) / spacing + np.array(lower) / ratio)
    output = {"origin": np.array(origin), "spacing": target, "direction": np.eye(3), "size": size.tolist()}
    positions = filters.axis_aligned_positions(_geometry(image), output)
    assert positions is not None
    expected = _itk_resample(image, origin, target, size, sitk.sitkBSpline, sitk.sitkFloat32)
    ours = filters.resample_cubic(array, positions)
    np.testing.assert_array_equal(ours, expected)
    if any(lower) or any(extra):
        assert np.any(expected == 0) and np.array_equal(ours == 0, expected == 0)
    expected_mask = _itk_resample(mask, origin, target, size, sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    np.testing.assert_array_equal(filters.resample_nearest(labels, positions), expected_mask)


def test_upsampled_voxels_on_input_centres_keep_itks_sign_at_a_bin_edge():
    """3 mm -> 1 mm: every third output voxel lies on an input voxel's centre. Where that voxel is exactly 0 HU
    (a bin edge of binWidth 25), the B-spline gives about +-1e-14, whose sign depends on the summation order; the
    engine takes ITK's own sum there, so the values, and the bins, are SimpleITK's."""
    rng = np.random.default_rng(11)
    array = np.round(rng.normal(size=(12, 18, 18)) * 60).astype(np.float32)
    array[rng.random(array.shape) < 0.3] = 0.0
    spacing, target = np.array((3.0, 3.0, 3.0)), np.array((1.0, 1.0, 1.0))
    image = _image(array, tuple(spacing))
    size = (np.array(array.shape[::-1]) * 3 - 2).astype(int)
    origin = image.TransformContinuousIndexToPhysicalPoint(.5 * (target - spacing) / spacing + 1 / 3)
    output = {"origin": np.array(origin), "spacing": target, "direction": np.eye(3), "size": size.tolist()}
    positions = filters.axis_aligned_positions(_geometry(image), output)
    expected = _itk_resample(image, origin, target, size, sitk.sitkBSpline, sitk.sitkFloat32)
    near_zero = (np.abs(expected) < 1e-9) & (expected != 0)
    assert near_zero.sum() > 100 and np.any(expected[near_zero] < 0) and np.any(expected[near_zero] > 0)
    ours = filters.resample_cubic(array, positions)
    np.testing.assert_array_equal(ours, expected)
    assert np.array_equal(np.digitize(ours, [-25, 0, 25]), np.digitize(expected, [-25, 0, 25]))


def test_resampling_a_crop_with_the_whole_images_positions_is_simpleitks_on_the_whole_image():
    """The engine prefilters only the input voxels the grid reads plus its margin, and keeps ITK's positions on
    the whole image: the values equal SimpleITK's on the whole image bit for bit, near-zero voxels included."""
    from hccrad.features.engine.images import BSPLINE_MARGIN

    rng = np.random.default_rng(12)
    array = np.round(rng.normal(size=(8, 10, 200)) * 300).astype(np.float32)
    array[rng.random(array.shape) < 0.3] = 0.0
    spacing, target = np.array((3.0, 3.0, 3.0)), np.array((1.0, 1.0, 1.0))
    image = _image(array, tuple(spacing))
    first = np.array([300, 0, 0])
    size = np.array([30, 28, 22])
    origin = image.TransformContinuousIndexToPhysicalPoint(.5 * (target - spacing) / spacing + first / 3)
    output = {"origin": np.array(origin), "spacing": target, "direction": np.eye(3), "size": size.tolist()}
    positions = filters.axis_aligned_positions(_geometry(image), output)
    lower, upper = filters.cubic_support(positions, array.shape, BSPLINE_MARGIN)
    assert lower[0] > 0 and upper[0] < array.shape[2] - 1  # a real crop along x
    crop = array[lower[2]:upper[2] + 1, lower[1]:upper[1] + 1, lower[0]:upper[0] + 1]
    expected = _itk_resample(image, origin, target, size, sitk.sitkBSpline, sitk.sitkFloat32)
    np.testing.assert_array_equal(filters.resample_cubic(crop, positions, tuple(lower), array.shape), expected)
    # prefiltered in blocks of columns (bounded memory): the same values, from an int16 image read in place too
    blocked = filters.resample_cubic(crop, positions, tuple(lower), array.shape, block_bytes=crop[..., :7].nbytes * 2)
    np.testing.assert_array_equal(blocked, expected)
    as_int16 = filters.resample_cubic(crop.astype(np.int16)[:, :, ::1], positions, tuple(lower), array.shape,
                                      block_bytes=1)
    np.testing.assert_array_equal(as_int16, expected)


def test_an_oblique_output_grid_is_left_to_simpleitk():
    rotation = sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, 0.3).GetMatrix()
    image = _image(np.zeros((6, 8, 8), np.float32), (1.0, 1.0, 2.0))
    output = {"origin": np.zeros(3), "spacing": np.array([0.5, 0.5, 2.0]),
              "direction": np.array(rotation).reshape(3, 3), "size": [4, 4, 4]}
    assert filters.axis_aligned_positions(_geometry(image), output) is None


def test_engine_resampling_of_an_oblique_ct_matches_simpleitk():
    """An oblique CT: PyRadiomics' grid keeps the CT's direction, so its axes still map onto the CT's and the
    compiled resampler gives SimpleITK's values on SimpleITK's grid."""
    rng = np.random.default_rng(5)
    rotation = np.array(sitk.Euler3DTransform((0, 0, 0), 0.1, 0.0, 0.2).GetMatrix())
    array = (rng.normal(size=(10, 24, 24)) * 80).astype(np.float32)
    image = _image(array, (0.8, 0.8, 1.6), direction=rotation)
    region = np.zeros(array.shape, bool)
    region[3:7, 6:18, 5:15] = True
    settings = {"resampledPixelSpacing": [0.6, 0.6, 1.6], "interpolator": "sitkBSpline"}
    resampled, mask = images.prepare(image, region, settings, 2)
    assert resampled.GetDirection() == pytest.approx(tuple(rotation.ravel()))
    reference_mask = images.region_image(region, image)
    expected = _itk_resample(image, resampled.GetOrigin(), resampled.GetSpacing(), resampled.GetSize(),
                             sitk.sitkBSpline, sitk.sitkFloat32)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), expected)
    expected_mask = _itk_resample(reference_mask, resampled.GetOrigin(), resampled.GetSpacing(), resampled.GetSize(),
                                  sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    np.testing.assert_array_equal(mask, expected_mask == 1)


def test_digitize_is_numpys():
    rng = np.random.default_rng(0)
    for trial in range(60):
        dtype = (np.float32, np.float64)[trial % 2]
        values = (rng.normal(size=500) * rng.uniform(1, 500)).astype(dtype)
        if trial % 3 == 0:
            values[::7] = np.round(values[::7] / 25) * 25  # exactly on an edge
        finite = values.copy()
        if trial % 5 == 0:
            values[3] = np.nan
        for edges in (bin_edges(finite, 25), bin_edges(finite, 0.1), bin_edges(finite, None, 16),
                      np.sort(rng.normal(size=7)), np.array([0.5])):
            np.testing.assert_array_equal(digitize(values, edges), np.digitize(values, edges))


@pytest.mark.parametrize("use_spacing", [True, False])
@pytest.mark.parametrize("shape", [(5, 6, 7), (1, 9, 8), (20, 3, 2)])
def test_gradient_magnitude_is_simpleitks_bit_for_bit(shape, use_spacing):
    rng = np.random.default_rng(sum(shape))
    array = (rng.normal(size=shape) * 100).astype(np.float32)
    spacing_zyx = (1.5, 0.7, 0.6)
    gradient = sitk.GradientMagnitudeImageFilter()
    gradient.SetUseImageSpacing(use_spacing)
    expected = sitk.GetArrayFromImage(gradient.Execute(_image(array, spacing_zyx[::-1])))
    np.testing.assert_array_equal(filters.gradient_magnitude(array, spacing_zyx, use_spacing), expected)
    box = tuple(slice(n // 3, n - n // 4) for n in shape)
    np.testing.assert_array_equal(filters.gradient_magnitude(array, spacing_zyx, use_spacing, box), expected[box])


def test_percentiles_from_histogram_order_statistics_are_numpys():
    """The first-order percentiles come from order statistics found by a histogram and a sort of only the bins that
    hold them: exactly ``numpy.percentile`` of the values (its virtual index and interpolation too), ties, flat
    stretches, one crowded bin and a range too narrow to divide into bins included."""
    from hccrad.features.engine import texture

    rng = np.random.default_rng(7)
    heavy = rng.normal(size=60_000) * 0.01  # a LoG image: nearly every value in one bin, a few far out
    heavy[:50] = 500.0
    narrow = np.tile([0.0, 5e-324], 3000)  # a subnormal range: its width cannot be divided into bins
    q = [10, 25, 50, 75, 90]
    for values in ((rng.normal(size=50_000) * 300 + 40).astype(np.float32),
                   (np.round(rng.normal(size=50_000) * 30) * 7).astype(np.float32),
                   np.full(10_000, 5.0, np.float32), rng.normal(size=9).astype(np.float32),
                   heavy.astype(np.float32), narrow):
        assert texture.percentiles(values, q) == list(np.percentile(values.astype(np.float64), q))


@pytest.mark.parametrize("wavelet", ["coif1", "haar", "db2", "sym3", "bior1.3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stationary_wavelet_level_is_pywavelets_bit_for_bit(wavelet, dtype):
    """One SWT level along each axis, in compiled code: PyWavelets' float filter table (read back from PyWavelets),
    its summation order (the wrap-around terms of the last outputs first, in descending filter order) and its
    precision, so every value equals ``pywt.swt``'s; only the outputs kept are computed."""
    import pywt

    rng = np.random.default_rng(len(wavelet))
    data = (rng.normal(size=(10, 12, 16)) * 300).astype(dtype)
    for axis in range(3):
        (approximation, detail), = pywt.swt(data, wavelet, level=1, start_level=0, axis=axis)
        for keep in (None, slice(3, 9)):
            ours = filters.swt_level(data, wavelet, axis, keep)
            cut = tuple(keep if k == axis and keep is not None else slice(None) for k in range(3))
            assert ours[0].dtype == approximation.dtype
            np.testing.assert_array_equal(ours[0], approximation[cut])
            np.testing.assert_array_equal(ours[1], detail[cut])
    assert filters.swt_level(data[:, :, :1], wavelet, 2) is None  # shorter than the filter: left to PyWavelets


@pytest.mark.parametrize("shape", [(5, 7, 9), (4, 7, 8), (5, 6, 8), (4, 6, 8), (1, 1, 1), (3, 1, 2)])
def test_wrap_to_even_is_numpys_wrap_pad(shape):
    """The wavelet's padding (each odd extent one wrapped voxel longer, axis after axis) equals np.pad's wrap mode,
    corners included."""
    from hccrad.features.engine.images import wrap_to_even

    array = np.random.default_rng(sum(shape)).random(shape).astype(np.float32)
    expected = np.pad(array, [(0, n % 2) for n in shape], "wrap")
    padded = wrap_to_even(array)
    assert padded.dtype == array.dtype
    np.testing.assert_array_equal(padded, expected)
