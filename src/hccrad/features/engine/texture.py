"""First-order and texture features (PyRadiomics' firstorder, glcm, glrlm, glszm, gldm, ngtdm) of one region.

Inputs are the filtered image values and the discretised gray levels of a region cropped to its bounding box.
Matrices are built by the compiled kernels already compacted to the gray levels present (and, for run lengths,
zone sizes and dependences, to the sizes present), which is what PyRadiomics obtains after deleting empty rows
and columns; the formulas below are PyRadiomics' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hccrad.features.engine.angles import flat_steps, texture_angles, weights
from hccrad.features.engine.kernels import (
    DIRECTIONS_13,
    OFFSETS_26,
    cooccurrence_counts,
    digitize,
    digitize_into,
    flat_offsets,
    has_two_on_a_line,
    moment_sums,
    neighbour_counts,
    neighbourhood_counts,
    order_statistics,
    zone_sizes,
)

EPS = np.spacing(1)
#: The most gray levels a region may have (16-bit levels); PyRadiomics' matrices would be unusably large anyway.
MAX_GRAY_LEVELS = 32767


@dataclass(frozen=True)
class TextureSettings:
    """The settings that shape the texture matrices (PyRadiomics' names in brackets).

    Attributes
    ----------
    spacing_zyx
        Voxel spacing (mm, z y x) of the image the features are computed on, for ``weighting``.
    distances
        Infinity-norm neighbour distances of GLCM, GLDM and NGTDM (``distances``, default [1]).
    force2d_dimension
        The axis (0 z, 1 y, 2 x) that neighbours must not cross (``force2D`` with ``force2Ddimension``), or None.
    weighting
        How GLCM and GLRLM combine their angles (``weightingNorm``): None averages the angles' features; a norm
        (``no_weighting``, ``manhattan``, ``euclidean``, ``infinity``) sums the angles' matrices, weighted.
    gldm_alpha
        GLDM's coarseness (``gldm_a``): neighbours with ``|i - j| <= gldm_alpha`` are dependent.
    symmetrical
        GLCM made symmetrical, P + P^T (``symmetricalGLCM``).
    """

    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)
    distances: tuple[int, ...] = (1,)
    force2d_dimension: int | None = None
    weighting: str | None = None
    gldm_alpha: int = 0
    symmetrical: bool = True

    @classmethod
    def from_options(cls, options: dict[str, Any], spacing_zyx: tuple[float, float, float]) -> TextureSettings:
        """From a PyRadiomics settings dict (PyRadiomics' defaults for absent keys)."""
        force2d = bool(options.get("force2D", False))
        return cls(spacing_zyx=tuple(float(s) for s in spacing_zyx),
                   distances=tuple(int(d) for d in (options.get("distances") or [1])),
                   force2d_dimension=int(options.get("force2Ddimension", 0)) if force2d else None,
                   weighting=options.get("weightingNorm"),
                   gldm_alpha=int(options.get("gldm_a", 0)),
                   symmetrical=bool(options.get("symmetricalGLCM", True)))

    @property
    def standard(self) -> bool:
        """Distance 1 in 3D: every matrix comes from the one-pass kernel."""
        return self.distances == (1,) and self.force2d_dimension is None


class RegionGrid:
    """A region's discretised gray levels in flat form for the compiled kernels, and their counts.

    Parameters
    ----------
    levels
        Gray levels (1..Ng) of the region's voxels, in ``box_mask`` order, shape (m,).
    box_mask
        The region (bool, z y x) on its bounding box.
    settings
        The texture settings; the box is padded by the largest distance, so the kernels need no bounds checks.
    voxels
        The flat indices of the region's voxels in the padded box, from another image of the same region with the
        same padding (they depend only on the region), else computed here.

    Attributes
    ----------
    level_counts
        The count of each gray level, (len(edges) + 1,): ``numpy.bincount`` of the levels with trailing zeros
        up to the last bin, when the grid was made by :meth:`from_values`, else None.
    """

    def __init__(self, levels: np.ndarray, box_mask: np.ndarray, settings: TextureSettings | None = None,
                 voxels: np.ndarray | None = None):
        settings = settings or TextureSettings()
        # 16-bit levels and 32-bit indices halve the kernels' memory and cache traffic
        top_level = int(levels.max()) if levels.size else 0
        _check_levels(top_level)
        pad = max(settings.distances)
        padded = _padded_grid(box_mask.shape, pad)
        padded[tuple(slice(pad, -pad) for _ in range(3))][box_mask] = levels
        binned = padded.ravel()
        # the region's voxels are the same in every filtered image: the caller may pass them from the last image
        expected = int(np.count_nonzero(box_mask))
        if voxels is None or voxels.shape[0] != expected:
            voxels = np.flatnonzero(binned).astype(np.int32)
        self._hold(settings, padded.shape, box_mask.shape, binned, voxels, top_level)
        self.level_counts = None

    @classmethod
    def from_values(cls, values: np.ndarray, edges: np.ndarray, box_mask: np.ndarray,
                    settings: TextureSettings | None = None, voxels: np.ndarray | None = None) -> RegionGrid:
        """The grid of a region's ``values`` (``box_mask`` order, shape (m,)) discretised with ``edges``
        (:func:`bin_edges`), the gray levels written straight into the grid at the region's voxels
        (:func:`~hccrad.features.engine.kernels.digitize_into`); ``level_counts`` holds their counts
        (``numpy.bincount`` of the levels, with trailing zeros up to ``len(edges)``). The same grid as
        ``RegionGrid(digitize(values, edges), box_mask, ...)`` without the levels' array and the pass that counts
        them."""
        settings = settings or TextureSettings()
        if len(edges) > MAX_GRAY_LEVELS:  # levels may not fit 16 bits: the general path says so if they do not
            levels = digitize(values, edges)
            grid = cls(levels, box_mask, settings, voxels)
            grid.level_counts = np.bincount(levels)
            return grid
        pad = max(settings.distances)
        padded = _padded_grid(box_mask.shape, pad)
        if voxels is None or voxels.shape[0] != values.shape[0]:
            voxels = np.flatnonzero(np.pad(box_mask, pad)).astype(np.int32)
        binned = padded.ravel()
        counts = digitize_into(values, edges, voxels, binned)
        present = np.flatnonzero(counts)
        grid = cls.__new__(cls)
        grid._hold(settings, padded.shape, box_mask.shape, binned, voxels, int(present[-1]) if present.size else 0)
        grid.level_counts = counts
        return grid

    def _hold(self, settings: TextureSettings, shape: tuple[int, ...], box_shape: tuple[int, ...],
              binned: np.ndarray, voxels: np.ndarray, n_gray: int) -> None:
        self.settings = settings
        self.shape = shape
        self.box_shape = box_shape
        self.binned = binned
        self.voxels = voxels
        self.directions = flat_offsets(DIRECTIONS_13, self.shape)
        self.n_gray = n_gray  # the padding is 0
        self._counts: tuple[np.ndarray, ...] | None = None

    def counts(self) -> tuple[np.ndarray, ...]:
        """(glcm, runs, multi, dependence, ngtdm) of :func:`~hccrad.features.engine.kernels.neighbour_counts`
        (distance 1, 13 directions, 26 neighbours), computed once."""
        if self._counts is None:
            self._counts = neighbour_counts(self.binned, self.voxels, self.directions, self.n_gray,
                                            max(self.box_shape), self.settings.gldm_alpha)
        return self._counts

    def _angles(self, distances: tuple[int, ...], bidirectional: bool) -> np.ndarray:
        return texture_angles(self.box_shape, distances, self.settings.force2d_dimension, bidirectional)

    def cooccurrence(self) -> tuple[np.ndarray, np.ndarray]:
        """GLCM counts (Ng, Ng, angles) and the angles (dz, dy, dx)."""
        if self.settings.standard:
            return self.counts()[0], DIRECTIONS_13
        angles = self._angles(self.settings.distances, bidirectional=False)
        return cooccurrence_counts(self.binned, self.voxels, flat_steps(angles, self.shape), self.n_gray), angles

    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """Run-length counts (Ng, max length, directions) along PyRadiomics' run directions (distance 1, in the
        plane under force2D), a direction in which no line holds two region voxels cleared, and the directions."""
        _, counts, multi, _, _ = self.counts()
        keep = np.ones(len(DIRECTIONS_13), dtype=bool)
        if self.settings.force2d_dimension is not None:
            keep = DIRECTIONS_13[:, self.settings.force2d_dimension] == 0
        counts = counts[:, :, keep].copy()
        directions = DIRECTIONS_13[keep]
        if not multi[keep].all():
            coordinates = np.argwhere(self.binned.reshape(self.shape) > 0)
            for a in np.flatnonzero(~multi[keep]):
                if not has_two_on_a_line(coordinates, directions[a]):
                    counts[:, :, a] = 0.0
        return counts, directions

    def neighbourhood(self) -> tuple[np.ndarray, np.ndarray]:
        """GLDM dependence counts (Ng, neighbours + 1) and NGTDM (Ng, 2) over PyRadiomics' neighbourhood."""
        if self.settings.standard:
            return self.counts()[3], self.counts()[4]
        angles = self._angles(self.settings.distances, bidirectional=True)
        return neighbourhood_counts(self.binned, self.voxels, flat_steps(angles, self.shape), self.n_gray,
                                    self.settings.gldm_alpha)

    def zone_neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """The zones' connectivity (26 neighbours; 8 in the plane under force2D) for
        :func:`~hccrad.features.engine.kernels.zone_sizes`: the flat steps to the neighbours before a voxel in raster
        order, those that touch the most others first, and which of them touch each other (bitmasks)."""
        if self.settings.force2d_dimension is None:
            offsets = OFFSETS_26
        else:
            offsets = self._angles((1,), bidirectional=True)
        return zone_connectivity(np.asarray(offsets), self.shape)


def _check_levels(top_level: int) -> None:
    if top_level > MAX_GRAY_LEVELS:
        raise ValueError(f"{top_level} gray levels: more than the engine's {MAX_GRAY_LEVELS} (increase binWidth)")


def _padded_grid(box_shape: tuple[int, ...], pad: int) -> np.ndarray:
    """A zeroed int16 grid of the box padded by ``pad`` on every side, within the kernels' 32-bit indices."""
    padded = np.zeros(tuple(n + 2 * pad for n in box_shape), dtype=np.int16)
    if padded.size >= 2**31:
        raise ValueError(f"the region's box {box_shape} is too large for the engine's 32-bit indices")
    return padded


def zone_connectivity(offsets: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(flat steps, adjacency bitmasks) of the neighbours ``offsets`` (k, 3) (dz, dy, dx) that come before a voxel
    in a C-ordered array of ``shape``, as :func:`~hccrad.features.engine.kernels.zone_sizes` takes them: ordered by
    how many of the others each touches (most first, then by step), bit j of mask i set when neighbours i and j
    touch (no component differs by more than 1)."""
    steps = flat_steps(offsets, shape)
    before = offsets[steps > 0]
    touching = np.abs(before[:, None, :] - before[None, :, :]).max(axis=2) <= 1
    np.fill_diagonal(touching, False)
    order = sorted(range(len(before)), key=lambda k: (-int(touching[k].sum()), int(steps[steps > 0][k])))
    before, touching = before[order], touching[np.ix_(order, order)]
    masks = np.array([sum(1 << j for j in np.flatnonzero(row)) for row in touching], dtype=np.int64)
    return flat_steps(before, shape), masks


def bin_edges(values: np.ndarray, bin_width: float | None = 25, bin_count: int | None = None) -> np.ndarray:
    """PyRadiomics' bin edges: equally spaced from 0 with ``bin_width`` (the lowest edge at or below the region
    minimum), or ``bin_count`` bins over the range. Arithmetic in the values' own type, as PyRadiomics does."""
    if bin_count is not None:
        edges = np.histogram(values, bin_count)[1]
        edges[-1] += 1
        return edges
    minimum = np.min(values)
    maximum = np.max(values)
    low = minimum - (minimum % bin_width)
    high = maximum + 2 * bin_width
    edges = np.arange(low, high, bin_width)
    if len(edges) == 1:
        edges = np.array([edges[0] - .5, edges[0] + .5])
    return edges


def discretisation_edges(values: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """The bin edges of the region values with PyRadiomics' ``binWidth``/``binCount`` settings."""
    return bin_edges(values, settings.get("binWidth", 25), settings.get("binCount"))


def discretise(values: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """Gray levels (1-based int32) of the region values, with PyRadiomics' ``binWidth``/``binCount`` rule."""
    return digitize(values, discretisation_edges(values, settings))


def percentiles(values: np.ndarray, q: list[float]) -> list[float]:
    """``numpy.percentile(values, q)`` (linear interpolation) in float64, from order statistics of the float32 values
    rather than a partition of a float64 copy.

    The order statistics are found by a histogram of the values and a sort of only the bins that hold them; they
    are the same floats, so the result is ``numpy.percentile``'s exactly.
    """
    n = values.size
    positions = [(n - 1) * (quantile / 100.0) for quantile in q]  # numpy's virtual index, in its order
    below = [int(np.floor(position)) for position in positions]
    kth = sorted({k for b in below for k in (b, min(b + 1, n - 1))})
    statistic = _order_statistics(values, kth)
    result = []
    for position, b in zip(positions, below, strict=True):
        a, c = float(statistic[b]), float(statistic[min(b + 1, n - 1)])
        fraction = position - b
        # numpy's lerp: from the nearer end, so that the end points are exact
        result.append(a + (c - a) * fraction if fraction < 0.5 else c - (c - a) * (1 - fraction))
    return result


def _order_statistics(values: np.ndarray, kth: list[int]) -> dict[int, float]:
    """The k-th smallest of ``values`` (0-based) for each k of ``kth``: by a histogram and a sort of the bins that
    hold them (:func:`~hccrad.features.engine.kernels.order_statistics`), the same floats ``numpy.partition``
    gives; small or non-finite arrays go to ``numpy.partition`` itself."""
    if values.size < 4096 or not (np.isfinite(values.min()) and np.isfinite(values.max())):
        ordered = np.partition(values, kth)
        return {k: ordered[k] for k in kth}
    found = order_statistics(np.ascontiguousarray(values), np.array(kth, dtype=np.int64))
    return {k: found[q] for q, k in enumerate(kth)}


def firstorder_features(values: np.ndarray, levels: np.ndarray | None, voxel_volume_mm3: float,
                        shift: float = 0.0, level_counts: np.ndarray | None = None) -> dict[str, float]:
    """The 18 first-order features of the region values (HU after filtering, shape (m,)) and their gray levels
    (``levels``, or their counts ``level_counts``, ``np.bincount(levels)``, when the caller has them; one of the
    two is needed).

    Sums run in float64 over the values, as PyRadiomics' on its float64 copy; percentiles interpolate linearly.
    """
    n = values.size
    if level_counts is None and levels is None:
        raise ValueError("firstorder_features needs the gray levels or their counts")
    counts = np.bincount(levels) if level_counts is None else level_counts
    counts = counts[counts > 0]
    p = counts / float(counts.sum())
    p10, p25, median, p75, p90 = percentiles(values, [10, 25, 50, 75, 90])
    mean, m2, m3, m4, absolute, energy, minimum, maximum, robust = moment_sums(
        np.ascontiguousarray(values), float(shift), p10, p90)
    features = {
        "10Percentile": p10,
        "90Percentile": p90,
        "Energy": energy,
        "Entropy": -float(np.sum(p * np.log2(p + EPS))),
        "InterquartileRange": p75 - p25,
        "Kurtosis": m4 / m2 ** 2.0 if m2 != 0 else 0.0,
        "Maximum": maximum,
        "Mean": mean,
        "MeanAbsoluteDeviation": absolute,
        "Median": median,
        "Minimum": minimum,
        "Range": maximum - minimum,
        "RobustMeanAbsoluteDeviation": robust,
        "RootMeanSquared": np.sqrt(energy / n) if n else 0.0,
        "Skewness": m3 / m2 ** 1.5 if m2 != 0 else 0.0,
        "TotalEnergy": energy * voxel_volume_mm3,
        "Uniformity": float(np.sum(p ** 2)),
        "Variance": m2,
    }
    return {name: float(value) for name, value in features.items()}


def _angle_mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if values.size else float("nan")


def glcm_features(grid: RegionGrid, gray_levels: np.ndarray) -> dict[str, float]:
    """The 24 GLCM features: one matrix per angle (13 directions at distance 1 by default), symmetrical, normalised
    per angle; the features averaged over the angles, or, with a ``weighting``, computed on the angles' matrices
    summed with PyRadiomics' weights."""
    settings = grid.settings
    n_gray = grid.n_gray
    counts, angles = grid.cooccurrence()
    present = gray_levels - 1
    P = counts[np.ix_(present, present)]
    if settings.symmetrical:
        P = P + np.transpose(P, (1, 0, 2))
    if settings.weighting is not None:
        factors = weights(angles, settings.spacing_zyx, settings.weighting, "glcm")
        P = np.sum(P * factors[None, None, :], 2, keepdims=True)
    totals = P.sum((0, 1))
    if P.shape[2] > 1:
        P = P[:, :, totals != 0]
        totals = totals[totals != 0]
    P = P / np.where(totals == 0, np.nan, totals)[None, None, :]
    g = gray_levels.astype(np.float64)
    i, j = g[:, None, None], g[None, :, None]
    px = P.sum(1, keepdims=True)
    py = P.sum(0, keepdims=True)
    ux = np.sum(i * P, (0, 1), keepdims=True)
    uy = np.sum(j * P, (0, 1), keepdims=True)
    k_sum = np.arange(2, 2 * n_gray + 1, dtype=np.float64)
    k_diff = np.arange(0, n_gray, dtype=np.float64)
    plane_sum = (g[:, None] + g[None, :]).astype(np.int64)
    plane_diff = np.abs(g[:, None] - g[None, :]).astype(np.int64)
    flat = P.reshape(-1, P.shape[2])
    p_sum = np.zeros((len(k_sum), P.shape[2]))
    np.add.at(p_sum, plane_sum.ravel() - 2, flat)
    p_diff = np.zeros((len(k_diff), P.shape[2]))
    np.add.at(p_diff, plane_diff.ravel(), flat)
    hxy = -np.sum(P * np.log2(P + EPS), (0, 1))
    hx = -np.sum(px * np.log2(px + EPS), (0, 1))
    hy = -np.sum(py * np.log2(py + EPS), (0, 1))
    hxy1 = -np.sum(P * np.log2(px * py + EPS), (0, 1))
    hxy2 = -np.sum((px * py) * np.log2(px * py + EPS), (0, 1))
    shade = (i + j) - ux - uy
    sigx = np.sum(P * (i - ux) ** 2, (0, 1), keepdims=True) ** 0.5
    sigy = np.sum(P * (j - uy) ** 2, (0, 1), keepdims=True) ** 0.5
    corm = np.sum(P * (i - ux) * (j - uy), (0, 1), keepdims=True)
    corr = corm / (sigx * sigy + EPS)
    corr[sigx * sigy == 0] = 1
    div = np.fmax(hx, hy)
    imc1 = hxy - hxy1
    imc1 = np.where(div != 0, imc1 / np.where(div != 0, div, 1), 0.0)
    imc2 = (1 - np.e ** (-2 * (hxy2 - hxy))) ** 0.5
    imc2[hxy2 == hxy] = 0
    diff_avg = np.sum(k_diff[:, None] * p_diff, 0)
    features = {
        "Autocorrelation": _angle_mean(np.sum(P * (i * j), (0, 1))),
        "ClusterProminence": _angle_mean(np.sum(P * shade ** 4, (0, 1))),
        "ClusterShade": _angle_mean(np.sum(P * shade ** 3, (0, 1))),
        "ClusterTendency": _angle_mean(np.sum(P * shade ** 2, (0, 1))),
        "Contrast": _angle_mean(np.sum(P * np.abs(i - j) ** 2, (0, 1))),
        "Correlation": _angle_mean(corr),
        "DifferenceAverage": _angle_mean(diff_avg),
        "DifferenceEntropy": _angle_mean(-np.sum(p_diff * np.log2(p_diff + EPS), 0)),
        "DifferenceVariance": _angle_mean(np.sum(p_diff * (k_diff[:, None] - diff_avg[None, :]) ** 2, 0)),
        "Id": _angle_mean(np.sum(p_diff / (1 + k_diff[:, None]), 0)),
        "Idm": _angle_mean(np.sum(p_diff / (1 + k_diff[:, None] ** 2), 0)),
        "Idmn": _angle_mean(np.sum(p_diff / (1 + k_diff[:, None] ** 2 / n_gray ** 2), 0)),
        "Idn": _angle_mean(np.sum(p_diff / (1 + k_diff[:, None] / n_gray), 0)),
        "Imc1": _angle_mean(imc1),
        "Imc2": _angle_mean(imc2),
        "InverseVariance": _angle_mean(np.sum(p_diff[1:] / k_diff[1:, None] ** 2, 0)),
        "JointAverage": float(ux.mean()),
        "JointEnergy": _angle_mean(np.sum(P ** 2, (0, 1))),
        "JointEntropy": _angle_mean(hxy),
        "MCC": _mcc(P, px, py),
        "MaximumProbability": _angle_mean(np.amax(P, (0, 1))),
        "SumAverage": _angle_mean(np.sum(k_sum[:, None] * p_sum, 0)),
        "SumEntropy": _angle_mean(-np.sum(p_sum * np.log2(p_sum + EPS), 0)),
        "SumSquares": _angle_mean(np.sum(P * (i - ux) ** 2, (0, 1))),
    }
    return features


def _mcc(P: np.ndarray, px: np.ndarray, py: np.ndarray) -> float:
    """Maximal correlation coefficient: the root of the second largest eigenvalue of Q, averaged over angles."""
    if P.shape[0] < 2:
        return 1.0
    # Q_ij = sum_k P_ik P_jk / (px_i py_k + eps), per angle (PyRadiomics' expression)
    denominator = px[:, 0, None, :] * py[0, None, :, :] + EPS  # (i, k, angle)
    Q = np.einsum("ika,jka->ija", P / denominator, P)
    eigen = np.linalg.eigvals(Q.transpose((2, 0, 1)))
    eigen.sort()
    return float(np.nanmean(np.sqrt(eigen[:, -2])).real)


def _size_emphasis(P: np.ndarray, ivector: np.ndarray, jvector: np.ndarray, total: float
                   ) -> dict[str, float]:
    """Features shared by GLRLM, GLSZM and GLDM for one matrix P (gray levels x sizes), normalised by ``total``."""
    pr = P.sum(0)
    pg = P.sum(1)
    i2 = ivector[:, None] ** 2
    j2 = jvector[None, :] ** 2
    pg_n = pg / total
    pr_n = pr / total
    u_i = np.sum(pg_n * ivector)
    u_j = np.sum(pr_n * jvector)
    p_n = P / total
    return {
        "short": np.sum(pr / j2[0]) / total,
        "long": np.sum(pr * j2[0]) / total,
        "gln": np.sum(pg ** 2) / total,
        "glnn": np.sum(pg ** 2) / total ** 2,
        "sn": np.sum(pr ** 2) / total,
        "snn": np.sum(pr ** 2) / total ** 2,
        "glv": np.sum(pg_n * (ivector - u_i) ** 2),
        "sv": np.sum(pr_n * (jvector - u_j) ** 2),
        "entropy": -np.sum(p_n * np.log2(p_n + EPS)),
        "low": np.sum(pg / ivector ** 2) / total,
        "high": np.sum(pg * ivector ** 2) / total,
        "short_low": np.sum(P / (i2 * j2)) / total,
        "short_high": np.sum(P * i2 / j2) / total,
        "long_low": np.sum(P * j2 / i2) / total,
        "long_high": np.sum(P * (j2 * i2)) / total,
    }


def glrlm_features(grid: RegionGrid, gray_levels: np.ndarray) -> dict[str, float]:
    """The 16 GLRLM features: runs along 13 directions (4 in the plane under force2D), each direction's features
    averaged, or, with a ``weighting``, computed on the directions' matrices summed with PyRadiomics' weights.

    PyRadiomics drops a direction in which no line holds two region voxels (the region is flat for it).
    """
    settings = grid.settings
    counts, directions = grid.runs()
    P = counts[gray_levels - 1]
    if settings.weighting is not None:
        factors = weights(directions, settings.spacing_zyx, settings.weighting, "glrlm")
        P = np.sum(P * factors[None, None, :], 2, keepdims=True)
    n_runs = P.sum((0, 1))
    if P.shape[2] > 1:
        P = P[:, :, n_runs != 0]
        n_runs = n_runs[n_runs != 0]
    lengths_present = P.sum((0, 2)) != 0
    P = P[:, lengths_present]
    ivector = gray_levels.astype(np.float64)
    jvector = (np.nonzero(lengths_present)[0] + 1).astype(np.float64)
    per_angle = [_size_emphasis(P[:, :, a], ivector, jvector, n_runs[a]) for a in range(P.shape[2])]
    run_voxels = np.array([np.sum(P[:, :, a].sum(0) * jvector) for a in range(P.shape[2])])

    def mean(key: str) -> float:
        return _angle_mean(np.array([values[key] for values in per_angle]))

    return {
        "GrayLevelNonUniformity": mean("gln"),
        "GrayLevelNonUniformityNormalized": mean("glnn"),
        "GrayLevelVariance": mean("glv"),
        "HighGrayLevelRunEmphasis": mean("high"),
        "LongRunEmphasis": mean("long"),
        "LongRunHighGrayLevelEmphasis": mean("long_high"),
        "LongRunLowGrayLevelEmphasis": mean("long_low"),
        "LowGrayLevelRunEmphasis": mean("low"),
        "RunEntropy": mean("entropy"),
        "RunLengthNonUniformity": mean("sn"),
        "RunLengthNonUniformityNormalized": mean("snn"),
        "RunPercentage": _angle_mean(n_runs / run_voxels),
        "RunVariance": mean("sv"),
        "ShortRunEmphasis": mean("short"),
        "ShortRunHighGrayLevelEmphasis": mean("short_high"),
        "ShortRunLowGrayLevelEmphasis": mean("short_low"),
    }


def _compact(levels: np.ndarray, sizes: np.ndarray, gray_levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (gray level x size) count matrix from one (level, size) pair per item, over the sizes present."""
    size_values, size_index = np.unique(sizes, return_inverse=True)
    level_index = np.searchsorted(gray_levels, levels)
    P = np.zeros((len(gray_levels), len(size_values)))
    np.add.at(P, (level_index, size_index), 1.0)
    return P, size_values.astype(np.float64)


def glszm_features(grid: RegionGrid, gray_levels: np.ndarray) -> dict[str, float]:
    """The 16 GLSZM features: 26-connected zones of equal gray level."""
    zones = zone_sizes(grid.binned, grid.voxels, *grid.zone_neighbours())
    P, jvector = _compact(zones[:, 0], zones[:, 1], gray_levels)
    n_zones = float(len(zones))
    n_voxels = float(np.sum(P.sum(0) * jvector))
    values = _size_emphasis(P, gray_levels.astype(np.float64), jvector, n_zones)
    return {
        "GrayLevelNonUniformity": values["gln"],
        "GrayLevelNonUniformityNormalized": values["glnn"],
        "GrayLevelVariance": values["glv"],
        "HighGrayLevelZoneEmphasis": values["high"],
        "LargeAreaEmphasis": values["long"],
        "LargeAreaHighGrayLevelEmphasis": values["long_high"],
        "LargeAreaLowGrayLevelEmphasis": values["long_low"],
        "LowGrayLevelZoneEmphasis": values["low"],
        "SizeZoneNonUniformity": values["sn"],
        "SizeZoneNonUniformityNormalized": values["snn"],
        "SmallAreaEmphasis": values["short"],
        "SmallAreaHighGrayLevelEmphasis": values["short_high"],
        "SmallAreaLowGrayLevelEmphasis": values["short_low"],
        "ZoneEntropy": values["entropy"],
        "ZonePercentage": n_zones / n_voxels,
        "ZoneVariance": values["sv"],
    }


def neighbourhood_features(grid: RegionGrid, gray_levels: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """The 14 GLDM features (dependence: ``|i - j| <= gldm_alpha`` among the neighbours: 26 by default, those at
    the ``distances`` in the plane under force2D) and the 5 NGTDM features."""
    dependence, ngtdm = grid.neighbourhood()
    P = dependence[gray_levels - 1]
    present = P.sum(0) != 0
    P = P[:, present]
    jvector = (np.nonzero(present)[0] + 1).astype(np.float64)
    n_voxels = float(P.sum())
    values = _size_emphasis(P, gray_levels.astype(np.float64), jvector, n_voxels)
    gldm = {
        "DependenceEntropy": values["entropy"],
        "DependenceNonUniformity": values["sn"],
        "DependenceNonUniformityNormalized": values["snn"],
        "DependenceVariance": values["sv"],
        "GrayLevelNonUniformity": values["gln"],
        "GrayLevelVariance": values["glv"],
        "HighGrayLevelEmphasis": values["high"],
        "LargeDependenceEmphasis": values["long"],
        "LargeDependenceHighGrayLevelEmphasis": values["long_high"],
        "LargeDependenceLowGrayLevelEmphasis": values["long_low"],
        "LowGrayLevelEmphasis": values["low"],
        "SmallDependenceEmphasis": values["short"],
        "SmallDependenceHighGrayLevelEmphasis": values["short_high"],
        "SmallDependenceLowGrayLevelEmphasis": values["short_low"],
    }
    return {name: float(value) for name, value in gldm.items()}, _ngtdm_features(ngtdm, gray_levels)


def _ngtdm_features(ngtdm: np.ndarray, gray_levels: np.ndarray) -> dict[str, float]:
    counts = ngtdm[gray_levels - 1, 0]
    s = ngtdm[gray_levels - 1, 1]
    i = gray_levels.astype(np.float64)
    n_voxels = counts.sum()
    p = counts / n_voxels
    n_gray = float(len(gray_levels))
    sum_s = s.sum()
    ps = p * s
    coarse = np.sum(ps)
    coarseness = 1 / coarse if coarse != 0 else 1e6
    div = n_gray * (n_gray - 1)
    contrast = np.sum(p[:, None] * p[None, :] * (i[:, None] - i[None, :]) ** 2) * sum_s / n_voxels
    contrast = contrast / div if div != 0 else 0.0
    i_p = i * p
    absdiff = np.sum(np.abs(i_p[:, None] - i_p[None, :]))
    busyness = coarse / absdiff if absdiff != 0 else 0.0
    divisor = p[:, None] + p[None, :]
    divisor[divisor == 0] = 1
    complexity = np.sum(np.abs(i[:, None] - i[None, :]) * (ps[:, None] + ps[None, :]) / divisor) / n_voxels
    strength = np.sum((p[:, None] + p[None, :]) * (i[:, None] - i[None, :]) ** 2)
    strength = strength / sum_s if sum_s != 0 else 0.0
    return {"Busyness": float(busyness), "Coarseness": float(coarseness), "Complexity": float(complexity),
            "Contrast": float(contrast), "Strength": float(strength)}
