"""Shape features (PyRadiomics' ``shape`` class) of a region: mesh surface and volume, diameters, axes.

PyRadiomics meshes the region by marching cubes on its binary mask (vertices at edge midpoints) and sums the
triangles' areas and signed volumes. Both sums are additive over cubes, so they only need, for each of the 256
cube configurations, the configuration's area and its signed volume as an affine function of the cube's position
(the determinant is multilinear, so ``det(p + a, p + b, p + c) = det(a, b, c) + p . (b x c + c x a + a x b)``).
These per-configuration values are measured once per spacing from PyRadiomics' own compiled routine on single
cubes, so the mesh is PyRadiomics' mesh by construction, and then applied to all cubes at once.

The maximum diameters are PyRadiomics' exact maxima over the region's border voxels (voxels with a neighbour
outside the region). The farthest pair of a set is a pair of its convex hull's vertices, and a border voxel lying
between the two ends of its row is never needed, so only row ends, and then only hull vertices, are compared. A
vertex of the 3D hull is a vertex of the hull of every plane through it, so the 3D candidates are the points that
are hull vertices in their axial, coronal and sagittal planes at once: exact integer geometry, without Qhull (and
without importing SciPy's ``spatial`` module into the features command).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hccrad.features.engine.kernels import (
    coordinate_moments,
    max_squared_distance,
    plane_hulls,
    plane_row_extremes,
)

#: The 8 corners of a marching cube, (dz, dy, dx); bit k of a configuration is corner k.
CUBE_CORNERS = ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 0))


def _single_cube(configuration: int, shift_axis: int | None) -> np.ndarray:
    """A mask holding one cube of ``configuration``; with ``shift_axis`` the cube sits one voxel further along
    that axis, after an empty layer."""
    shape = [2, 2, 2]
    offset = [0, 0, 0]
    if shift_axis is not None:
        shape[shift_axis] = 3
        offset[shift_axis] = 1
    mask = np.zeros(shape, dtype=bool)
    for bit, (dz, dy, dx) in enumerate(CUBE_CORNERS):
        if configuration >> bit & 1:
            mask[dz + offset[0], dy + offset[1], dx + offset[2]] = True
    return mask


@lru_cache(maxsize=32)
def cube_tables(spacing_zyx: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-configuration surface area (256,), 6 x signed volume at the origin (256,) and the volume's gradient
    with respect to the cube position in voxels (256, 3), for one voxel spacing (mm, z y x)."""
    from radiomics import cShape

    spacing = np.asarray(spacing_zyx, dtype=np.float64)

    def area_volume(mask: np.ndarray) -> tuple[float, float]:
        area, volume, _ = cShape.calculate_coefficients(mask, spacing)
        return area, volume

    area = np.zeros(256)
    volume6 = np.zeros(256)
    gradient = np.zeros((256, 3))
    for configuration in range(256):
        area[configuration], volume = area_volume(_single_cube(configuration, None))
        volume6[configuration] = 6 * volume
    for configuration in range(256):
        for axis in range(3):
            shifted = _single_cube(configuration, axis)
            _, total = area_volume(shifted)
            # the shifted mask holds two cubes: ours at position 1, and at the origin the cube made of the empty
            # layer and our cube's near face
            _, first = area_volume(np.ascontiguousarray(np.take(shifted, [0, 1], axis=axis)))
            gradient[configuration, axis] = 6 * (total - first) - volume6[configuration]
    return area, volume6, gradient


def _cube_configurations(padded: np.ndarray) -> np.ndarray:
    """Configuration (0..255) of every marching cube of a padded boolean mask, shape (z-1, y-1, x-1)."""
    nz, ny, nx = padded.shape
    configuration = np.zeros((nz - 1, ny - 1, nx - 1), dtype=np.uint8)
    for bit, (dz, dy, dx) in enumerate(CUBE_CORNERS):
        corner = padded[dz:nz - 1 + dz, dy:ny - 1 + dy, dx:nx - 1 + dx]
        configuration |= corner.astype(np.uint8) << np.uint8(bit)
    return configuration


