"""Compiled (numba) inner loops of the fast feature engine: texture matrices and mesh diameters.

The texture kernels take the region's bounding box padded by one empty voxel on every side and flattened:
``binned`` (int32, gray levels 1..Ng inside the region, 0 outside), ``mask`` (bool) and ``voxels`` (the flat
indices of the region's voxels in row-column-slice order, the order of PyRadiomics' C loops, so that floating
sums accumulate in the same order). Neighbours are flat offsets; the empty border means no bounds checks.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np

#: The 13 unique directions of the 26-neighbourhood (the first non-zero component positive), (dz, dy, dx).
DIRECTIONS_13 = np.array([d for d in itertools.product((-1, 0, 1), repeat=3)
                          if any(d) and next(c for c in d if c) > 0], dtype=np.int64)
#: All 26 neighbour offsets, (dz, dy, dx): the 13 directions, then their opposites.
OFFSETS_26 = np.concatenate([DIRECTIONS_13, -DIRECTIONS_13])


def flat_offsets(directions: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Flat index steps of (dz, dy, dx) directions in a C-ordered array of ``shape``."""
    return (directions[:, 0] * shape[1] * shape[2] + directions[:, 1] * shape[2] + directions[:, 2]).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def glcm_counts(binned, mask, voxels, steps, n_gray):
    """Co-occurrence counts, shape (Ng, Ng, n_directions): a voxel of level i with its neighbour of level j at +d."""
    n_dir = steps.shape[0]
    counts = np.zeros((n_gray, n_gray, n_dir))
    for v in voxels:
        level = binned[v] - 1
        for a in range(n_dir):
            j = v + steps[a]
            if mask[j]:
                counts[level, binned[j] - 1, a] += 1.0
    return counts


@numba.njit(cache=True, nogil=True)
def neighbourhood_counts(binned, mask, voxels, steps, n_gray, alpha):
    """GLDM and NGTDM in one pass over the 26-neighbourhood.

    Returns
    -------
    dependence : (Ng, n_steps + 1) counts of voxels of level i with k dependent neighbours (in the region and
        ``|i - j| <= alpha``).
    ngtdm : (Ng, 2) the number of voxels of level i and the sum of ``|i - mean of its region neighbours|``
        (0 for a voxel without neighbours in the region, which still counts).
    """
    n_steps = steps.shape[0]
    dependence = np.zeros((n_gray, n_steps + 1))
    ngtdm = np.zeros((n_gray, 2))
    for v in voxels:
        level = binned[v]
        dependent = 0
        count = 0.0
        total = 0.0
        for a in range(n_steps):
            j = v + steps[a]
            if mask[j]:
                other = binned[j]
                count += 1.0
                total += other
                if abs(level - other) <= alpha:
                    dependent += 1
        dependence[level - 1, dependent] += 1.0
        diff = 0.0
        if count > 0:
            diff = abs(level - total / count)
        ngtdm[level - 1, 0] += 1.0
        ngtdm[level - 1, 1] += diff
    return dependence, ngtdm


@numba.njit(cache=True, nogil=True)
def zone_sizes(binned, mask, voxels, steps):
    """The connected zones (neighbours ``steps``) of equal gray level: (level, size) per zone, shape (n, 2)."""
    todo = mask.copy()
    stack = np.empty(voxels.shape[0], dtype=np.int64)
    zones = np.empty((voxels.shape[0], 2), dtype=np.int64)
    n_zones = 0
    for start in voxels:
        if not todo[start]:
            continue
        level = binned[start]
        todo[start] = False
        top = 0
        stack[0] = start
        size = 0
        while top >= 0:
            current = stack[top]
            top -= 1
            size += 1
            for a in range(steps.shape[0]):
                j = current + steps[a]
                if todo[j] and binned[j] == level:
                    todo[j] = False
                    top += 1
                    stack[top] = j
        zones[n_zones, 0] = level
        zones[n_zones, 1] = size
        n_zones += 1
    return zones[:n_zones].copy()


@numba.njit(cache=True, nogil=True)
def run_length_counts(binned, mask, voxels, steps, n_gray, max_length):
    """Run-length counts, shape (Ng, max_length, n_directions).

    A run is a maximal sequence of region voxels of one gray level along a direction; a voxel outside the region
    ends it. Returns also, per direction, whether some run is longer than one voxel (else the caller applies
    PyRadiomics' rule for directions in which the region is flat).
    """
    n_dir = steps.shape[0]
    counts = np.zeros((n_gray, max_length, n_dir))
    multi = np.zeros(n_dir, dtype=np.bool_)
    for v in voxels:
        level = binned[v]
        for a in range(n_dir):
            step = steps[a]
            previous = v - step
            if mask[previous] and binned[previous] == level:
                continue  # not the first voxel of its run
            length = 1
            j = v + step
            while mask[j] and binned[j] == level:
                length += 1
                j += step
            counts[level - 1, length - 1, a] += 1.0
            if length > 1:
                multi[a] = True
    return counts, multi


def has_two_on_a_line(coordinates: np.ndarray, direction: np.ndarray) -> bool:
    """Whether some line of ``direction`` holds two of the region voxels ``coordinates`` (n, 3), a gap between
    them allowed: two voxels share a line when they agree after removing the multiple of the direction that
    zeroes its first non-zero component."""
    first = int(np.flatnonzero(direction)[0])
    keys = coordinates - (coordinates[:, first] * direction[first])[:, None] * direction[None, :]
    return len(np.unique(keys, axis=0)) < len(keys)


@numba.njit(cache=True, nogil=True)
def max_squared_distance(points, half_spacing):
    """The largest squared distance (mm^2) between two of ``points`` (n, 3, in half-voxel units), as PyRadiomics
    computes it from vertex coordinates ``(i + 1/2) s``: squared differences summed in the order z, y, x."""
    best = 0.0
    n = points.shape[0]
    for i in range(n):
        az = points[i, 0] * half_spacing[0]
        ay = points[i, 1] * half_spacing[1]
        ax = points[i, 2] * half_spacing[2]
        for j in range(i + 1, n):
            dz = az - points[j, 0] * half_spacing[0]
            dy = ay - points[j, 1] * half_spacing[1]
            dx = ax - points[j, 2] * half_spacing[2]
            distance = dz * dz + dy * dy + dx * dx
            if distance > best:
                best = distance
    return best
