"""Compiled (numba) inner loops of the fast feature engine: texture matrices and mesh diameters.

The texture kernels take the region's bounding box padded by one empty voxel on every side and flattened:
``binned`` (int16, gray levels 1..Ng inside the region, 0 outside, so that it is also the region's mask) and
``voxels`` (the flat indices of the region's voxels in row-column-slice order, the order of PyRadiomics' C loops,
so that floating sums accumulate in the same order). Neighbours are flat offsets; the empty border means no
bounds checks.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np

from hccrad.features.engine.jit import load_without_refresh

#: The 13 unique directions of the 26-neighbourhood (the first non-zero component positive), (dz, dy, dx).
DIRECTIONS_13 = np.array([d for d in itertools.product((-1, 0, 1), repeat=3)
                          if any(d) and next(c for c in d if c) > 0], dtype=np.int64)
#: All 26 neighbour offsets, (dz, dy, dx): the 13 directions, then their opposites.
OFFSETS_26 = np.concatenate([DIRECTIONS_13, -DIRECTIONS_13])


def flat_offsets(directions: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Flat index steps of (dz, dy, dx) directions in a C-ordered array of ``shape``."""
    return (directions[:, 0] * shape[1] * shape[2] + directions[:, 1] * shape[2] + directions[:, 2]).astype(np.int64)