def mesh_area_volume(padded: np.ndarray, spacing_zyx: tuple[float, float, float]) -> tuple[float, float]:
    """Marching-cubes surface area (mm^2) and enclosed volume (mm^3) of a boolean mask padded with one empty
    voxel on every side."""
    area_table, volume6_table, gradient_table = cube_tables(tuple(float(s) for s in spacing_zyx))
    configuration = _cube_configurations(padded)
    surface = (configuration != 0) & (configuration != 255)
    positions = np.nonzero(surface)
    kinds = configuration[positions]
    counts = np.bincount(kinds, minlength=256).astype(np.float64)
    area = float(counts @ area_table)
    volume6 = float(counts @ volume6_table)
    for axis in range(3):
        position_sums = np.bincount(kinds, weights=positions[axis].astype(np.float64), minlength=256)
        volume6 += float(position_sums @ gradient_table[:, axis])
    return area, volume6 / 6.0


def mesh_vertices(padded: np.ndarray) -> np.ndarray:
    """The marching-cubes mesh vertices of a padded boolean mask, in half-voxel units (2 x index), shape (n, 3).

    Vertices sit at the midpoints of the grid edges whose two voxels differ, each edge once, as PyRadiomics
    stores them for its diameters.
    """
    vertices = []
    for axis in range(3):
        low = [slice(None)] * 3
        high = [slice(None)] * 3
        low[axis] = slice(0, -1)
        high[axis] = slice(1, None)
        edges = np.argwhere(padded[tuple(low)] != padded[tuple(high)]).astype(np.int64) * 2
        edges[:, axis] += 1
        vertices.append(edges)
    return np.concatenate(vertices)


