"""Image and mask perturbations for feature robustness (Zwanenburg et al., Sci Rep 2019; as MIRP offers them).

Each perturbation of a case is one draw of every enabled kind, applied in this order:

1. **rotation and translation** (one rigid transform): a rotation about the z axis through the liver's centroid
   by an angle drawn uniformly in ``[-rotation_deg, rotation_deg]``, and a shift drawn uniformly in
   ``[-translation_voxels, translation_voxels]`` voxels along each axis; the CT is resampled with a cubic
   B-spline, the labels with nearest neighbour, on the CT's own grid, so the mask stays on the image.
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


def rigid(image: sitk.Image, labels: np.ndarray, angle_deg: float, shift_voxels: tuple[float, float, float],
          centre_zyx: np.ndarray) -> tuple[sitk.Image, np.ndarray]:
    """The CT (cubic B-spline, outside filled with its minimum) and labels (nearest neighbour) after a rotation
    about the z axis through ``centre_zyx`` (index) and a shift (voxels, z y x), on the CT's own grid."""
    if angle_deg == 0.0 and not any(shift_voxels):
        return image, labels
    spacing = np.array(image.GetSpacing())
    transform = sitk.Euler3DTransform()
    transform.SetCenter(image.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre_zyx[::-1]]))
    transform.SetRotation(0.0, 0.0, float(np.deg2rad(angle_deg)))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    transform.SetTranslation(tuple(float(v) for v in direction @ (np.array(shift_voxels[::-1]) * spacing)))
    minimum = float(sitk.GetArrayViewFromImage(image).min())
    moved = sitk.Resample(image, image, transform, sitk.sitkBSpline, minimum, sitk.sitkFloat32)
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    moved_labels = sitk.Resample(mask, image, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return moved, sitk.GetArrayFromImage(moved_labels)


def adapt_volume(region: np.ndarray, fraction: float, spacing_zyx: tuple[float, float, float],
                 within: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The region grown (``fraction`` > 0) or shrunk (< 0) to ``round(n (1 + fraction))`` voxels: the voxels
    nearest to it (grow, only where ``within``) or nearest to its outside (shrink) change first; ties at random.
    The result has exactly the target count unless ``within`` leaves too few voxels to grow into."""
    count = int(np.count_nonzero(region))
    target = max(1, int(round(count * (1.0 + fraction))))
    if target == count or count == 0:
        return region.copy()
    jitter = 1e-6 * min(spacing_zyx)
    result = region.copy()
    if target > count:
        distance = ndimage.distance_transform_edt(~region, sampling=spacing_zyx)
        candidates = ~region if within is None else (~region & within)
        index = np.flatnonzero(candidates)
        if index.size == 0:
            return result
        keys = distance.ravel()[index] + jitter * rng.random(index.size)
        take = min(target - count, index.size)
        result.ravel()[index[np.argpartition(keys, take - 1)[:take]]] = True
    else:
        distance = ndimage.distance_transform_edt(region, sampling=spacing_zyx)
        index = np.flatnonzero(region)
        keys = distance.ravel()[index] + jitter * rng.random(index.size)
        drop = count - target
        result.ravel()[index[np.argpartition(keys, drop - 1)[:drop]]] = False
    return result


def randomise_contour(region: np.ndarray, amplitude_mm: float, spacing_zyx: tuple[float, float, float],
                      within: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The region whose boundary is moved by ``amplitude_mm`` x a smooth unit Gaussian random field: inside where
    the signed distance (mm, negative inside) plus the field is negative, and (for the tumor) within ``within``."""
    if amplitude_mm == 0.0 or not region.any():
        return region.copy()
    box = bounding_box(region)
    margin = [int(np.ceil(4 * amplitude_mm / s)) + 2 for s in spacing_zyx]
    grown = tuple(slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, region.shape,
                                                                                      strict=True))
    local = region[grown]
    signed = (ndimage.distance_transform_edt(~local, sampling=spacing_zyx)
              - ndimage.distance_transform_edt(local, sampling=spacing_zyx))
    field = ndimage.gaussian_filter(rng.standard_normal(local.shape), sigma=2.0)
    field /= max(float(field.std()), 1e-12)
    result = region.copy()
    result[grown] = signed + amplitude_mm * field < 0
    if within is not None:
        result &= within
    if not result.any():
        return region.copy()
    return result


def perturb(image: sitk.Image, labels: np.ndarray, plan: PerturbationDraw, noise_sd_hu: float
            ) -> tuple[sitk.Image, np.ndarray]:
    """The perturbed CT (float32) and labels (uint8: 1 liver, 2 tumor, 3 portal vein) for one ``plan``."""
    rng = np.random.default_rng(plan.seed)
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    whole_liver = np.isin(labels, (LABEL_LIVER, LABEL_TUMOR, LABEL_PORTAL_VEIN))
    centre = np.argwhere(whole_liver).mean(axis=0) if whole_liver.any() else np.array(labels.shape) / 2.0
    image, labels = rigid(image, labels, plan.angle_deg, plan.shift_voxels, centre)
    tumor = labels == LABEL_TUMOR
    liver = np.isin(labels, (LABEL_LIVER, LABEL_TUMOR, LABEL_PORTAL_VEIN))
    portal = labels == LABEL_PORTAL_VEIN
    if plan.tumor_fraction or plan.liver_fraction:
        tumor = adapt_volume(tumor, plan.tumor_fraction, spacing, liver, rng)
        liver = adapt_volume(liver, plan.liver_fraction, spacing, None, rng) | tumor
    if plan.contour_mm:
        liver = randomise_contour(liver, plan.contour_mm, spacing, None, rng) | tumor
        tumor = randomise_contour(tumor, plan.contour_mm, spacing, liver, rng)
    out = np.zeros(labels.shape, dtype=np.uint8)
    out[liver] = LABEL_LIVER
    out[liver & portal] = LABEL_PORTAL_VEIN
    out[tumor] = LABEL_TUMOR
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    if plan.noise and noise_sd_hu > 0:
        values += rng.normal(0.0, noise_sd_hu, size=values.shape).astype(np.float32)
    perturbed = sitk.GetImageFromArray(values)
    perturbed.CopyInformation(image)
    return perturbed, out
