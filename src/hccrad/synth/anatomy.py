"""A synthetic venous-phase abdominal CT: liver with lobes, tumors, portal vein and the body around them.

Every structure is an implicit shape in patient coordinates (millimetres, LPS: x to the patient's left,
y posterior, z superior; the body's centre at the origin), evaluated on the voxel grid of the center
that acquired the patient. Smooth random fields make the shapes irregular and the tissues textured.
Masks come from the same shapes as the image, so they match it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hccrad.io.masks import LABEL_LIVER, LABEL_PORTAL_VEIN, LABEL_TUMOR, largest_component


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` and ``spacing`` in (z, y, x) order, ``origin`` in (x, y, z) mm (ITK order)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable x, y, z coordinate arrays (mm) of every voxel centre."""
        nz, ny, nx = self.shape
        sz, sy, sx = self.spacing
        x = self.origin[0] + sx * np.arange(nx, dtype=np.float32)
        y = self.origin[1] + sy * np.arange(ny, dtype=np.float32)
        z = self.origin[2] + sz * np.arange(nz, dtype=np.float32)
        return x[None, None, :], y[None, :, None], z[:, None, None]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL."""
        return float(np.prod(self.spacing)) / 1000.0


@dataclass(frozen=True)
class PatientAnatomy:
    """The latent anatomy of one synthetic patient (all lengths in mm, HU in Hounsfield units)."""

    body_semi_axes: tuple[float, float]
    fat_thickness: float
    liver_scale: float
    liver_irregularity: float
    liver_fibrosis: float  # 0 smooth healthy liver ... 1 coarse cirrhotic texture
    liver_hu: float
    tumor_center: tuple[float, float, float]
    tumor_radii: tuple[float, float, float]
    tumor_irregularity: float
    tumor_heterogeneity: float  # 0 homogeneous ... 1 strongly heterogeneous
    necrosis_fraction: float  # radius fraction of the necrotic core (0 none)
    rim_enhancement_hu: float
    margin_width_mm: float  # soft tissue transition width at the tumor border
    tumor_hu: float
    satellites: tuple[tuple[float, float, float, float], ...]  # (x, y, z, radius)
    portal_radius: float
    hilum: tuple[float, float, float]
    seed: int


def smooth_field(shape: tuple[int, ...], spacing: tuple[float, ...], length_mm: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field with unit standard deviation and correlation length ``length_mm``."""
    sigma = [max(length_mm / s, 0.3) for s in spacing]
    # Low-pass filtering on a coarser grid keeps big correlation lengths cheap.
    factor = max(1, int(min(sigma) // 2))
    coarse_shape = tuple(max(2, -(-n // factor)) for n in shape)
    noise = rng.standard_normal(coarse_shape).astype(np.float32)
    field = ndimage.gaussian_filter(noise, [s / factor for s in sigma], mode="wrap")
    if factor > 1:
        zoom = [n / c for n, c in zip(shape, coarse_shape, strict=True)]
        field = ndimage.zoom(field, zoom, order=1)[tuple(slice(0, n) for n in shape)]
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _ellipsoid(x, y, z, center, radii) -> np.ndarray:
    """Normalised ellipsoid distance: < 1 inside."""
    return np.sqrt(((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
                   + ((z - center[2]) / radii[2]) ** 2)


def _segment_distance(x, y, z, start, end) -> np.ndarray:
    """Distance (mm) of every voxel to the segment start-end."""
    start, end = np.asarray(start, np.float32), np.asarray(end, np.float32)
    direction = end - start
    length2 = float(direction @ direction)
    t = ((x - start[0]) * direction[0] + (y - start[1]) * direction[1] + (z - start[2]) * direction[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((x - start[0] - t * direction[0]) ** 2 + (y - start[1] - t * direction[1]) ** 2
                   + (z - start[2] - t * direction[2]) ** 2)


def liver_implicit(x, y, z, anatomy: PatientAnatomy, deform: np.ndarray) -> np.ndarray:
    """Liver shape value (< 1 inside): right lobe, left lobe and caudate, smoothly united and deformed."""
    s = anatomy.liver_scale
    right = _ellipsoid(x, y, z, (-62 * s, 8 * s, 0), (70 * s, 82 * s, 78 * s))
    left = _ellipsoid(x, y, z, (18 * s, -38 * s, 22 * s), (62 * s, 34 * s, 42 * s))
    caudate = _ellipsoid(x, y, z, (-8 * s, 30 * s, 12 * s), (22 * s, 20 * s, 30 * s))
    # Smooth minimum (soft union) so that the lobes meet without a crease.
    k = 8.0
    united = -np.log(np.exp(-k * right) + np.exp(-k * left) + np.exp(-k * caudate)) / k
    # The dome is flattened under the diaphragm and the inferior tip tapers.
    dome = np.clip((z - 55 * s) / (30 * s), 0, None) ** 2
    return united + dome + anatomy.liver_irregularity * deform


def tumor_implicit(x, y, z, anatomy: PatientAnatomy, deform: np.ndarray) -> np.ndarray:
    """Tumor shape value (< 1 inside), an ellipsoid with a lobulated border."""
    base = _ellipsoid(x, y, z, anatomy.tumor_center, anatomy.tumor_radii)
    return base + anatomy.tumor_irregularity * deform * np.clip(base, 0, 1.5)


def portal_vein_distance(x, y, z, anatomy: PatientAnatomy) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the portal trunk and to its intrahepatic branches (mm)."""
    s = anatomy.liver_scale
    hx, hy, hz = anatomy.hilum
    trunk_start = (hx + 28 * s, hy + 12 * s, hz - 70 * s)
    trunk = _segment_distance(x, y, z, trunk_start, anatomy.hilum)
    right_branch = _segment_distance(x, y, z, anatomy.hilum, (hx - 55 * s, hy + 2 * s, hz + 12 * s))
    right_post = _segment_distance(x, y, z, (hx - 45 * s, hy + 2 * s, hz + 10 * s),
                                   (hx - 75 * s, hy + 25 * s, hz + 25 * s))
    left_branch = _segment_distance(x, y, z, anatomy.hilum, (hx + 40 * s, hy - 35 * s, hz + 20 * s))
    branches = np.minimum(np.minimum(right_branch, left_branch), right_post)
    return trunk, branches


def body_hu(x, y, z, anatomy: PatientAnatomy, rng: np.random.Generator, shape, spacing) -> np.ndarray:
    """HU of everything but the liver: air, fat, muscle, abdominal organs, spine, aorta, lungs."""
    a, b = anatomy.body_semi_axes
    radial = np.sqrt((x / a) ** 2 + ((y - 5) / b) ** 2) + 0.0 * z
    hu = np.full(np.broadcast_shapes(radial.shape, shape), -1000.0, dtype=np.float32)
    inside_body = radial < 1.0
    fat_inner = 1.0 - anatomy.fat_thickness / min(a, b)
    muscle_inner = fat_inner - 12.0 / min(a, b)
    hu[inside_body] = -100.0
    muscle = (radial < fat_inner) & (radial >= muscle_inner)
    hu[np.broadcast_to(muscle, hu.shape)] = 52.0
    cavity = np.broadcast_to(radial < muscle_inner, hu.shape)
    mesentery = smooth_field(shape, spacing, 6.0, rng)
    # Abdominal cavity: mixture of visceral fat and bowel wall / fluid.
    hu[cavity] = np.where(mesentery[cavity] > 0.2, 35.0, -85.0)
    organ_specs = [
        ((95, 30, 25), (42, 30, 55), 118.0),  # spleen
        ((70, 62, -48), (28, 24, 52), 165.0),  # left kidney
        ((-70, 62, -58), (28, 24, 50), 165.0),  # right kidney
        ((40, -30, 35), (45, 35, 38), 30.0),  # stomach
    ]
    for center, radii, value in organ_specs:
        organ = _ellipsoid(x, y, z, center, radii) < 1.0
        hu[organ & cavity] = value
    gas = _ellipsoid(x, y, z, (40, -48, 50), (28, 14, 14)) < 1.0
    hu[gas & cavity] = -900.0
    lungs = (np.minimum(_ellipsoid(x, y, z, (-75, 20, 150), (70, 80, 85)),
                        _ellipsoid(x, y, z, (75, 20, 140), (65, 80, 80))) < 1.0)
    hu[lungs & cavity] = -860.0
    vertebra_radial = np.sqrt((x / 22.0) ** 2 + ((y - 72.0) / 20.0) ** 2) + 0.0 * z
    hu[np.broadcast_to(vertebra_radial < 1.0, hu.shape)] = 650.0
    hu[np.broadcast_to(vertebra_radial < 0.8, hu.shape)] = 230.0
    canal = np.sqrt((x / 9.0) ** 2 + ((y - 102.0) / 8.0) ** 2) + 0.0 * z < 1.0
    hu[np.broadcast_to(canal, hu.shape)] = 25.0
    aorta = np.sqrt((x - 20.0) ** 2 + (y - 45.0) ** 2) + 0.0 * z < 12.0
    hu[np.broadcast_to(aorta, hu.shape)] = 155.0
    ivc = np.sqrt((x + 22.0) ** 2 + (y - 42.0) ** 2) + 0.0 * z < 11.0
    hu[np.broadcast_to(ivc, hu.shape)] = 135.0
    return hu


@dataclass
class RenderedCase:
    """The noiseless HU image (before the scanner model) and the label mask, both (z, y, x)."""

    hu: np.ndarray
    labels: np.ndarray
    grid: Grid


def render_case(anatomy: PatientAnatomy, grid: Grid) -> RenderedCase:
    """Evaluate the patient's anatomy on a center's grid: true HU and labels 0/1/2/3."""
    rng = np.random.default_rng(anatomy.seed)
    x, y, z = grid.coordinates()
    shape, spacing = grid.shape, grid.spacing
    hu = body_hu(x, y, z, anatomy, rng, shape, spacing)

    liver_deform = smooth_field(shape, spacing, 25.0, rng)
    liver_value = liver_implicit(x, y, z, anatomy, liver_deform)
    # Cirrhosis gives a nodular surface: a finer deformation scaled by fibrosis.
    nodular = smooth_field(shape, spacing, 6.0, rng)
    liver_value = liver_value + 0.03 * anatomy.liver_fibrosis * nodular
    liver = liver_value < 1.0

    tumor_deform = smooth_field(shape, spacing, 8.0, rng)
    tumor_value = tumor_implicit(x, y, z, anatomy, tumor_deform)
    tumor = largest_component(tumor_value < 1.0)
    satellites = np.zeros(shape, dtype=bool)
    for sx, sy, sz, radius in anatomy.satellites:
        satellites |= _ellipsoid(x, y, z, (sx, sy, sz), (radius, radius * 0.9, radius * 1.1)) < 1.0
    satellites &= liver & ~tumor

    trunk_distance, branch_distance = portal_vein_distance(x, y, z, anatomy)
    radius = anatomy.portal_radius
    portal = (trunk_distance < radius) | ((branch_distance < 0.62 * radius) & liver)

    # Liver parenchyma: enhancement plus fibrotic texture (coarse and fine components).
    fibro_coarse = smooth_field(shape, spacing, 5.0, rng)
    fibro_fine = smooth_field(shape, spacing, 2.0, rng)
    liver_texture = anatomy.liver_hu + (3.0 + 14.0 * anatomy.liver_fibrosis) * (
        0.7 * fibro_coarse + 0.3 * fibro_fine)
    hu = np.where(liver, liver_texture, hu)

    # Tumor: heterogeneous enhancement, necrotic core, enhancing rim, soft or sharp margin.
    hetero_field = smooth_field(shape, spacing, 2.5 + 3.0 * anatomy.tumor_heterogeneity, rng)
    tumor_texture = anatomy.tumor_hu + (5.0 + 30.0 * anatomy.tumor_heterogeneity) * hetero_field
    base_radius = _ellipsoid(x, y, z, anatomy.tumor_center, anatomy.tumor_radii)
    if anatomy.necrosis_fraction > 0:
        core_noise = smooth_field(shape, spacing, 6.0, rng)
        core = base_radius + 0.12 * core_noise < anatomy.necrosis_fraction
        tumor_texture = np.where(core, 22.0 + 8.0 * hetero_field, tumor_texture)
    rim = np.clip(1.0 - np.abs(tumor_value - 0.93) / 0.07, 0.0, 1.0)
    tumor_texture = tumor_texture + anatomy.rim_enhancement_hu * rim
    mean_radius = float(np.mean(anatomy.tumor_radii))
    signed_mm = (tumor_value - 1.0) * mean_radius
    weight = 1.0 / (1.0 + np.exp(np.clip(signed_mm / max(anatomy.margin_width_mm / 4.0, 0.1), -30, 30)))
    hu = np.where(liver | tumor, weight * tumor_texture + (1 - weight) * hu, hu)
    hu = np.where(satellites, anatomy.tumor_hu + 10.0 * hetero_field, hu)
    hu = np.where(portal, 172.0, hu)

    labels = np.zeros(shape, dtype=np.uint8)
    labels[liver] = LABEL_LIVER
    labels[portal] = LABEL_PORTAL_VEIN
    labels[tumor | satellites] = LABEL_TUMOR
    return RenderedCase(hu=hu.astype(np.float32), labels=labels, grid=grid)


def acquire(rendered: RenderedCase, in_plane_psf_mm: float, noise_sd: float, slice_thickness_mm: float,
            seed: int) -> np.ndarray:
    """Scanner model: slice profile and kernel blur, correlated quantum noise, int16 HU with clipping."""
    rng = np.random.default_rng(seed)
    sz, sy, sx = rendered.grid.spacing
    sigma = (slice_thickness_mm / 2.355 / sz * 0.8, in_plane_psf_mm / 2.355 / sy, in_plane_psf_mm / 2.355 / sx)
    image = ndimage.gaussian_filter(rendered.hu, sigma)
    noise = ndimage.gaussian_filter(rng.standard_normal(image.shape).astype(np.float32), (0.0, 0.7, 0.7))
    noise *= noise_sd / max(float(noise.std()), 1e-6)
    image = image + noise
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16)