#: The number of unique directions of the 26-neighbourhood; :func:`neighbour_counts` loops over exactly this many,
#: a constant the compiler unrolls (about a fifth faster than a loop over ``steps.shape[0]``).
N_DIRECTIONS = len(DIRECTIONS_13)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def neighbour_counts(binned, voxels, steps, n_gray, max_length, alpha):
    """GLCM, run-length, GLDM and NGTDM counts in one pass over the region's voxels and their 26 neighbours.

    Parameters
    ----------
    binned : (n,) int16, gray levels 1..Ng in the region, 0 outside (the region is where ``binned > 0``).
    voxels : (m,) int32, flat indices of the region's voxels in raster order.
    steps : (13,) int64, flat steps (> 0) of the 13 unique directions; their opposites complete the
        26-neighbourhood.

    Returns
    -------
    glcm : (Ng, Ng, 13) counts of a voxel of level i with its neighbour of level j at +d.
    runs : (Ng, max_length, 13) counts of maximal runs of one level along each direction (a voxel outside the
        region ends a run).
    multi : (13,) whether some run along the direction is longer than one voxel (else the caller applies
        PyRadiomics' rule for directions in which the region is flat).
    dependence : (Ng, 27) counts of voxels of level i with k dependent neighbours (in the region and
        ``|i - j| <= alpha``).
    ngtdm : (Ng, 2) the number of voxels of level i and the sum of ``|i - mean of its region neighbours|``
        (0 for a voxel without neighbours in the region, which still counts).
    """
    # Branch-free: level 0 (outside) has its own row and column in the count arrays, dropped at the end. A run's
    # length so far is kept per direction in a ring buffer of the last ``size`` flat positions, which reaches back
    # past the largest step. Every voxel counts the length of its run so far: ``at_least[i, k]`` is the number of
    # runs of level i at least k long, and the runs exactly k long are ``at_least[i, k] - at_least[i, k + 1]``.
    #
    # Every index into the count arrays is an unsigned flat index: numba corrects each signed index for Python's
    # negative indexing (a compare, a mask and an add per access, and a stride read from the array), a large share
    # of this loop's instructions. Unsigned, ``v - step`` relies on the grid's empty border (``v >= step``), as the
    # signed version did. The classes run in the order reads, GLCM, runs, GLDM/NGTDM: the last loads the
    # neighbours as vectors, and placed last it no longer waits for their scalar stores to complete.
    if steps.shape[0] != N_DIRECTIONS:
        raise ValueError("neighbour_counts takes the 13 unique directions")
    n_dir = np.uint64(N_DIRECTIONS)
    levels_span = np.uint64(n_gray + 1) * n_dir
    lengths_span = np.uint64(max_length + 2) * n_dir
    dependence_span = np.uint64(2 * N_DIRECTIONS + 1)
    glcm = np.zeros((n_gray + 1) * (n_gray + 1) * N_DIRECTIONS, np.int64)
    at_least = np.zeros((n_gray + 1) * (max_length + 2) * N_DIRECTIONS, np.int64)
    dependence = np.zeros((n_gray + 1) * (2 * N_DIRECTIONS + 1), np.int64)
    ngtdm = np.zeros((n_gray + 1) * 2)
    size = 1
    while size <= np.max(steps):
        size *= 2
    wrap = np.uint64(size - 1)
    lengths = np.zeros(size * N_DIRECTIONS, np.uint32)
    unsigned_steps = np.empty(N_DIRECTIONS, np.uint64)
    for a in range(N_DIRECTIONS):
        if steps[a] <= 0:  # unsigned, a step <= 0 would read far outside the grid instead of failing
            raise ValueError("neighbour_counts takes steps > 0")
        unsigned_steps[a] = steps[a]
    forward = np.empty(N_DIRECTIONS, np.int64)
    backward = np.empty(N_DIRECTIONS, np.int64)
    for i in range(voxels.shape[0]):
        v = np.uint64(voxels[i])
        level = np.int64(binned[v])
        unsigned_level = np.uint64(level)
        for a in range(N_DIRECTIONS):
            forward[a] = binned[v + unsigned_steps[a]]
            backward[a] = binned[v - unsigned_steps[a]]
        glcm_row = unsigned_level * levels_span
        for a in range(N_DIRECTIONS):
            glcm[glcm_row + np.uint64(forward[a]) * n_dir + np.uint64(a)] += 1
        runs_row = unsigned_level * lengths_span
        here = (v & wrap) * n_dir
        for a in range(N_DIRECTIONS):
            behind = ((v - unsigned_steps[a]) & wrap) * n_dir + np.uint64(a)
            length = lengths[behind] * np.uint32(backward[a] == level) + np.uint32(1)
            lengths[here + np.uint64(a)] = length
            at_least[runs_row + np.uint64(length) * n_dir + np.uint64(a)] += 1
        dependent = 0
        count = 0
        total = 0
        for a in range(N_DIRECTIONS):
            ahead, behind_level = forward[a], backward[a]
            count += (ahead > 0) + (behind_level > 0)
            total += ahead + behind_level
            dependent += (((ahead > 0) & (abs(level - ahead) <= alpha))
                          + ((behind_level > 0) & (abs(level - behind_level) <= alpha)))
        dependence[unsigned_level * dependence_span + np.uint64(dependent)] += 1
        ngtdm[unsigned_level * np.uint64(2)] += 1.0
        if count > 0:
            ngtdm[unsigned_level * np.uint64(2) + np.uint64(1)] += abs(level - total / count)
    glcm_3d = glcm.reshape((n_gray + 1, n_gray + 1, N_DIRECTIONS))
    at_least_3d = at_least.reshape((n_gray + 1, max_length + 2, N_DIRECTIONS))
    runs = np.empty((n_gray, max_length, N_DIRECTIONS))
    multi = np.zeros(N_DIRECTIONS, dtype=np.bool_)
    for i in range(n_gray):
        for k in range(max_length):
            for a in range(N_DIRECTIONS):
                runs[i, k, a] = at_least_3d[i + 1, k + 1, a] - at_least_3d[i + 1, k + 2, a]
                multi[a] |= (k > 0) & (runs[i, k, a] > 0)
    return (glcm_3d[1:, 1:].astype(np.float64), runs, multi,
            dependence.reshape((n_gray + 1, 2 * N_DIRECTIONS + 1))[1:].astype(np.float64),
            ngtdm.reshape((n_gray + 1, 2))[1:].copy())


