"""Image and mask perturbations for feature robustness (Zwanenburg et al., Sci Rep 2019; as MIRP offers them).

Each perturbation of a case is one draw of every enabled kind, applied in this order:

1. **rotation and translation** (one rigid transform): a rotation about the z axis through the liver's centroid
   by an angle drawn uniformly in ``[-rotation_deg, rotation_deg]``, and a shift drawn uniformly in
   ``[-translation_voxels, translation_voxels]`` voxels along each axis; the CT is resampled with a cubic
   B-spline, the labels with nearest neighbour, on the CT's own grid, so the mask stays on the image. All four
   kinds work in a box around the whole liver (:func:`perturb`), which holds every region and every crop the
   features read; the voxels outside it keep their values.
2. **volume adaptation**: the tumor grown or shrunk by a fraction drawn uniformly in ``[-volume_fraction,
   volume_fraction]``, within the liver; then the whole liver (liver, tumor, portal vein) likewise, within the image.
   Growing adds the voxels nearest to the region (Euclidean distance in mm), shrinking removes those nearest to
   its outside, until the volume is the target to the voxel (ties broken at random).
3. **contour randomisation**: each region's boundary moved by a smooth random displacement: the signed distance to
   the boundary (mm, negative inside) plus ``contour_mm`` times a Gaussian random field (white noise smoothed with
   a Gaussian of 2 voxels, scaled to unit SD) decides which voxels are inside; the tumor again within the liver.
4. **noise addition**: Gaussian noise of the image's own noise level added to every voxel. The noise level is
   estimated in the liver parenchyma from the differences of in-plane neighbours (x direction):
   ``1.4826 MAD(d) / sqrt(2)``, robust to the few differences across vessels or edges.

The draws come from a generator seeded by the study's seed, the patient id and the perturbation's number, so a
perturbation is the same whichever worker computes it and whenever.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hccrad.io.masks import LABEL_LIVER, LABEL_PORTAL_VEIN, LABEL_TUMOR, bounding_box

KINDS = ("rotation", "translation", "volume", "contour", "noise")


@dataclass(frozen=True)
class PerturbationDraw:
    """One perturbation's random draws (zero means the kind is off)."""
    angle_deg: float = 0.0
    shift_voxels: tuple[float, float, float] = (0.0, 0.0, 0.0)  # z, y, x
    tumor_fraction: float = 0.0
    liver_fraction: float = 0.0
    contour_mm: float = 0.0
    noise: bool = False
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"angle_deg": self.angle_deg, "shift_voxels": list(self.shift_voxels),
                "tumor_fraction": self.tumor_fraction, "liver_fraction": self.liver_fraction,
                "contour_mm": self.contour_mm, "noise": self.noise, "seed": self.seed}


