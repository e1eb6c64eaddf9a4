"""Compiled (numba) equivalents of the SimpleITK filters PyRadiomics calls: the recursive Laplacian of Gaussian,
cubic B-spline resampling of the image, nearest-neighbour resampling of the mask and the gradient magnitude.

Each reproduces ITK's arithmetic, not only its mathematics: the same coefficients, the same passes in the same
order, double precision within a pass and float32 where ITK stores float32, so that the float32 results are
ITK's own bit for bit. The B-spline sum is taken axis by axis rather than over 64 products, except where the
two orders could round to different float32 values: there ITK's own sum is taken (the tests compare with
SimpleITK voxel for voxel). What they
save is ITK's per-line bookkeeping: lines are filtered many at a time, so the recursions vectorise, and only the
region's box is finished.

References: ITK 5.4 ``RecursiveGaussianImageFilter`` (Deriche's fourth-order recursive approximation with Farnebäck
and Westin's edge-extension boundary coefficients), ``LaplacianRecursiveGaussianImageFilter``,
``BSplineDecompositionImageFilter``, ``BSplineInterpolateImageFunction`` (Unser's cubic B-spline),
``ResampleImageFilter`` and ``GradientMagnitudeImageFilter``.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from hccrad.features.engine.jit import load_without_refresh

# Deriche's fitted exponential series (Gaussian, its first and second derivative), as ITK gives them.
_A1 = (1.3530, -0.6724, -1.3563)
_B1 = (1.8151, -3.4327, 5.2318)
_A2 = (-0.3531, 0.6724, 0.3446)
_B2 = (0.0902, 0.6100, -2.2355)
_W1, _L1, _W2, _L2 = 0.6681, -1.3932, 2.0787, -1.3732


def _n_coefficients(sigmad: float, a1: float, b1: float, a2: float, b2: float
                    ) -> tuple[float, float, float, float, float, float, float]:
    sin1, sin2 = math.sin(_W1 / sigmad), math.sin(_W2 / sigmad)
    cos1, cos2 = math.cos(_W1 / sigmad), math.cos(_W2 / sigmad)
    exp1, exp2 = math.exp(_L1 / sigmad), math.exp(_L2 / sigmad)
    n0 = a1 + a2
    n1 = exp2 * (b2 * sin2 - (a2 + 2 * a1) * cos2)
    n1 += exp1 * (b1 * sin1 - (a1 + 2 * a2) * cos1)
    n2 = (a1 + a2) * cos2 * cos1
    n2 -= b1 * cos2 * sin1 + b2 * cos1 * sin2
    n2 *= 2 * exp1 * exp2
    n2 += a2 * exp1 * exp1 + a1 * exp2 * exp2
    n3 = exp2 * exp1 * exp1 * (b2 * sin2 - a2 * cos2)
    n3 += exp1 * exp2 * exp2 * (b1 * sin1 - a1 * cos1)
    return n0, n1, n2, n3, n0 + n1 + n2 + n3, n1 + 2 * n2 + 3 * n3, n1 + 4 * n2 + 9 * n3


def _d_coefficients(sigmad: float) -> tuple[float, float, float, float, float, float, float]:
    cos1, cos2 = math.cos(_W1 / sigmad), math.cos(_W2 / sigmad)
    exp1, exp2 = math.exp(_L1 / sigmad), math.exp(_L2 / sigmad)
    d4 = exp1 * exp1 * exp2 * exp2
    d3 = -2 * cos1 * exp1 * exp2 * exp2
    d3 += -2 * cos2 * exp2 * exp1 * exp1
    d2 = 4 * cos2 * cos1 * exp1 * exp2
    d2 += exp1 * exp1 + exp2 * exp2
    d1 = -2 * (exp2 * cos2 + exp1 * cos1)
    sd = 1.0 + d1 + d2 + d3 + d4
    dd = d1 + 2 * d2 + 3 * d3 + 4 * d4
    ed = d1 + 4 * d2 + 9 * d3 + 16 * d4
    return d1, d2, d3, d4, sd, dd, ed


def gaussian_coefficients(sigma_mm: float, spacing_mm: float, order: int, normalize_across_scale: bool
                          ) -> np.ndarray:
    """The recursive filter of a Gaussian (``order`` 0) or its second derivative (``order`` 2) along one axis.

    Returns
    -------
    (20,) float64: N0..N3 (causal input), D1..D4 (recursion), M1..M4 (anti-causal input), BN1..BN4 and BM1..BM4
    (the causal and anti-causal boundary terms that extend the edge value to infinity).
    """
    if order not in (0, 2):
        raise ValueError("only orders 0 and 2 are implemented")
    sigmad = sigma_mm / spacing_mm
    d1, d2, d3, d4, sd, dd, ed = _d_coefficients(sigmad)
    if order == 0:
        n0, n1, n2, n3, sn, _, _ = _n_coefficients(sigmad, _A1[0], _B1[0], _A2[0], _B2[0])
        alpha0 = 2 * sn / sd - n0
        n0, n1, n2, n3 = n0 * (1.0 / alpha0), n1 * (1.0 / alpha0), n2 * (1.0 / alpha0), n3 * (1.0 / alpha0)
    else:
        scale = sigma_mm * sigma_mm if normalize_across_scale else 1.0
        n0_0, n1_0, n2_0, n3_0, sn0, dn0, en0 = _n_coefficients(sigmad, _A1[0], _B1[0], _A2[0], _B2[0])
        n0_2, n1_2, n2_2, n3_2, sn2, dn2, en2 = _n_coefficients(sigmad, _A1[2], _B1[2], _A2[2], _B2[2])
        beta = -(2 * sn2 - sd * n0_2) / (2 * sn0 - sd * n0_0)
        n0, n1, n2, n3 = n0_2 + beta * n0_0, n1_2 + beta * n1_0, n2_2 + beta * n2_0, n3_2 + beta * n3_0
        sn, dn, en = sn2 + beta * sn0, dn2 + beta * dn0, en2 + beta * en0
        alpha2 = en * sd * sd - ed * sn * sd - 2 * dn * dd * sd + 2 * dd * dd * sn
        alpha2 /= sd * sd * sd
        n0, n1, n2, n3 = (n0 * (scale / alpha2), n1 * (scale / alpha2), n2 * (scale / alpha2),
                          n3 * (scale / alpha2))
    # both kernels are symmetric
    m1, m2, m3, m4 = n1 - d1 * n0, n2 - d2 * n0, n3 - d3 * n0, -d4 * n0
    sum_n = n0 + n1 + n2 + n3
    sum_m = m1 + m2 + m3 + m4
    sum_d = 1.0 + d1 + d2 + d3 + d4
    return np.array([n0, n1, n2, n3, d1, d2, d3, d4, m1, m2, m3, m4,
                     d1 * sum_n / sum_d, d2 * sum_n / sum_d, d3 * sum_n / sum_d, d4 * sum_n / sum_d,
                     d1 * sum_m / sum_d, d2 * sum_m / sum_d, d3 * sum_m / sum_d, d4 * sum_m / sum_d])


@numba.njit(cache=True, nogil=True)
def _recursive_lines(data, out, causal, anti, c, start):
    """Filter the columns of ``data`` (length L, W lines side by side; float32) into ``out`` (float32), as ITK's
    ``RecursiveSeparableImageFilter::FilterDataArray`` filters one line, with the lines in the inner loop.
    ``causal`` and ``anti`` are (L, W) float64 scratch. Only the positions ``start`` to ``start + len(out)`` of
    each filtered line are kept (the whole line is still filtered)."""
    n0, n1, n2, n3, d1, d2, d3, d4 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    m1, m2, m3, m4 = c[8], c[9], c[10], c[11]
    bn1, bn2, bn3, bn4, bm1, bm2, bm3, bm4 = c[12], c[13], c[14], c[15], c[16], c[17], c[18], c[19]
    length, width = data.shape
    for w in range(width):
        v = np.float64(data[0, w])
        x1 = np.float64(data[1, w])
        x2 = np.float64(data[2, w])
        x3 = np.float64(data[3, w])
        s0 = v * n0 + v * n1 + v * n2 + v * n3
        s0 -= v * bn1 + v * bn2 + v * bn3 + v * bn4
        s1 = x1 * n0 + v * n1 + v * n2 + v * n3
        s1 -= s0 * d1 + v * bn2 + v * bn3 + v * bn4
        s2 = x2 * n0 + x1 * n1 + v * n2 + v * n3
        s2 -= s1 * d1 + s0 * d2 + v * bn3 + v * bn4
        s3 = x3 * n0 + x2 * n1 + x1 * n2 + v * n3
        s3 -= s2 * d1 + s1 * d2 + s0 * d3 + v * bn4
        causal[0, w] = s0
        causal[1, w] = s1
        causal[2, w] = s2
        causal[3, w] = s3
    for i in range(4, length):
        for w in range(width):
            s = (np.float64(data[i, w]) * n0 + np.float64(data[i - 1, w]) * n1
                 + np.float64(data[i - 2, w]) * n2 + np.float64(data[i - 3, w]) * n3)
            s -= causal[i - 1, w] * d1 + causal[i - 2, w] * d2 + causal[i - 3, w] * d3 + causal[i - 4, w] * d4
            causal[i, w] = s
    last = length - 1
    for w in range(width):
        v = np.float64(data[last, w])
        x1 = np.float64(data[last - 1, w])
        x2 = np.float64(data[last - 2, w])
        a0 = v * m1 + v * m2 + v * m3 + v * m4
        a0 -= v * bm1 + v * bm2 + v * bm3 + v * bm4
        a1 = v * m1 + v * m2 + v * m3 + v * m4
        a1 -= a0 * d1 + v * bm2 + v * bm3 + v * bm4
        a2 = x1 * m1 + v * m2 + v * m3 + v * m4
        a2 -= a1 * d1 + a0 * d2 + v * bm3 + v * bm4
        a3 = x2 * m1 + x1 * m2 + v * m3 + v * m4
        a3 -= a2 * d1 + a1 * d2 + a0 * d3 + v * bm4
        anti[last, w] = a0
        anti[last - 1, w] = a1
        anti[last - 2, w] = a2
        anti[last - 3, w] = a3
    for step in range(length - 4):  # i from length - 4 down to 1; a descending range() is not vectorised
        i = length - 4 - step
        for w in range(width):
            a = (np.float64(data[i, w]) * m1 + np.float64(data[i + 1, w]) * m2
                 + np.float64(data[i + 2, w]) * m3 + np.float64(data[i + 3, w]) * m4)
            a -= anti[i, w] * d1 + anti[i + 1, w] * d2 + anti[i + 2, w] * d3 + anti[i + 3, w] * d4
            anti[i - 1, w] = a
    for i in range(out.shape[0]):
        for w in range(width):
            out[i, w] = np.float32(causal[start + i, w] + anti[start + i, w])


@numba.njit(cache=True, nogil=True)
def _recursive_axis(source, target, axis, c, start):
    """One recursive pass along ``axis`` (0 z, 1 y, 2 x) of a (z, y, x) float32 array into ``target``, which has
    ``source``'s shape except along ``axis``: there it keeps positions ``start`` to ``start + target.shape[axis]``
    of the filtered lines.

    The lines are filtered side by side from contiguous copies: on a strided view (a z pass, or a slab of the
    image) the compiled loops are not vectorised, and took twice as long as the copies and the filtering together.
    """
    nz, ny, nx = source.shape
    kept = target.shape[axis]
    if axis == 0:
        causal = np.empty((nz, nx))
        anti = np.empty((nz, nx))
        lines = np.empty((nz, nx), np.float32)
        filtered = np.empty((kept, nx), np.float32)
        for y in range(ny):
            lines[:, :] = source[:, y, :]
            _recursive_lines(lines, filtered, causal, anti, c, start)
            target[:, y, :] = filtered
    elif axis == 1:
        causal = np.empty((ny, nx))
        anti = np.empty((ny, nx))
        lines = np.empty((ny, nx), np.float32)
        filtered = np.empty((kept, nx), np.float32)
        for z in range(nz):
            lines[:, :] = source[z]
            _recursive_lines(lines, filtered, causal, anti, c, start)
            target[z] = filtered
    else:  # x lines are contiguous: filter them transposed, many at once
        causal = np.empty((nx, ny))
        anti = np.empty((nx, ny))
        lines = np.empty((nx, ny), np.float32)
        filtered = np.empty((kept, ny), np.float32)
        for z in range(nz):
            lines[:, :] = source[z].T
            _recursive_lines(lines, filtered, causal, anti, c, start)
            target[z] = filtered.T


@numba.njit(cache=True, nogil=True)
def _accumulate(total, term, factor):
    """``total = float32(total + term * factor)`` in double, as ITK's Laplacian adds each axis' term."""
    nz, ny, nx = total.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                total[z, y, x] = np.float32(np.float64(total[z, y, x]) + np.float64(term[z, y, x]) * factor)


#: Bytes of the LoG's first pass alive at a time (one slab across the last smoothing axis). 8 MiB: on a CT filtered
#: whole (no resampling, no preCrop) a 32 MiB slab was the whole first pass, which the peak held beside the second's.
LOG_SLAB_BYTES = 8 * 2**20


def laplacian_of_gaussian(image: np.ndarray, spacing_zyx: tuple[float, float, float], sigma_mm: float,
                          box: tuple[slice, slice, slice] | None = None, normalize_across_scale: bool = True
                          ) -> np.ndarray:
    """ITK's ``LaplacianRecursiveGaussianImageFilter`` of a float32 (z, y, x) array, inside ``box``.

    Parameters
    ----------
    image : (nz, ny, nx) float32, every extent at least 4.
    spacing_zyx : voxel spacing in mm.
    sigma_mm : the Gaussian's standard deviation in mm.
    box : index slices (step 1) of the part wanted (default: all). The filter still runs on the whole image,
        but each pass only on the lines that the later passes read, and keeps only the box along its own axis. The
        first two passes of each axis run slab by slab across the third: at most ``LOG_SLAB_BYTES`` of the first
        pass's output, and the second's (the box's extent along two axes, the image's along the third), are alive.

    Returns
    -------
    float32 array of the box's shape: the sum over x, y, z (ITK's order) of the second derivative along the
    axis, smoothed along the other two (in ITK's order), each divided by the squared spacing.
    """
    source = np.ascontiguousarray(image, dtype=np.float32)
    if min(source.shape) < 4:
        raise ValueError("every extent must be at least 4 voxels")
    cuts = box if box is not None else (slice(None),) * 3
    box = tuple(range(n)[cut] for n, cut in zip(source.shape, cuts, strict=True))
    if any(len(extent) == 0 or extent.step != 1 for extent in box):
        raise ValueError(f"box {box} must be non-empty index ranges of step 1")
    total = np.zeros(tuple(len(extent) for extent in box), np.float32)
    for derivative_axis in (2, 1, 0):  # ITK's x, y, z
        first_axis, last_axis = [axis for axis in (2, 1, 0) if axis != derivative_axis]  # ITK's smoothing order
        derivative = gaussian_coefficients(sigma_mm, spacing_zyx[derivative_axis], 2, normalize_across_scale)
        smoothing = [gaussian_coefficients(sigma_mm, spacing_zyx[axis], 0, False) for axis in (first_axis, last_axis)]
        # Each pass filters whole lines along its axis but keeps only the box there (the later passes read nothing
        # else). The first two passes run slab by slab across the last axis, whose lines they do not mix, so only
        # one slab of the first pass's output is alive at a time; the second's is the box's along two axes.
        shape = list(source.shape)
        shape[derivative_axis] = len(box[derivative_axis])
        shape[first_axis] = len(box[first_axis])
        smoothed = np.empty(tuple(shape), np.float32)
        plane = len(box[derivative_axis]) * source.shape[first_axis] * 4
        slab_size = max(1, LOG_SLAB_BYTES // plane)
        for slab_start in range(0, source.shape[last_axis], slab_size):
            slab = [slice(None)] * 3
            slab[last_axis] = slice(slab_start, min(slab_start + slab_size, source.shape[last_axis]))
            part = source[tuple(slab)]
            kept_shape = list(part.shape)
            kept_shape[derivative_axis] = len(box[derivative_axis])
            differentiated = np.empty(tuple(kept_shape), np.float32)
            _recursive_axis(part, differentiated, derivative_axis, derivative, box[derivative_axis].start)
            _recursive_axis(differentiated, smoothed[tuple(slab)], first_axis, smoothing[0], box[first_axis].start)
        shape[last_axis] = len(box[last_axis])
        term = np.empty(tuple(shape), np.float32)
        _recursive_axis(smoothed, term, last_axis, smoothing[1], box[last_axis].start)
        del smoothed
        spacing = spacing_zyx[derivative_axis]
        _accumulate(total, term, 1.0 / (spacing * spacing))
    return total


#: The cubic B-spline's pole and ITK's horizon for the causal initialisation (tolerance 1e-10).
SPLINE_POLE = math.sqrt(3.0) - 2.0
SPLINE_HORIZON = int(math.ceil(math.log(1e-10) / math.log(abs(SPLINE_POLE))))


@numba.njit(cache=True, nogil=True)
def _spline_lines(block, pole, horizon):
    """ITK's ``BSplineDecompositionImageFilter::DataToCoefficients1D`` (cubic, mirror boundaries) in place on
    the columns of ``block`` (length L, W lines side by side; float64)."""
    length, width = block.shape
    if length == 1:
        return
    gain = 1.0 * (1.0 - pole) * (1.0 - 1.0 / pole)
    for i in range(length):
        for w in range(width):
            block[i, w] *= gain
    if horizon < length:
        for w in range(width):
            total = block[0, w]
            power = pole
            for n in range(1, horizon):
                total += power * block[n, w]
                power *= pole
            block[0, w] = total
    else:
        inverse = 1.0 / pole
        for w in range(width):
            power = pole
            mirror = math.pow(pole, np.float64(length - 1))
            total = block[0, w] + mirror * block[length - 1, w]
            mirror *= mirror * inverse
            for n in range(1, length - 1):
                total += (power + mirror) * block[n, w]
                power *= pole
                mirror *= inverse
            block[0, w] = total / (1.0 - power * power)
    for n in range(1, length):
        for w in range(width):
            block[n, w] += pole * block[n - 1, w]
    for w in range(width):
        block[length - 1, w] = (pole / (pole * pole - 1.0)) * (pole * block[length - 2, w] + block[length - 1, w])
    for step in range(length - 1):  # n from length - 2 down to 0; a descending range() is not vectorised
        n = length - 2 - step
        for w in range(width):
            block[n, w] = pole * (block[n + 1, w] - block[n, w])


@numba.njit(cache=True, nogil=True)
def _spline_coefficients(image, pole, horizon, x_first, x_last):
    """Cubic B-spline coefficients (float64) of a (z, y, x) array read as float32, axes in ITK's order x, y, z, for
    the columns ``x_first..x_last`` (inclusive) only: every line of x is prefiltered whole, then only those columns
    go on to the y and z passes (each line is filtered on its own, so the columns' values are those of the whole
    array). Returns (nz, ny, x_last - x_first + 1)."""
    nz, ny, nx = image.shape
    width = x_last - x_first + 1
    coefficients = np.empty((nz, ny, width))
    lines = np.empty((nx, ny))
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                lines[x, y] = np.float64(np.float32(image[z, y, x]))
        _spline_lines(lines, pole, horizon)
        for y in range(ny):
            for x in range(width):
                coefficients[z, y, x] = lines[x_first + x, y]
        _spline_lines(coefficients[z], pole, horizon)
    column = np.empty((nz, width))  # a contiguous copy: the strided view's loops are not vectorised
    for y in range(ny):
        column[:, :] = coefficients[:, y, :]
        _spline_lines(column, pole, horizon)
        coefficients[:, y, :] = column
    return coefficients


@numba.njit(cache=True, nogil=True)
def _largest_magnitude(values):
    largest = 0.0
    for value in values.ravel():
        largest = max(largest, abs(value))
    return largest


@numba.njit(cache=True, nogil=True, inline="always")
def _itk_cubic_sum(coefficients, taps_z, weights_z, taps_y, weights_y, taps_x, weights_x, z, y, x):
    """ITK's own sum for one output voxel (``BSplineInterpolateImageFunction``): the 64 products in ITK's order
    (x fastest), each weight the product ``1 * w_x * w_y * w_z`` in that order."""
    total = 0.0
    for c in range(4):
        for b in range(4):
            for a in range(4):
                weight = 1.0
                weight *= weights_x[x, a]
                weight *= weights_y[y, b]
                weight *= weights_z[z, c]
                total += weight * coefficients[taps_z[z, c], taps_y[y, b], taps_x[x, a]]
    return total


@numba.njit(cache=True, nogil=True)
def _separable_cubic(coefficients, taps_z, weights_z, taps_y, weights_y, taps_x, weights_x, inside_z, inside_y,
                     inside_x, tolerance):
    """The B-spline at an axis-aligned output grid: per output axis, 4 (mirrored) coefficient indices and their
    weights per position, and whether the position is inside the input (else the output is 0).

    The sum runs axis by axis (4 + 4 + 4 taps). Where the float32 result could differ from that of ITK's 64-term
    sum, because the double lies within ``tolerance`` (the largest difference the two summation orders can make)
    of a float32 rounding boundary, ITK's sum itself is taken. That happens near float32 ties and near 0, where
    float32 keeps the double's last bits: an upsampled voxel on an input voxel of exactly 0 HU, a bin edge,
    comes out as ITK's +-1e-14 and lands in ITK's bin."""
    out = np.zeros((taps_z.shape[0], taps_y.shape[0], taps_x.shape[0]), np.float32)
    _, ny_in, nx_in = coefficients.shape
    plane = np.empty((ny_in, nx_in))
    row = np.empty(nx_in)
    for z in range(taps_z.shape[0]):
        if not inside_z[z]:
            continue
        for j in range(ny_in):
            for i in range(nx_in):
                plane[j, i] = (weights_z[z, 0] * coefficients[taps_z[z, 0], j, i]
                               + weights_z[z, 1] * coefficients[taps_z[z, 1], j, i]
                               + weights_z[z, 2] * coefficients[taps_z[z, 2], j, i]
                               + weights_z[z, 3] * coefficients[taps_z[z, 3], j, i])
        for y in range(taps_y.shape[0]):
            if not inside_y[y]:
                continue
            for i in range(nx_in):
                row[i] = (weights_y[y, 0] * plane[taps_y[y, 0], i] + weights_y[y, 1] * plane[taps_y[y, 1], i]
                          + weights_y[y, 2] * plane[taps_y[y, 2], i] + weights_y[y, 3] * plane[taps_y[y, 3], i])
            for x in range(taps_x.shape[0]):
                if inside_x[x]:
                    value = (weights_x[x, 0] * row[taps_x[x, 0]] + weights_x[x, 1] * row[taps_x[x, 1]]
                             + weights_x[x, 2] * row[taps_x[x, 2]] + weights_x[x, 3] * row[taps_x[x, 3]])
                    if np.float32(value - tolerance) != np.float32(value + tolerance):
                        value = _itk_cubic_sum(coefficients, taps_z, weights_z, taps_y, weights_y, taps_x,
                                               weights_x, z, y, x)
                    out[z, y, x] = np.float32(value)
    return out


def cubic_taps(positions: np.ndarray, length: int, offset: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ITK's cubic B-spline support of continuous indices ``positions`` (n,) along an axis of ``length``
    voxels: the 4 coefficient indices (mirrored at the ends), their weights, and whether each position is inside
    the buffer (``-0.5 <= position < length - 0.5``).

    ``offset``: the indices are returned relative to a crop of the axis starting at that voxel (the positions
    stay those of the whole axis, so the taps and weights are ITK's on the whole image)."""
    # ITK floors the position after rounding it to float32
    centre = np.floor(positions.astype(np.float32)).astype(np.int64)
    w = positions - centre.astype(np.float64)
    w3 = (1.0 / 6.0) * w * w * w
    w0 = (1.0 / 6.0) + 0.5 * w * (w - 1.0) - w3
    w2 = w + w0 - 2.0 * w3
    w1 = 1.0 - w0 - w2 - w3
    weights = np.stack([w0, w1, w2, w3], axis=1)
    taps = centre[:, None] + np.arange(-1, 3)[None, :]
    if length == 1:
        taps[:] = 0
    else:
        taps = np.where(taps < 0, -taps, taps)
        taps = np.where(taps >= length - 1, 2 * (length - 1) - taps, taps)
    inside = (positions >= -0.5) & (positions < length - 0.5)
    return np.ascontiguousarray(taps - offset), np.ascontiguousarray(weights), inside


def nearest_indices(positions: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """ITK's nearest-neighbour index (round half up) of continuous indices along an axis, and whether each is
    inside the buffer."""
    inside = (positions >= -0.5) & (positions < length - 0.5)
    return np.clip(np.floor(positions + 0.5).astype(np.int64), 0, length - 1), inside


def scanline_positions(start: float, end: float, size: int) -> np.ndarray:
    """Continuous indices along an output scanline of ``size`` voxels, as ITK's ``ResampleImageFilter``
    interpolates them for a linear transform: from the line's first voxel (``start``) towards the voxel one
    past its end (``end``)."""
    alpha = np.arange(size, dtype=np.float64) / float(size)
    return start + alpha * (end - start)


def _index_to_continuous_index(output: dict, image_origin: np.ndarray, physical_to_index: np.ndarray,
                               index_xyz: np.ndarray) -> np.ndarray:
    """Continuous input indices (n, 3; x y z) of output indices (n, 3; x y z), as ITK maps them: index to
    physical point on the output grid, then physical point to continuous index on the input grid."""
    to_physical = output["direction"] @ np.diag(output["spacing"])
    point = np.repeat(output["origin"][None, :], index_xyz.shape[0], axis=0)
    for j in range(3):
        point = point + to_physical[None, :, j] * index_xyz[:, j:j + 1]
    offset = point - image_origin[None, :]
    continuous = np.zeros_like(offset)
    for j in range(3):
        continuous = continuous + physical_to_index[None, :, j] * offset[:, j:j + 1]
    return continuous


def axis_aligned_positions(input_geometry: dict, output: dict) -> list[np.ndarray] | None:
    """Per output axis (x, y, z), the continuous input index of each output position, when the output grid's
    axes map onto the input's (else ``None``: the caller resamples with SimpleITK).

    ``input_geometry`` and ``output`` hold ``origin``, ``spacing`` and ``direction`` (3 x 3, row-major) as
    arrays, and ``output`` also ``size`` (x, y, z)."""
    physical_to_index = np.linalg.inv(input_geometry["direction"] @ np.diag(input_geometry["spacing"]))
    size = np.asarray(output["size"], dtype=np.int64)
    corners = np.array([[0, 0, 0], [size[0], 0, 0], [0, size[1], 0], [0, 0, size[2]]], dtype=np.float64)
    mapped = _index_to_continuous_index(output, input_geometry["origin"], physical_to_index, corners)
    steps = mapped[1:] - mapped[0]
    off_diagonal = steps - np.diag(np.diag(steps))
    if np.max(np.abs(off_diagonal)) > 1e-9 or np.any(np.diag(steps) <= 0):
        return None
    positions = []
    for axis in range(3):
        line = np.zeros((size[axis], 3))
        line[:, axis] = np.arange(size[axis])
        if axis == 0:  # along a scanline ITK interpolates between its two ends
            start, end = mapped[0, 0], mapped[1, 0]
            positions.append(scanline_positions(start, end, int(size[0])))
        else:
            positions.append(_index_to_continuous_index(output, input_geometry["origin"], physical_to_index,
                                                        line)[:, axis])
    return positions


def cubic_support(positions: list[np.ndarray], shape_zyx: tuple[int, int, int], margin: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The input voxels (inclusive index box, x y z) the cubic B-spline at ``positions`` reads, grown by
    ``margin`` and clipped to the image: ``(lower, upper)``."""
    size = np.array(shape_zyx[::-1])
    lower = np.array([np.floor(p.min()) if p.size else 0 for p in positions], dtype=np.int64) - 2 - margin
    upper = np.array([np.ceil(p.max()) if p.size else 0 for p in positions], dtype=np.int64) + 2 + margin
    return np.clip(lower, 0, size - 1), np.clip(upper, 0, size - 1)


#: The most memory (bytes) the B-spline coefficients of one resampling hold at once: a larger input is
#: prefiltered in blocks of columns (x), each block's x lines prefiltered whole again.
COEFFICIENT_BLOCK_BYTES = 96 * 2**20


def resample_cubic(image: np.ndarray, positions: list[np.ndarray], offset: tuple[int, int, int] = (0, 0, 0),
                   full_shape: tuple[int, int, int] | None = None,
                   block_bytes: int = COEFFICIENT_BLOCK_BYTES) -> np.ndarray:
    """ITK's cubic B-spline resampling of a (z, y, x) array (read as float32; any layout, not copied) at
    axis-aligned continuous indices (``positions`` per axis x, y, z, from :func:`axis_aligned_positions`):
    (nz', ny', nx') float32, 0 outside the input.

    ``image`` may be a crop of the whole image (``full_shape``, z y x) starting at voxel ``offset`` (x y z); the
    positions are then still those on the whole image, as ITK computes them (its taps, weights, mirror boundaries
    and inside test are the whole image's). The crop should hold the :func:`cubic_support` of the positions
    with a margin: the prefilter's recursion sees the crop's edges, an influence decaying as 0.268 per voxel.

    Memory: the double coefficients are made for blocks of output columns of at most ``block_bytes``; each block
    prefilters the input's x lines whole and keeps its own columns, so the values do not depend on the blocks.
    """
    full_shape = tuple(image.shape) if full_shape is None else tuple(full_shape)
    (taps_x, weights_x, inside_x), (taps_y, weights_y, inside_y), (taps_z, weights_z, inside_z) = (
        cubic_taps(positions[axis], full_shape[2 - axis], int(offset[axis])) for axis in range(3))
    out = np.zeros((taps_z.shape[0], taps_y.shape[0], taps_x.shape[0]), np.float32)
    columns = np.flatnonzero(inside_x)
    if columns.size == 0 or not inside_y.any() or not inside_z.any():
        return out
    per_column = image.shape[0] * image.shape[1] * 8
    n_blocks = max(1, int(np.ceil(per_column * image.shape[2] / block_bytes)))
    for block in np.array_split(columns, min(n_blocks, columns.size)):
        first, last = int(taps_x[block].min()), int(taps_x[block].max())
        coefficients = _spline_coefficients(image, SPLINE_POLE, SPLINE_HORIZON, first, last)
        # the two summation orders differ by at most a few double ulps of the largest coefficient per product
        tolerance = 64 * 8 * np.finfo(np.float64).eps * _largest_magnitude(coefficients)
        values = _separable_cubic(coefficients, taps_z, weights_z, taps_y, weights_y,
                                     np.ascontiguousarray(taps_x[block] - first),
                                     np.ascontiguousarray(weights_x[block]), inside_z, inside_y,
                                     np.ones(block.size, dtype=np.bool_), tolerance)
        out[:, :, block[0]:block[-1] + 1] = values
        del coefficients
    return out


def resample_nearest(mask: np.ndarray, positions: list[np.ndarray]) -> np.ndarray:
    """ITK's nearest-neighbour resampling of a (z, y, x) array at axis-aligned continuous indices (0 outside)."""
    (index_x, inside_x), (index_y, inside_y), (index_z, inside_z) = (
        nearest_indices(positions[axis], mask.shape[2 - axis]) for axis in range(3))
    out = mask[np.ix_(index_z, index_y, index_x)]
    outside = ~(inside_z[:, None, None] & inside_y[None, :, None] & inside_x[None, None, :])
    out[outside] = 0
    return out


@numba.njit(cache=True, nogil=True)
def _gradient_magnitude(image, scale_z, scale_y, scale_x, z0, z1, y0, y1, x0, x1):
    nz, ny, nx = image.shape
    out = np.empty((z1 - z0, y1 - y0, x1 - x0), np.float32)
    for z in range(z0, z1):
        below, above = max(z - 1, 0), min(z + 1, nz - 1)
        for y in range(y0, y1):
            before, after = max(y - 1, 0), min(y + 1, ny - 1)
            for x in range(x0, x1):
                left, right = max(x - 1, 0), min(x + 1, nx - 1)
                gx = (0.5 * scale_x) * np.float64(image[z, y, left]) + (-0.5 * scale_x) * np.float64(image[z, y, right])
                gy = ((0.5 * scale_y) * np.float64(image[z, before, x])
                      + (-0.5 * scale_y) * np.float64(image[z, after, x]))
                gz = ((0.5 * scale_z) * np.float64(image[below, y, x])
                      + (-0.5 * scale_z) * np.float64(image[above, y, x]))
                total = 0.0
                total += gx * gx
                total += gy * gy
                total += gz * gz
                out[z - z0, y - y0, x - x0] = np.float32(math.sqrt(total))
    return out


def gradient_magnitude(image: np.ndarray, spacing_zyx: tuple[float, float, float], use_spacing: bool = True,
                       box: tuple[slice, slice, slice] | None = None) -> np.ndarray:
    """ITK's ``GradientMagnitudeImageFilter`` of a float32 (z, y, x) array, inside ``box`` (default: all).

    Central differences ``(f[i + 1] - f[i - 1]) / 2`` per axis, divided by the spacing (mm) when
    ``use_spacing``, with the edge voxel repeated beyond the image (zero-flux Neumann); the root of the sum of
    squares in double, stored as float32.
    """
    box = box if box is not None else (slice(None),) * 3
    bounds = [part.indices(n)[:2] for part, n in zip(box, image.shape, strict=True)]
    scales = [1.0 / s if use_spacing else 1.0 for s in spacing_zyx]
    return _gradient_magnitude(np.ascontiguousarray(image, dtype=np.float32), *scales,
                               *(bound for pair in bounds for bound in pair))


# ----------------------------------------------------------------------------------------------------------------
# The stationary wavelet transform, one level along one axis, as PyWavelets computes it


@functools.lru_cache(maxsize=16)
def swt_filters(wavelet: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """PyWavelets' own decomposition filters (low, high) in the precision it filters ``dtype`` data with. PyWavelets
    keeps a float table beside the double one, whose values can differ from the rounded doubles in the last bit
    (coif1's fourth low-pass tap does), so they are read back from PyWavelets itself: the transform of a unit
    impulse is the filter, exactly."""
    import pywt

    length = pywt.Wavelet(wavelet).dec_len
    size = 2 * length + 2 * (length % 2)
    impulse = np.zeros(size, dtype=dtype)
    impulse[length] = 1
    (low, high), = pywt.swt(impulse, wavelet, level=1, start_level=0)
    half = length // 2
    # output[o] = sum_j filter[j] * input[(o + half - j) mod N], so filter[j] = output[length - half + j]
    taps = [(length - half + j) % size for j in range(length)]
    return np.ascontiguousarray(low[taps]), np.ascontiguousarray(high[taps])


def _swt_order(length: int, taps: int, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output ``first..stop-1`` of a line of ``length``: the input index and filter index of each term, in
    the order PyWavelets' ``downsampling_convolution_periodization`` adds them (filter index ascending, except that
    the last ``taps / 2`` outputs first add, in descending filter order, the terms that wrap to the line's start)."""
    half = taps // 2
    outputs = stop - first
    inputs = np.empty((outputs, taps), np.int64)
    filter_index = np.empty((outputs, taps), np.int64)
    for row, o in enumerate(range(first, stop)):
        i = o + half
        order = list(range(taps)) if i < length else (list(range(i - length, -1, -1))
                                                       + list(range(i - length + 1, taps)))
        filter_index[row] = order
        inputs[row] = [(i - j) % length for j in order]
    return inputs, filter_index


@numba.njit(cache=True, nogil=True)
def _swt_along(data, low, high, inputs, filter_index, axis):
    """Both sub-bands of one SWT level along ``axis`` of a (z, y, x) array, for the outputs whose terms are
    ``inputs`` and ``filter_index`` (rows), each sum in the data's own precision, term by term in row order."""
    nz, ny, nx = data.shape
    outputs, taps = inputs.shape
    zero = data.dtype.type(0)
    if axis == 2:
        approximation = np.empty((nz, ny, outputs), data.dtype)
        detail = np.empty((nz, ny, outputs), data.dtype)
        # rows whose terms read inputs[o, 0] - t in plain filter order (no wrap) form one block [plain_start,
        # plain_stop): summed tap by tap over the block, on contiguous ranges that the compiler vectorises
        plain = np.zeros(outputs, np.bool_)
        for o in range(outputs):
            plain[o] = True
            for t in range(taps):
                if filter_index[o, t] != t or inputs[o, t] != inputs[o, 0] - t:
                    plain[o] = False
        plain_start = 0
        while plain_start < outputs and not plain[plain_start]:
            plain_start += 1
        plain_stop = plain_start
        while plain_stop < outputs and plain[plain_stop]:
            plain_stop += 1
        for o in range(plain_stop, outputs):
            plain[o] = False  # a second block, if any, takes the general path
        shift = inputs[plain_start, 0] - plain_start if plain_stop > plain_start else 0
        width = plain_stop - plain_start
        a_sum = np.empty(width, data.dtype)
        d_sum = np.empty(width, data.dtype)
        for z in range(nz):
            for y in range(ny):
                a_sum[:] = zero
                d_sum[:] = zero
                for t in range(taps):
                    lf = low[t]
                    hf = high[t]
                    first_input = plain_start + shift - t
                    values = data[z, y, first_input:first_input + width]
                    for o in range(width):
                        a_sum[o] = a_sum[o] + lf * values[o]
                        d_sum[o] = d_sum[o] + hf * values[o]
                approximation[z, y, plain_start:plain_stop] = a_sum
                detail[z, y, plain_start:plain_stop] = d_sum
                for o in range(outputs):
                    if not plain[o]:
                        a = zero
                        d = zero
                        for t in range(taps):
                            value = data[z, y, inputs[o, t]]
                            a = a + low[filter_index[o, t]] * value
                            d = d + high[filter_index[o, t]] * value
                        approximation[z, y, o] = a
                        detail[z, y, o] = d
    elif axis == 1:
        approximation = np.empty((nz, outputs, nx), data.dtype)
        detail = np.empty((nz, outputs, nx), data.dtype)
        for z in range(nz):
            for o in range(outputs):
                a_row = approximation[z, o]
                d_row = detail[z, o]
                a_row[:] = zero
                d_row[:] = zero
                for t in range(taps):
                    line = inputs[o, t]
                    lf = low[filter_index[o, t]]
                    hf = high[filter_index[o, t]]
                    for x in range(nx):
                        value = data[z, line, x]
                        a_row[x] = a_row[x] + lf * value
                        d_row[x] = d_row[x] + hf * value
    else:
        approximation = np.empty((outputs, ny, nx), data.dtype)
        detail = np.empty((outputs, ny, nx), data.dtype)
        for o in range(outputs):
            a_plane = approximation[o]
            d_plane = detail[o]
            a_plane[:, :] = zero
            d_plane[:, :] = zero
            for t in range(taps):
                plane = inputs[o, t]
                lf = low[filter_index[o, t]]
                hf = high[filter_index[o, t]]
                for y in range(ny):
                    for x in range(nx):
                        value = data[plane, y, x]
                        a_plane[y, x] = a_plane[y, x] + lf * value
                        d_plane[y, x] = d_plane[y, x] + hf * value
    return approximation, detail


def swt_level(data: np.ndarray, wavelet: str, axis: int, keep: slice | None = None
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """PyWavelets' ``swt(data, wavelet, level=1, start_level=0, axis=axis)`` of a (z, y, x) float32 or float64
    array, bit for bit, as (approximation, detail), with only the outputs ``keep`` along ``axis`` (default all).
    ``None`` where PyWavelets' wrap-around differs (a line shorter than the filter): the caller asks PyWavelets."""
    length = data.shape[axis]
    if data.dtype not in (np.float32, np.float64):
        return None
    low, high = swt_filters(wavelet, data.dtype.str)
    if length < low.size or length % 2:
        return None
    first, stop, _ = (keep or slice(None)).indices(length)
    inputs, filter_index = _swt_order(length, low.size, first, stop)
    return _swt_along(data, low, high, inputs, filter_index, axis)


load_without_refresh(globals())  # the kernels above load from numba's cache without its compiler registries