@numba.njit(cache=True, nogil=True)
def order_statistics(values, kth):
    """The ``kth`` smallest (0-based, sorted ascending) of ``values`` (finite), exactly, in two passes: a histogram
    of the values over equal-width bins between their minimum and maximum (a bin index that never decreases with the
    value, so every value of a lower bin is at most every value of a higher one), then a sort of only the bins
    that hold a wanted rank. Returns float64."""
    n = values.shape[0]
    low = np.float64(values[0])
    high = low
    for i in range(n):
        value = np.float64(values[i])
        if value < low:
            low = value
        if value > high:
            high = value
    out = np.empty(kth.shape[0])
    if high == low:
        out[:] = low
        return out
    n_bins = max(1, min(1 << 16, n // 32))
    scale = n_bins / (high - low)
    if not np.isfinite(scale):  # a range too narrow to divide: one bin, sorted whole (still exact)
        n_bins, scale = 1, 0.0
    counts = np.zeros(n_bins + 1, np.int64)
    for i in range(n):
        b = min(int((np.float64(values[i]) - low) * scale), n_bins - 1)
        counts[b + 1] += 1
    for b in range(n_bins):
        counts[b + 1] += counts[b]  # counts[b]: values in bins below b
    wanted = np.zeros(n_bins, np.bool_)
    bins = np.empty(kth.shape[0], np.int64)
    for q in range(kth.shape[0]):
        b = np.searchsorted(counts, kth[q], side="right") - 1
        bins[q] = b
        wanted[b] = True
    offsets = np.zeros(n_bins + 1, np.int64)
    for b in range(n_bins):
        offsets[b + 1] = offsets[b] + (counts[b + 1] - counts[b] if wanted[b] else 0)
    gathered = np.empty(offsets[n_bins], np.float64)
    filled = offsets[:n_bins].copy()
    for i in range(n):
        value = np.float64(values[i])
        b = min(int((value - low) * scale), n_bins - 1)
        if wanted[b]:
            gathered[filled[b]] = value
            filled[b] += 1
    for b in range(n_bins):
        if wanted[b]:
            gathered[offsets[b]:offsets[b + 1]].sort()
    for q in range(kth.shape[0]):
        b = bins[q]
        out[q] = gathered[offsets[b] + kth[q] - counts[b]]
    return out


@numba.njit(cache=True, nogil=True)
def zone_sizes(binned, voxels, earlier, adjacent):
    """The connected zones of equal gray level: (level, size) per zone, shape (n, 2), in no particular order.

    One raster pass of union-find (each set's root is its first voxel in raster order) joins each voxel to the
    neighbours of its level that come before it, then one pass counts each root's voxels.

    Parameters
    ----------
    binned, voxels : as for :func:`neighbour_counts`; ``binned`` is left unchanged.
    earlier : (k,) int64, the flat steps ``s > 0`` of the half of the connectivity before a voxel (``v - s``),
        in the order tried.
    adjacent : (k,) int64 bitmasks: bit j of ``adjacent[i]`` is set when the neighbours ``v - earlier[i]`` and
        ``v - earlier[j]`` are themselves neighbours. Two earlier neighbours that touch and share the voxel's level
        are already in one set, so once the voxel joins one, those it touches are skipped: a voxel whose neighbour
        through the first step (the slice below, which touches all 12 others in 3D) shares its level needs one
        join.
    """
    # Unsigned indices, as in :func:`neighbour_counts`: numba corrects every signed index for negative indexing.
    parent = np.empty(binned.shape[0], np.int32)  # only the region's voxels are read, each after it is written
    n_earlier = earlier.shape[0]
    unsigned_earlier = np.empty(n_earlier, np.uint64)
    for k in range(n_earlier):
        if earlier[k] <= 0:  # unsigned, a step <= 0 would read far outside the grid instead of failing
            raise ValueError("zone_sizes takes steps > 0")
        unsigned_earlier[k] = earlier[k]
    for i in range(voxels.shape[0]):
        v = np.uint64(voxels[i])
        level = binned[v]
        root = v
        parent[v] = np.int32(v)
        covered = 0
        for k in range(n_earlier):
            if (covered >> k) & 1:
                continue
            u = v - unsigned_earlier[k]
            if binned[u] == level:
                other = u
                while np.uint64(parent[other]) != other:  # find, halving the path
                    parent[other] = parent[np.uint64(parent[other])]
                    other = np.uint64(parent[other])
                if other < root:
                    parent[root] = np.int32(other)
                    root = other
                elif other > root:
                    parent[other] = np.int32(root)
                covered |= adjacent[k]
    # a root comes before the rest of its zone: it holds minus its zone's size in place of its parent
    n_zones = 0
    for i in range(voxels.shape[0]):
        v = np.uint64(voxels[i])
        up = parent[v]
        if np.uint64(up) == v:
            parent[v] = -1
            n_zones += 1
        else:
            while parent[np.uint64(up)] >= 0:
                up = parent[np.uint64(up)]
            parent[v] = up
            parent[np.uint64(up)] -= 1
    zones = np.empty((n_zones, 2), dtype=np.int32)
    n_zones = 0
    for i in range(voxels.shape[0]):
        v = np.uint64(voxels[i])
        if parent[v] < 0:
            zones[n_zones, 0] = binned[v]
            zones[n_zones, 1] = -parent[v]
            n_zones += 1
    return zones


@numba.njit(cache=True, nogil=True)
def moment_sums(values, shift, low, high):
    """Float64 sums over ``values`` (float32 or float64) for the first-order features, without temporary arrays.

    Returns
    -------
    (mean, m2, m3, m4, mean absolute deviation, energy of ``values + shift``, minimum, maximum,
    mean absolute deviation of the values within [low, high] from their mean)
    """
    n = values.shape[0]
    total = 0.0
    minimum = np.inf
    maximum = -np.inf
    robust_total = 0.0
    robust_count = 0
    for k in range(n):
        x = np.float64(values[k])
        total += x
        minimum = min(minimum, x)
        maximum = max(maximum, x)
        if low <= x <= high:
            robust_total += x
            robust_count += 1
    mean = total / n
    robust_mean = robust_total / max(robust_count, 1)
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    absolute = 0.0
    energy = 0.0
    robust_absolute = 0.0
    for k in range(n):
        x = np.float64(values[k])
        centred = x - mean
        squared = centred * centred
        m2 += squared
        m3 += squared * centred
        m4 += squared * squared
        absolute += abs(centred)
        shifted = x + shift
        energy += shifted * shifted
        if low <= x <= high:
            robust_absolute += abs(x - robust_mean)
    return (mean, m2 / n, m3 / n, m4 / n, absolute / n, energy, minimum, maximum,
            robust_absolute / max(robust_count, 1))


@numba.njit(cache=True, nogil=True, inline="always")
def _bin_index(x, edges, low, scale):
    """The bin of one value (``numpy.digitize``'s index): guessed from its distance to the first edge ``low``
    times ``scale`` (edges per unit, from the mean edge spacing; 0 for a single edge), then settled by exact
    comparisons with its edges; NaN past the last edge."""
    n_edges = edges.shape[0]
    if x != x:
        return n_edges
    guess = (np.float64(x) - low) * scale + 1.0 if scale > 0 else 0.0
    index = int(min(max(guess, 0.0), np.float64(n_edges)))
    while index > 0 and x < edges[index - 1]:
        index -= 1
    while index < n_edges and x >= edges[index]:
        index += 1
    return index


@numba.njit(cache=True, nogil=True, inline="always")
def _edge_scale(edges):
    """(first edge, edges per unit of value): a value's bin is guessed by a multiplication, cheaper than a
    division per value."""
    low = np.float64(edges[0])
    span = np.float64(edges[edges.shape[0] - 1]) - low
    return low, (edges.shape[0] - 1) / span if span > 0 else 0.0


@numba.njit(cache=True, nogil=True)
def digitize(values, edges):
    """``numpy.digitize(values, edges)`` (increasing edges; ``i`` with ``edges[i-1] <= x < edges[i]``, NaN past
    the last edge) as int32, in one pass: each value's bin is guessed from the mean edge spacing and then
    settled by exact comparisons with its edges."""
    out = np.empty(values.shape[0], np.int32)
    low, scale = _edge_scale(edges)
    for k in range(values.shape[0]):
        out[k] = _bin_index(values[k], edges, low, scale)
    return out


@numba.njit(cache=True, nogil=True)
def digitize_into(values, edges, voxels, binned):
    """:func:`digitize` of ``values`` written into a region's flat grid: value ``k``'s bin goes to
    ``binned[voxels[k]]`` (int16; the caller makes sure that ``len(edges)``, the largest bin, fits). Returns the
    count of each bin, (len(edges) + 1,) int64: ``numpy.bincount`` of the bins with that length. One pass, with
    neither the bins' array nor a pass to count them."""
    n_edges = edges.shape[0]
    counts = np.zeros(n_edges + 1, np.int64)
    low, scale = _edge_scale(edges)
    for k in range(values.shape[0]):
        index = _bin_index(values[k], edges, low, scale)
        binned[voxels[k]] = index
        counts[index] += 1
    return counts


def has_two_on_a_line(coordinates: np.ndarray, direction: np.ndarray) -> bool:
    """Whether some line of ``direction`` holds two of the region voxels ``coordinates`` (n, 3), a gap between
    them allowed: two voxels share a line when they agree after removing the multiple of the direction that
    zeroes its first non-zero component."""
    first = int(np.flatnonzero(direction)[0])
    keys = coordinates - (coordinates[:, first] * direction[first])[:, None] * direction[None, :]
    return len(np.unique(keys, axis=0)) < len(keys)


@numba.njit(cache=True, nogil=True)
def coordinate_moments(region):
    """The voxel count and the integer sums of a boolean region's (z, y, x) indices and their pairwise products.

    Returns
    -------
    n : int, the number of voxels in the region.
    sums : (3,) int64, the sum of each index over the region's voxels.
    products : (3, 3) int64, the sum of the products of two indices over the region's voxels (exact while
        ``n * max_index ** 2 < 2**63``).
    """
    sums = np.zeros(3, np.int64)
    products = np.zeros((3, 3), np.int64)
    n = 0
    for z in range(region.shape[0]):
        for y in range(region.shape[1]):
            row_count = 0
            x_sum = 0
            x_squares = 0
            for x in range(region.shape[2]):
                if region[z, y, x]:
                    row_count += 1
                    x_sum += x
                    x_squares += x * x
            if row_count:
                n += row_count
                sums[0] += z * row_count
                sums[1] += y * row_count
                sums[2] += x_sum
                products[0, 0] += z * z * row_count
                products[0, 1] += z * y * row_count
                products[0, 2] += z * x_sum
                products[1, 1] += y * y * row_count
                products[1, 2] += y * x_sum
                products[2, 2] += x_squares
    products[1, 0] = products[0, 1]
    products[2, 0] = products[0, 2]
    products[2, 1] = products[1, 2]
    return n, sums, products


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


@numba.njit(cache=True, nogil=True)
def plane_row_extremes(points, plane_axis):
    """The points a plane's convex hull can need: in each plane perpendicular to ``plane_axis`` and each row of it
    (the first in-plane coordinate), the points with the smallest and the largest second in-plane coordinate.
    ``points`` (n, 3) are non-negative int64 coordinates; the result (m, 3) is sorted by plane, row and second
    coordinate, as :func:`plane_hulls` needs, without a sort."""
    u_axis = 1 if plane_axis == 0 else 0
    v_axis = 1 if plane_axis == 2 else 2
    n_plane = points[:, plane_axis].max() + 1 if points.shape[0] else 0
    n_u = points[:, u_axis].max() + 1 if points.shape[0] else 0
    big = np.iinfo(np.int64).max
    low = np.full((n_plane, n_u), big, np.int64)
    high = np.full((n_plane, n_u), -1, np.int64)
    for k in range(points.shape[0]):
        p, u, v = points[k, plane_axis], points[k, u_axis], points[k, v_axis]
        if v < low[p, u]:
            low[p, u] = v
        if v > high[p, u]:
            high[p, u] = v
    count = 0
    for p in range(n_plane):
        for u in range(n_u):
            if high[p, u] >= 0:
                count += 1 if high[p, u] == low[p, u] else 2
    out = np.empty((count, 3), np.int64)
    k = 0
    for p in range(n_plane):
        for u in range(n_u):
            if high[p, u] >= 0:
                for v in (low[p, u], high[p, u]):
                    out[k, plane_axis] = p
                    out[k, u_axis] = u
                    out[k, v_axis] = v
                    k += 1
                    if high[p, u] == low[p, u]:
                        break
    return out


@numba.njit(cache=True, nogil=True)
def plane_hulls(points, plane_axis):
    """Convex hull vertices of the points of each plane (same ``points[:, plane_axis]``), in the plane's other two
    coordinates: Andrew's monotone chain on integer coordinates, exact. ``points`` (n, 3) int64 must be sorted by
    plane, then by the first and second in-plane coordinates. Returns the row indices of every plane's hull
    vertices (collinear and repeated points left out; every point of a plane of fewer than 3), and the start of
    each plane's run in that list, plus the end (``len(starts) - 1`` planes)."""
    n = points.shape[0]
    u_axis = 1 if plane_axis == 0 else 0
    v_axis = 1 if plane_axis == 2 else 2
    keep = np.empty(n, np.int64)
    stack = np.empty(2 * n + 1, np.int64)
    starts = np.empty(n + 1, np.int64)
    n_keep = 0
    n_planes = 0
    first = 0
    while first < n:
        last = first
        while last + 1 < n and points[last + 1, plane_axis] == points[first, plane_axis]:
            last += 1
        starts[n_planes] = n_keep
        n_planes += 1
        if last - first < 2:
            for k in range(first, last + 1):
                keep[n_keep] = k
                n_keep += 1
        else:
            top = 0
            for sweep in range(2):  # lower hull left to right, then upper hull right to left
                base = top
                for step in range(last - first + 1):
                    k = first + step if sweep == 0 else last - step
                    while top - base >= 2:
                        o, a = stack[top - 2], stack[top - 1]
                        cross = ((points[a, u_axis] - points[o, u_axis]) * (points[k, v_axis] - points[o, v_axis])
                                 - (points[a, v_axis] - points[o, v_axis]) * (points[k, u_axis] - points[o, u_axis]))
                        if cross <= 0:
                            top -= 1
                        else:
                            break
                    stack[top] = k
                    top += 1
                top -= 1  # each chain's last point is the other chain's first
            for k in range(top):
                keep[n_keep] = stack[k]
                n_keep += 1
        first = last + 1
    starts[n_planes] = n_keep
    return keep[:n_keep].copy(), starts[:n_planes + 1].copy()


@numba.njit(cache=True, nogil=True)
def cooccurrence_counts(binned, voxels, steps, n_gray):
    """GLCM counts for any set of offsets: (Ng, Ng, n_steps) counts of a voxel of level i with its neighbour of
    level j at ``+steps[a]``. ``binned`` must be padded by at least the largest offset (no bounds checks)."""
    glcm = np.zeros((n_gray + 1, n_gray + 1, steps.shape[0]), np.int64)
    for v in voxels:
        row = glcm[binned[v]]
        for a in range(steps.shape[0]):
            row[binned[v + steps[a]], a] += 1
    return glcm[1:, 1:].astype(np.float64)


@numba.njit(cache=True, nogil=True)
def neighbourhood_counts(binned, voxels, steps, n_gray, alpha):
    """GLDM and NGTDM counts for any neighbourhood ``steps`` (both directions listed): dependence (Ng,
    n_steps + 1) and ngtdm (Ng, 2), as :func:`neighbour_counts` computes them for the 26-neighbourhood."""
    n_steps = steps.shape[0]
    dependence = np.zeros((n_gray + 1, n_steps + 1), np.int64)
    ngtdm = np.zeros((n_gray + 1, 2))
    for v in voxels:
        level = binned[v]
        dependent = 0
        count = 0
        total = 0
        for a in range(n_steps):
            neighbour = binned[v + steps[a]]
            if neighbour > 0:
                count += 1
                total += neighbour
                if abs(level - neighbour) <= alpha:
                    dependent += 1
        dependence[level, dependent] += 1
        ngtdm[level, 0] += 1.0
        if count > 0:
            ngtdm[level, 1] += abs(level - total / count)
    return dependence[1:].astype(np.float64), ngtdm[1:].copy()


load_without_refresh(globals())  # the kernels above load from numba's cache without its compiler registries