def _plane_hull_vertices(points: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each plane's candidates (the ends of its rows, sorted by plane, then by the in-plane coordinates), the
    indices (into them) of each plane's convex hull vertices, and where each plane's run of indices starts
    (:func:`~hccrad.features.engine.kernels.plane_hulls`). A point between the two ends of its row is never a hull
    vertex, so only row ends are kept, which also orders them without a sort."""
    ordered = plane_row_extremes(np.ascontiguousarray(points, dtype=np.int64), axis)
    keep, starts = plane_hulls(ordered, axis)
    return ordered, keep, starts


def _plane_maximum(hulls: tuple[np.ndarray, np.ndarray, np.ndarray], spacing: np.ndarray) -> float:
    """Largest squared distance (mm^2) between two vertices lying in the same plane, from the planes' hull vertices
    (:func:`_plane_hull_vertices`)."""
    ordered, keep, starts = hulls
    best = 0.0
    for start, stop in zip(starts[:-1], starts[1:], strict=True):
        if stop - start >= 2:
            best = max(best, max_squared_distance(np.ascontiguousarray(ordered[keep[start:stop]]), spacing))
    return best


def _vertices_of_every_plane_hull(hulls: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """The points (m, 3) int64 that are hull vertices of their plane along all three axes, from the three axes'
    :func:`_plane_hull_vertices`. They hold every vertex of the 3D convex hull: a point that is not a convex
    combination of the other points is not one of the other points of any plane through it either."""
    selected = [ordered[keep] for ordered, keep, _ in hulls]
    if any(points.shape[0] == 0 for points in selected):
        return np.empty((0, 3), np.int64)
    dims = np.max([points.max(axis=0) for points in selected], axis=0) + 1
    keys = None
    for points in selected:
        plane_keys = np.ravel_multi_index(tuple(points.T), tuple(dims))
        keys = plane_keys if keys is None else np.intersect1d(keys, plane_keys)
    return np.stack(np.unravel_index(keys, tuple(dims)), axis=1).astype(np.int64)


def maximum_diameters(padded: np.ndarray, spacing_zyx: tuple[float, float, float]) -> dict[str, float]:
    """PyRadiomics' four maximum diameters (mm) of a padded boolean mask, over pairs of mesh vertices: in axial
    slices ('Slice', same z), in coronal planes ('Column', same y), in sagittal planes ('Row', same x) and in 3D.

    Each maximum is attained by two convex hull vertices of the vertices concerned, so only those are compared,
    with PyRadiomics' arithmetic (``((i + 1/2) s)`` coordinates, squared differences summed z, y, x).
    """
    spacing = np.asarray(spacing_zyx, dtype=np.float64) / 2.0  # per half-voxel unit
    vertices = mesh_vertices(padded)
    hulls = [_plane_hull_vertices(vertices, axis) for axis in range(3)]
    maxima = [_plane_maximum(plane_hulls_of_axis, spacing) for plane_hulls_of_axis in hulls]
    # the 3D maximum is attained by two vertices of the 3D hull, which are vertices of their planes' hulls
    total = max_squared_distance(_vertices_of_every_plane_hull(hulls), spacing)
    return {"Maximum2DDiameterSlice": float(np.sqrt(maxima[0])),
            "Maximum2DDiameterColumn": float(np.sqrt(maxima[1])),
            "Maximum2DDiameterRow": float(np.sqrt(maxima[2])),
            "Maximum3DDiameter": float(np.sqrt(total))}


def coordinate_covariance(region: np.ndarray, spacing: np.ndarray) -> tuple[int, np.ndarray]:
    """The voxel count and the (population) covariance matrix (mm^2, shape (3, 3)) of a boolean region's voxel
    positions, the matrix whose eigenvalues give PyRadiomics' axis lengths.

    PyRadiomics centres the physical coordinates in floating point and multiplies them (a BLAS product over
    n x 3 arrays). Here the index sums are integers and ``n * sum(a b) - sum(a) sum(b)`` is formed exactly, so
    each entry is ``s_a s_b (n sum(a b) - sum(a) sum(b)) / n^2`` rounded twice: the same matrix to within
    floating-point rounding, without the n x 3 arrays or the BLAS threads.
    """
    n_voxels, sums, products = coordinate_moments(region)
    covariance = np.zeros((3, 3))
    if n_voxels == 0:
        return 0, covariance
    n = int(n_voxels)
    for a in range(3):
        for b in range(3):
            centred = n * int(products[a, b]) - int(sums[a]) * int(sums[b])  # exact (Python integers)
            covariance[a, b] = centred / (n * n) * float(spacing[a]) * float(spacing[b])
    return n, covariance


def shape_features(region: np.ndarray, spacing_zyx: tuple[float, float, float]) -> dict[str, float]:
    """The 14 (non-deprecated) shape features of PyRadiomics for a region cropped to its bounding box.

    Parameters
    ----------
    region
        Boolean mask (z, y, x), cropped to the region's bounding box.
    spacing_zyx
        Voxel spacing in mm.
    """
    padded = np.pad(region, 1)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    area, volume = mesh_area_volume(padded, spacing_zyx)
    n_voxels, covariance = coordinate_covariance(padded, spacing)
    eigen = np.linalg.eigvals(covariance)
    eigen[(eigen < 0) & (eigen > -1e-10)] = 0
    eigen.sort()
    z, y, x = spacing

    def root(value: float) -> float:
        return float(np.sqrt(value)) if value >= 0 else float("nan")

    features = {
        "Elongation": root(eigen[1] / eigen[2]) if eigen[1] >= 0 and eigen[2] >= 0 else float("nan"),
        "Flatness": root(eigen[0] / eigen[2]) if eigen[0] >= 0 and eigen[2] >= 0 else float("nan"),
        "LeastAxisLength": root(eigen[0]) * 4,
        "MajorAxisLength": root(eigen[2]) * 4,
        **maximum_diameters(padded, spacing_zyx),
        "MeshVolume": volume,
        "MinorAxisLength": root(eigen[1]) * 4,
        "Sphericity": float((36 * np.pi * volume ** 2) ** (1.0 / 3.0) / area),
        "SurfaceArea": area,
        "SurfaceVolumeRatio": area / volume,
        "VoxelVolume": float(n_voxels * (z * x * y)),
    }
    return features