def perturbation_seed(seed: int, patient_id: str, number: int) -> int:
    """A seed for one perturbation of one patient: the same on any machine and in any order."""
    digest = hashlib.sha256(f"{seed}|{patient_id}|{number}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def draw(kinds: tuple[str, ...], seed: int, rotation_deg: float, translation_voxels: float,
         volume_fraction: float, contour_mm: float) -> PerturbationDraw:
    """The random parameters of one perturbation with the enabled ``kinds``."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1.0, 1.0, size=6)  # drawn whatever the kinds, so enabling one does not move the others
    return PerturbationDraw(
        angle_deg=float(values[0] * rotation_deg) if "rotation" in kinds else 0.0,
        shift_voxels=tuple(float(v * translation_voxels) for v in values[1:4]) if "translation" in kinds
        else (0.0, 0.0, 0.0),
        tumor_fraction=float(values[4] * volume_fraction) if "volume" in kinds else 0.0,
        liver_fraction=float(values[5] * volume_fraction) if "volume" in kinds else 0.0,
        contour_mm=float(contour_mm) if "contour" in kinds else 0.0,
        noise="noise" in kinds, seed=int(seed))


def noise_level_hu(hu: np.ndarray, region: np.ndarray) -> float:
    """The CT's noise SD (HU) in ``region``: 1.4826 x the median absolute deviation of the differences between
    x-neighbours that are both in the region, over sqrt(2) (the difference of two voxels has twice the variance)."""
    both = region[:, :, 1:] & region[:, :, :-1]
    differences = (hu[:, :, 1:].astype(np.float64) - hu[:, :, :-1])[both]
    if differences.size < 10:
        return 0.0
    return float(1.4826 * np.median(np.abs(differences - np.median(differences))) / np.sqrt(2.0))


def _cubic_weights(t: float) -> tuple[float, float, float, float]:
    """The cubic B-spline's weights of the coefficients at offsets -1, 0, 1, 2 for a position ``t`` in [0, 1)."""
    return ((1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6)


def _planes_at(coefficients: np.ndarray, shift: float, depth: int) -> np.ndarray:
    """The 2D B-spline coefficient planes at ``z + shift`` for z in ``0..depth-1``, from 3D B-spline
    ``coefficients`` (z y x): the four weights along z (the tensor-product spline summed over z first)."""
    whole = int(np.floor(shift))
    last = coefficients.shape[0] - 1
    index = np.arange(depth) + whole
    out = np.zeros((depth, *coefficients.shape[1:]), dtype=np.float32)
    for offset, weight in zip((-1, 0, 1, 2), _cubic_weights(shift - whole), strict=True):
        if weight:
            out += np.float32(weight) * coefficients[np.clip(index + offset, 0, last)]
    return out


@numba.njit(cache=True, nogil=True)
def _spline_in_slices(planes, base_y, base_x, weights_y, weights_x, outside, out):  # pragma: no cover - compiled
    """``out[z, i, j]`` = the 2D cubic B-spline with coefficient planes ``planes[z]`` (z y x) at the same in-plane
    position in every slice: taps at ``base - 1 .. base + 2`` with ``weights_y[a, i, j] * weights_x[b, i, j]``;
    a coefficient outside the planes is ``outside``."""
    depth, ny, nx = planes.shape
    height, width = base_y.shape
    for z in range(depth):
        for i in range(height):
            for j in range(width):
                first_y, first_x = base_y[i, j] - 1, base_x[i, j] - 1
                interior = first_y >= 0 and first_y + 3 < ny and first_x >= 0 and first_x + 3 < nx
                total = 0.0
                for a in range(4):
                    row = first_y + a
                    partial = 0.0
                    for b in range(4):
                        column = first_x + b
                        if interior or (0 <= row < ny and 0 <= column < nx):
                            partial += weights_x[b, i, j] * planes[z, row, column]
                        else:
                            partial += weights_x[b, i, j] * outside
                    total += weights_y[a, i, j] * partial
                out[z, i, j] = total


def _tap_weights(position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The base index (floor) and the four cubic B-spline weights, shape (4, *position.shape), of positions."""
    base = np.floor(position)
    t = position - base
    return base.astype(np.int64), np.stack(_cubic_weights(t))


def warm_kernels() -> None:
    """Compile (or load from numba's on-disk cache) the rigid transform's kernel in this process."""
    out = np.zeros((1, 2, 2), dtype=np.float32)
    base, weights = _tap_weights(np.full((2, 2), 0.5))
    _spline_in_slices(np.zeros((1, 4, 4), dtype=np.float32), base, base, weights, weights, 0.0, out)


def rigid(image: sitk.Image, labels: np.ndarray, angle_deg: float, shift_voxels: tuple[float, float, float],
          centre_zyx: np.ndarray, box: tuple[slice, slice, slice], source: tuple[slice, slice, slice] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """The CT (cubic B-spline, float32) and labels (nearest neighbour) inside ``box`` (index slices z y x) after a
    rotation in the slice plane about ``centre_zyx`` (index; the angle in mm, so a non-square pixel stays right) and
    a shift (voxels, z y x): the box's voxel ``o`` reads the CT at ``c + S^-1 R S (o_yx - c_yx) + shift``.

    The transform is separable, a shift along z and an affine map in each slice, so the 3D tensor-product cubic
    B-spline interpolation is exactly the 3D coefficients summed along z with the four weights of the z position,
    then a 2D spline in each slice on those coefficient planes: 16 + 4 coefficients per voxel instead of 64. The
    voxels are read from ``source`` (index slices holding every voxel the moved box reads plus the spline's
    support; default the whole image); outside the image the CT's minimum is read.
    """
    sub = image[box[2], box[1], box[0]]
    if angle_deg == 0.0 and not any(shift_voxels):
        return sitk.GetArrayFromImage(sub).astype(np.float32), np.ascontiguousarray(labels[box])
    source = source or tuple(slice(0, n) for n in labels.shape)
    values = sitk.GetArrayViewFromImage(image)
    minimum = float(values.min())
    region = values[source]
    spacing_y, spacing_x = (float(s) for s in image.GetSpacing()[1::-1])
    # source z index of each box slice, relative to the source's first slice
    z_shift = box[0].start - source[0].start + float(shift_voxels[0])
    depth = box[0].stop - box[0].start
    angle = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    scale = np.diag([spacing_y, spacing_x])
    matrix = np.linalg.inv(scale) @ rotation @ scale
    centre = np.asarray(centre_zyx[1:], dtype=float) - [source[1].start, source[2].start]
    origin = np.array([box[1].start - source[1].start, box[2].start - source[2].start], dtype=float)
    # in-slice: source = matrix @ (box_index + origin - centre) + centre + shift
    offset = matrix @ (origin - centre) + centre + np.asarray(shift_voxels[1:], dtype=float)
    shape = (box[1].stop - box[1].start, box[2].stop - box[2].start)
    # the 3D B-spline coefficients once (mirror at the source's edges, which lie beyond what the box reads)
    coefficients = region.astype(np.float32)
    for axis in range(3):
        ndimage.spline_filter1d(coefficients, order=3, axis=axis, mode="mirror", output=coefficients)
    planes = _planes_at(coefficients, z_shift, depth)
    del coefficients
    # every slice reads the same in-plane positions: their taps and weights once, for the CT and the labels
    rows, columns = np.indices(shape, dtype=np.float64)
    position_y = matrix[0, 0] * rows + matrix[0, 1] * columns + offset[0]
    position_x = matrix[1, 0] * rows + matrix[1, 1] * columns + offset[1]
    base_y, weights_y = _tap_weights(position_y)
    base_x, weights_x = _tap_weights(position_x)
    moved = np.empty((depth, *shape), dtype=np.float32)
    _spline_in_slices(planes, base_y, base_x, weights_y, weights_x, minimum, moved)
    nearest_z = np.clip(np.arange(depth) + int(np.floor(z_shift + 0.5)), 0, labels[source].shape[0] - 1)  # half up
    label_planes = labels[source][nearest_z]
    read_y = np.floor(position_y + 0.5).astype(np.int64)  # nearest neighbour, half up as ITK
    read_x = np.floor(position_x + 0.5).astype(np.int64)
    inside = (read_y >= 0) & (read_y < label_planes.shape[1]) & (read_x >= 0) & (read_x < label_planes.shape[2])
    moved_labels = label_planes[:, np.where(inside, read_y, 0), np.where(inside, read_x, 0)]
    moved_labels[:, ~inside] = 0
    return moved, np.ascontiguousarray(moved_labels, dtype=np.uint8)


def _grown(box: tuple[slice, ...], margin, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` grown by ``margin`` voxels (one number, or one per axis), clipped to ``shape``."""
    margins = np.broadcast_to(np.asarray(margin, dtype=int), (len(box),))
    return tuple(slice(max(0, b.start - int(m)), min(n, b.stop + int(m)))
                 for b, m, n in zip(box, margins, shape, strict=True))


def adapt_volume(region: np.ndarray, fraction: float, spacing_zyx: tuple[float, float, float],
                 within: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The region grown (``fraction`` > 0) or shrunk (< 0) to ``round(n (1 + fraction))`` voxels: the voxels
    nearest to it (grow, only where ``within``) or nearest to its outside (shrink) change first; ties at random.
    The result has exactly the target count unless ``within`` leaves too few voxels to grow into.

    The distances are computed on the region's box, grown as far as the growth needs: a growth is accepted only
    when its farthest voxel is nearer than the box's edge, else the box grows and the choice is made again."""
    count = int(np.count_nonzero(region))
    target = max(1, int(round(count * (1.0 + fraction))))
    if target == count or count == 0:
        return region.copy()
    jitter = 1e-6 * min(spacing_zyx)
    result = region.copy()
    box = bounding_box(region)
    if target < count:
        local_box = _grown(box, 1, region.shape)
        local = region[local_box]
        distance = ndimage.distance_transform_edt(local, sampling=spacing_zyx)
        index = np.flatnonzero(local)
        keys = distance.ravel()[index] + jitter * rng.random(index.size)
        drop = count - target
        kept = local.copy()
        kept.ravel()[index[np.argpartition(keys, drop - 1)[:drop]]] = False
        result[local_box] = kept
        return result
    extent = max(b.stop - b.start for b in box)
    margin = max(3, int(np.ceil(extent * ((1.0 + fraction) ** (1.0 / 3.0) - 1.0))) + 2)
    while True:
        local_box = _grown(box, margin, region.shape)
        local = region[local_box]
        candidates = ~local if within is None else (~local & within[local_box])
        index = np.flatnonzero(candidates)
        whole = all(b.start == 0 and b.stop == n for b, n in zip(local_box, region.shape, strict=True))
        if index.size == 0:
            return result
        distance = ndimage.distance_transform_edt(~local, sampling=spacing_zyx)
        keys = distance.ravel()[index] + jitter * rng.random(index.size)
        take = min(target - count, index.size)
        chosen = index[np.argpartition(keys, take - 1)[:take]]
        reach = float(distance.ravel()[chosen].max())
        if whole or (take == target - count and reach < (margin - 1) * min(spacing_zyx)):
            grown = local.copy()
            grown.ravel()[chosen] = True
            result[local_box] = grown
            return result
        margin *= 2


def randomise_contour(region: np.ndarray, amplitude_mm: float, spacing_zyx: tuple[float, float, float],
                      within: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The region whose boundary is moved by ``amplitude_mm`` x a smooth unit Gaussian random field: inside where
    the signed distance (mm, negative inside) plus the field is negative, and (for the tumor) within ``within``."""
    if amplitude_mm == 0.0 or not region.any():
        return region.copy()
    box = bounding_box(region)
    grown = _grown(box, [int(np.ceil(4 * amplitude_mm / s)) + 2 for s in spacing_zyx], region.shape)
    local = region[grown]
    # signed distance (mm) to the surface between the region's border voxels and their outside neighbours: from one
    # EDT to the border voxels, half the finest spacing subtracted, so that a zero field leaves the region as it is
    border = local & ~ndimage.binary_erosion(local)
    distance = ndimage.distance_transform_edt(~border, sampling=spacing_zyx).astype(np.float32)
    half = 0.5 * min(spacing_zyx)
    signed = np.where(local, -(distance + half), distance - half)
    field = ndimage.gaussian_filter(rng.standard_normal(local.shape, dtype=np.float32), sigma=2.0)
    field /= max(float(field.std()), 1e-12)
    result = region.copy()
    result[grown] = signed + amplitude_mm * field < 0
    if within is not None:
        result &= within
    if not result.any():
        return region.copy()
    return result


#: Default margin (mm) of the box around the whole liver that the perturbations work in, beyond what the rotation
#: and the shift move: more than the features' crop around a region (26 voxels at 0.647 mm, 17 mm, in the paper's
#: settings) and the reach of the B-spline's prefilter.
BOX_MARGIN_MM = 40.0


def perturb(image: sitk.Image, labels: np.ndarray, plan: PerturbationDraw, noise_sd_hu: float,
            margin_mm: float = BOX_MARGIN_MM) -> tuple[sitk.Image, np.ndarray]:
    """The perturbed CT (float32) and labels (uint8: 1 liver, 2 tumor, 3 portal vein) for one ``plan``.

    Everything happens in a box around the whole liver: its bounding box grown by ``margin_mm`` plus the farthest
    the rotation and the shift can move a liver voxel. Every region and every crop the features read must lie
    inside it (``compute_perturbed`` sets the margin from the crop's pad); the voxels outside keep their values, so
    the CT still holds its air (the CT checks need it).
    """
    rng = np.random.default_rng(plan.seed)
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    whole_liver = np.isin(labels, (LABEL_LIVER, LABEL_TUMOR, LABEL_PORTAL_VEIN))
    if not whole_liver.any():
        raise ValueError("the mask holds no liver to perturb")
    centre = np.argwhere(whole_liver).mean(axis=0)
    liver_box = bounding_box(whole_liver)
    corners = np.array([[b.start, b.stop] for b in liver_box], dtype=float)
    reach_mm = float(np.max(np.hypot((corners[1] - centre[1]) * spacing[1], (corners[2] - centre[2]) * spacing[2])))
    moved_mm = reach_mm * abs(np.sin(np.deg2rad(plan.angle_deg))) + max(abs(v) for v in plan.shift_voxels) * max(
        spacing)
    box = _grown(liver_box, [int(np.ceil((margin_mm + moved_mm) / s)) for s in spacing], labels.shape)
    # the moved box reads voxels at most moved_mm from it, and the cubic B-spline 2 voxels around those
    source = _grown(box, [int(np.ceil(moved_mm / s)) + 4 for s in spacing], labels.shape)
    values, local = rigid(image, labels, plan.angle_deg, plan.shift_voxels, centre, box, source)
    tumor = local == LABEL_TUMOR
    liver = np.isin(local, (LABEL_LIVER, LABEL_TUMOR, LABEL_PORTAL_VEIN))
    portal = local == LABEL_PORTAL_VEIN
    if plan.tumor_fraction or plan.liver_fraction:
        tumor = adapt_volume(tumor, plan.tumor_fraction, spacing, liver, rng)
        liver = adapt_volume(liver, plan.liver_fraction, spacing, None, rng) | tumor
    if plan.contour_mm:
        liver = randomise_contour(liver, plan.contour_mm, spacing, None, rng) | tumor
        tumor = randomise_contour(tumor, plan.contour_mm, spacing, liver, rng)
    if plan.noise and noise_sd_hu > 0:
        values += np.float32(noise_sd_hu) * rng.standard_normal(values.shape, dtype=np.float32)
    out = np.zeros(labels.shape, dtype=np.uint8)
    out_local = np.zeros(local.shape, dtype=np.uint8)
    out_local[liver] = LABEL_LIVER
    out_local[liver & portal] = LABEL_PORTAL_VEIN
    out_local[tumor] = LABEL_TUMOR
    out[box] = out_local
    full = sitk.GetArrayFromImage(image).astype(np.float32)
    full[box] = values
    perturbed = sitk.GetImageFromArray(full)
    perturbed.CopyInformation(image)
    return perturbed, out
