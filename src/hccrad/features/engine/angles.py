"""The neighbour offsets ("angles") of PyRadiomics' texture classes, generated as its C code generates them.

PyRadiomics' ``build_angles`` enumerates offsets (dz, dy, dx) from ``+max distance`` down to ``-max distance`` in
each axis (z slowest), keeps an offset when its infinity norm is one of the requested ``distances``, it moves by
less than the region's bounding box in every axis, and it does not move along ``force2Ddimension``; a
mono-directional set keeps the first half (its opposites are the second half, mirrored). Which class uses which set:

============  ===================================  =================
class         distances                            directions
============  ===================================  =================
GLCM          the ``distances`` setting            mono-directional
GLRLM         1                                    mono-directional
GLSZM         1                                    both
GLDM, NGTDM   the ``distances`` setting            both
============  ===================================  =================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def texture_angles(box_shape: Sequence[int], distances: Sequence[int] = (1,), force2d_dimension: int | None = None,
                   bidirectional: bool = False) -> np.ndarray:
    """PyRadiomics' angles for a region whose bounding box has ``box_shape`` (z, y, x voxels).

    Parameters
    ----------
    box_shape
        The bounding box of the region, (z, y, x) voxels: an offset as long as the box in an axis is left out.
    distances
        Infinity-norm distances (voxels, each >= 1).
    force2d_dimension
        The axis (0 z, 1 y, 2 x) that angles must not move along, or None for 3D.
    bidirectional
        Both directions of every offset (GLSZM, GLDM, NGTDM), else one of each pair (GLCM, GLRLM).

    Returns
    -------
    (n_angles, 3) int64 offsets (dz, dy, dx), in PyRadiomics' order.
    """
    wanted = sorted({int(d) for d in distances})
    if not wanted or wanted[0] < 1:
        raise ValueError(f"distances must be integers >= 1, found {list(distances)}")
    largest = wanted[-1]
    span = np.arange(largest, -largest - 1, -1)
    grid = np.stack(np.meshgrid(span, span, span, indexing="ij"), axis=-1).reshape(-1, 3)
    norm = np.abs(grid).max(axis=1)
    keep = np.isin(norm, wanted)
    for axis in range(3):
        keep &= np.abs(grid[:, axis]) < int(box_shape[axis])
        if force2d_dimension == axis:
            keep &= grid[:, axis] == 0
    angles = grid[keep].astype(np.int64)
    # the enumeration is symmetric about its centre: the first half's opposites are the second half, reversed
    return angles if bidirectional else angles[: len(angles) // 2]


def flat_steps(angles: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Flat index steps of (dz, dy, dx) offsets in a C-ordered array of ``shape``."""
    return (angles[:, 0] * shape[1] * shape[2] + angles[:, 1] * shape[2] + angles[:, 2]).astype(np.int64)


def weights(angles: np.ndarray, spacing_zyx: Sequence[float], norm: str, matrix: str) -> np.ndarray:
    """PyRadiomics' per-angle weights for ``weightingNorm`` (``no_weighting``, ``manhattan``, ``euclidean``,
    ``infinity``), for the GLCM (``exp(-distance^2)``) or the GLRLM (the distance itself); distances in mm."""
    scaled = np.abs(angles) * np.asarray(spacing_zyx, dtype=np.float64)[None, :]
    if norm == "no_weighting":
        return np.ones(len(angles))
    if norm == "infinity":
        distance = scaled.max(axis=1)
    elif norm == "euclidean":
        distance = np.sqrt(np.sum(scaled ** 2, axis=1))
    elif norm == "manhattan":
        distance = scaled.sum(axis=1)
    else:
        raise ValueError(f"weightingNorm {norm!r}: expected no_weighting, manhattan, euclidean or infinity")
    if matrix == "glrlm":
        return distance
    if norm == "euclidean":  # PyRadiomics: exp(-sum of squares), the square root and its square cancelled
        return np.exp(-np.sum(scaled ** 2, axis=1))
    return np.exp(-distance ** 2)
