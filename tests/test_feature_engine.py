"""hccrad's feature engine against PyRadiomics run in the same test, feature by feature.

Equality means: the same feature names in the same order, and every value within a relative 1e-6 of
PyRadiomics' (absolute 1e-9 near zero; both NaN counts as equal). On failure the worst feature is named.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hccrad.features.config import FeatureConfig
from hccrad.features.engine import UnsupportedSetting, prepare_regions, prepared_features, region_features
from hccrad.features.engine.kernels import has_two_on_a_line
from hccrad.features.engine.shape import maximum_diameters, mesh_area_volume
from hccrad.features.extract import radiomics_extractor, radiomics_features
from tests.conftest import shared_path

PAPER = FeatureConfig(params="paper").radiomics_params()
NATIVE = FeatureConfig(params="demo").radiomics_params()
RELATIVE, ABSOLUTE = 1e-6, 1e-9


def pyradiomics(image: sitk.Image, region: np.ndarray, params: dict, pad: int) -> dict[str, float]:
    return {key[2:]: value for key, value in
            radiomics_features(radiomics_extractor(params, pad), image, region, "R").items()}


def assert_same_features(ours: dict[str, float], reference: dict[str, float]) -> None:
    assert list(ours) == list(reference), (
        f"names differ: only ours {sorted(set(ours) - set(reference))[:5]}, "
        f"only PyRadiomics {sorted(set(reference) - set(ours))[:5]}")
    worst_name, worst = None, 0.0
    for name, expected in reference.items():
        value = ours[name]
        if math.isnan(expected) and math.isnan(value):
            continue
        difference = abs(value - expected)
        if difference <= ABSOLUTE:
            continue
        relative = difference / max(abs(value), abs(expected))
        if not relative <= worst and (worst_name is None or relative > worst):
            worst_name, worst = name, relative
    assert worst <= RELATIVE and not (worst_name and math.isnan(worst)), (
        f"worst feature {worst_name}: ours {ours.get(worst_name)}, PyRadiomics {reference.get(worst_name)}, "
        f"relative difference {worst:.3g}")


def compare(image: sitk.Image, region: np.ndarray, params: dict, pad: int = 5) -> dict[str, float]:
    reference = pyradiomics(image, region, params, pad)
    ours = region_features(image, region, params, pad)
    assert_same_features(ours, reference)
    return ours


def image_from(array: np.ndarray, spacing_zyx=(1.5, 0.7, 0.7)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    image.SetOrigin((-12.0, 30.5, 7.25))
    return image


def textured_volume(shape=(30, 64, 64), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=shape), (1.0, 2.0, 2.0))
    return (90 + 60 * texture / texture.std()).astype(np.float32)


# ------------------------------------------------------------------------------------------------ phantoms


def sphere(shape, centre, radius_mm, spacing):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return np.sqrt(((z - centre[0]) * spacing[0]) ** 2 + ((y - centre[1]) * spacing[1]) ** 2
                   + ((x - centre[2]) * spacing[2]) ** 2) <= radius_mm


@pytest.mark.parametrize("params", [PAPER, NATIVE], ids=["paper-resampled", "native"])
def test_textured_tumor_and_liver_phantom_all_1130_features(params):
    spacing = (1.5, 0.7, 0.7)
    volume = textured_volume()
    tumor = sphere(volume.shape, (15, 32, 30), 9.0, spacing)
    volume[tumor] -= 35
    image = image_from(volume, spacing)
    tumor_features = compare(image, tumor, params, pad=12)
    assert len(tumor_features) == 1130
    liver = sphere(volume.shape, (15, 32, 32), 20.0, spacing) & ~tumor
    compare(image, liver, params, pad=12)


@pytest.mark.parametrize("setting", [{}, {"normalize": True, "normalizeScale": 100}, {"preCrop": True},
                                     {"resampledPixelSpacing": [1.0, 1.0, 1.0]}],
                         ids=["whole", "whole-normalised", "precrop", "resampled"])
def test_regions_prepared_together_share_the_whole_image_and_equal_pyradiomics(setting):
    """Where the filters run on the whole image, the two regions share one float32 copy of it (PyRadiomics makes one
    per region): each region's features are still PyRadiomics', and where each region has its own crop, they do not
    share it."""
    spacing = (1.5, 0.7, 0.7)
    volume = textured_volume(shape=(20, 40, 40))
    tumor = sphere(volume.shape, (10, 20, 18), 5.0, spacing)
    liver = sphere(volume.shape, (10, 20, 22), 11.0, spacing) & ~tumor
    image = sitk.Cast(image_from(volume, spacing), sitk.sitkInt16)
    params = {"setting": {"binWidth": 25, **setting}, "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
              "featureClass": {"firstorder": None, "glcm": None, "glszm": None}}
    prepared = prepare_regions(image, [tumor, liver], params, 5)
    whole = "resampledPixelSpacing" not in setting and "preCrop" not in setting
    assert (prepared[0].image is prepared[1].image) == whole
    for region, handle in zip((tumor, liver), prepared, strict=True):
        assert_same_features(prepared_features(handle, params), pyradiomics(image, region, params, 5))


def test_sphere_shape_against_analytic_volume_and_diameter():
    """Independent truth beside PyRadiomics: a 12 mm sphere's mesh volume and diameter."""
    spacing = (0.5, 0.5, 0.5)
    region = sphere((60, 60, 60), (30, 30, 30), 12.0, spacing)
    area, volume = mesh_area_volume(np.pad(region, 1), spacing)
    assert volume == pytest.approx(4 / 3 * np.pi * 12.0 ** 3, rel=0.02)
    assert area == pytest.approx(4 * np.pi * 12.0 ** 2, rel=0.1)  # a voxel mesh overestimates the area
    diameters = maximum_diameters(np.pad(region, 1), spacing)
    assert diameters["Maximum3DDiameter"] == pytest.approx(24.0 + 0.5, abs=0.6)
    assert diameters["Maximum2DDiameterSlice"] <= diameters["Maximum3DDiameter"]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("force2d", [False, True])
def test_zone_sizes_equal_scipy_labels_level_by_level(seed, force2d):
    """The union-find zones equal scipy.ndimage.label's connected components of each gray level (26-connected, or
    8-connected in each slice under force2D): the same multiset of (level, size), on regions from smooth (large
    winding zones) to noisy (single voxels)."""
    from hccrad.features.engine.kernels import zone_sizes
    from hccrad.features.engine.texture import RegionGrid, TextureSettings

    rng = np.random.default_rng(seed)
    shape = (9, 21, 17)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), sigma=seed * 0.6)
    n_levels = 2 + seed * 3
    levels_image = np.digitize(smooth, np.quantile(smooth, np.linspace(0, 1, n_levels + 1)[1:-1])) + 1
    box_mask = rng.random(shape) < 0.85
    settings = TextureSettings(force2d_dimension=0 if force2d else None)
    grid = RegionGrid(levels_image[box_mask].astype(np.int32), box_mask, settings)
    zones = zone_sizes(grid.binned, grid.voxels, *grid.zone_neighbours())
    structure = np.ones((3, 3, 3), bool)
    if force2d:
        structure[0] = structure[2] = False
    expected = []
    for level in np.unique(levels_image[box_mask]):
        labelled, count = ndimage.label((levels_image == level) & box_mask, structure=structure)
        expected += [(int(level), int(size)) for size in np.bincount(labelled.ravel())[1:]]
    assert sorted(map(tuple, zones.tolist())) == sorted(expected)


def _counts_by_walking(levels: np.ndarray, alpha: int) -> tuple[np.ndarray, ...]:
    """GLCM, runs, multi, dependence and NGTDM of a (z, y, x) array of gray levels (0 outside the region), counted
    voxel by voxel in Python: each direction's neighbour looked up, each run walked from its first voxel."""
    from hccrad.features.engine.kernels import DIRECTIONS_13, OFFSETS_26

    n_gray, max_length = int(levels.max()), max(levels.shape)
    glcm = np.zeros((n_gray, n_gray, 13))
    runs = np.zeros((n_gray, max_length, 13))
    dependence = np.zeros((n_gray, 27))
    ngtdm = np.zeros((n_gray, 2))

    def level_at(position) -> int:
        inside = all(0 <= c < n for c, n in zip(position, levels.shape, strict=True))
        return int(levels[tuple(position)]) if inside else 0

    for position in zip(*np.nonzero(levels), strict=True):
        level = int(levels[position])
        for a, direction in enumerate(DIRECTIONS_13):
            ahead = level_at(np.add(position, direction))
            if ahead:
                glcm[level - 1, ahead - 1, a] += 1
            if level_at(np.subtract(position, direction)) != level:  # a run starts here: walk it
                length = 1
                while level_at(np.add(position, length * direction)) == level:
                    length += 1
                runs[level - 1, length - 1, a] += 1
        neighbours = [n for n in (level_at(np.add(position, offset)) for offset in OFFSETS_26) if n]
        dependence[level - 1, sum(abs(level - n) <= alpha for n in neighbours)] += 1
        ngtdm[level - 1, 0] += 1
        if neighbours:
            ngtdm[level - 1, 1] += abs(level - sum(neighbours) / len(neighbours))
    multi = (runs[:, 1:, :] > 0).any(axis=(0, 1))
    return glcm, runs, multi, dependence, ngtdm


@pytest.mark.parametrize("seed", range(4))
def test_neighbour_counts_equal_counts_by_walking(seed):
    """The one-pass texture kernel's five count arrays equal those counted voxel by voxel in Python (neighbours
    looked up, runs walked from their first voxel), on regions from smooth (long runs, few levels) to noisy (many
    levels), with holes, regions touching the box's faces, and GLDM's alpha 0 and 2."""
    from hccrad.features.engine.kernels import neighbour_counts
    from hccrad.features.engine.texture import RegionGrid, TextureSettings

    rng = np.random.default_rng(seed)
    shape = (5 + seed, 11, 9 + 2 * seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), sigma=2.0 - seed * 0.5)
    n_levels = 2 + seed * 5
    levels = np.digitize(smooth, np.quantile(smooth, np.linspace(0, 1, n_levels + 1)[1:-1])) + 1
    levels[rng.random(shape) < 0.15] = 0
    alpha = 2 * (seed % 2)
    grid = RegionGrid(levels[levels > 0].astype(np.int32), levels > 0, TextureSettings(gldm_alpha=alpha))
    counts = neighbour_counts(grid.binned, grid.voxels, grid.directions, grid.n_gray, max(shape), alpha)
    expected = _counts_by_walking(levels, alpha)
    for name, ours, walked in zip(("glcm", "runs", "multi", "dependence", "ngtdm"), counts, expected, strict=True):
        assert ours.shape == walked.shape, name
        if name == "ngtdm":
            np.testing.assert_allclose(ours, walked, rtol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(ours, walked, err_msg=name)


def test_texture_kernels_refuse_steps_that_are_not_positive():
    """The kernels index with unsigned integers, so a step <= 0 is refused rather than read outside the grid."""
    from hccrad.features.engine.kernels import neighbour_counts, zone_sizes
    from hccrad.features.engine.texture import RegionGrid

    box_mask = np.ones((4, 5, 6), dtype=bool)
    grid = RegionGrid(np.ones(box_mask.sum(), dtype=np.int32), box_mask)
    steps = grid.directions.copy()
    steps[3] = -steps[3]
    with pytest.raises(ValueError, match="steps > 0"):
        neighbour_counts(grid.binned, grid.voxels, steps, grid.n_gray, 6, 0)
    earlier, adjacent = grid.zone_neighbours()
    earlier = earlier.copy()
    earlier[0] = 0
    with pytest.raises(ValueError, match="steps > 0"):
        zone_sizes(grid.binned, grid.voxels, earlier, adjacent)


@pytest.mark.parametrize("seed", range(4))
def test_region_grid_from_values_is_numpys_digitize_and_bincount(seed):
    """RegionGrid.from_values (bins written straight into the grid, counted in the same pass) gives the grid that
    numpy.digitize's levels give, and numpy.bincount's counts: with the region's voxels computed or passed on from
    another image, NaN values in the last bin, a distance-2 padding."""
    from hccrad.features.engine.texture import RegionGrid, TextureSettings, bin_edges

    rng = np.random.default_rng(seed)
    shape = (7, 13, 11)
    box_mask = rng.random(shape) < 0.7
    values = (rng.normal(size=int(box_mask.sum())) * 60).astype(np.float32)
    values[:: 17 + seed] = np.nan if seed % 2 else values[:: 17 + seed]
    edges = bin_edges(values[np.isfinite(values)], bin_width=25)
    levels = np.digitize(values, edges)
    for settings in (TextureSettings(), TextureSettings(distances=(1, 2))):
        expected = RegionGrid(levels.astype(np.int32), box_mask, settings)
        for voxels in (None, expected.voxels):
            grid = RegionGrid.from_values(values, edges, box_mask, settings, voxels)
            assert grid.binned.dtype == np.int16 and np.array_equal(grid.binned, expected.binned)
            assert np.array_equal(grid.voxels, expected.voxels) and grid.shape == expected.shape
            assert grid.n_gray == expected.n_gray == levels.max()
            assert np.array_equal(np.trim_zeros(grid.level_counts, "b"), np.bincount(levels))


@pytest.mark.parametrize("seed", range(4))
def test_coordinate_covariance_equals_pyradiomics_float_product(seed):
    """The axis lengths' covariance from exact integer moments equals PyRadiomics' centred float product (its own
    lines: coordinates times spacing, centred, divided by sqrt(n), ``np.dot``) to rounding, on random regions
    with anisotropic spacing; an empty region has no voxels and a zero matrix."""
    from hccrad.features.engine.shape import coordinate_covariance

    rng = np.random.default_rng(seed)
    region = ndimage.binary_opening(rng.random((23, 31, 37)) < 0.55)
    spacing = np.array([2.5, 0.7, 0.7]) * rng.uniform(0.5, 1.5, 3)
    physical = np.array(np.nonzero(region), dtype=int).transpose((1, 0)) * spacing[None, :]
    physical -= np.mean(physical, axis=0)
    physical /= np.sqrt(len(physical))
    expected = np.dot(physical.T.copy(), physical)
    n_voxels, covariance = coordinate_covariance(region, spacing)
    assert n_voxels == int(region.sum())
    np.testing.assert_allclose(covariance, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert coordinate_covariance(np.zeros((3, 3, 3), bool), spacing) == (0, pytest.approx(np.zeros((3, 3))))


def test_coordinate_covariance_of_a_box_is_the_discrete_uniform_variance():
    """Analytic truth: a box of m voxels along an axis has index variance (m^2 - 1) / 12 and no covariance."""
    from hccrad.features.engine.shape import coordinate_covariance

    region = np.zeros((9, 14, 20), bool)
    region[1:8, 2:13, 3:19] = True  # 7 x 11 x 16 voxels
    spacing = np.array([3.0, 0.5, 0.8])
    n_voxels, covariance = coordinate_covariance(region, spacing)
    assert n_voxels == 7 * 11 * 16
    expected = np.diag([(m * m - 1) / 12 * s * s for m, s in zip((7, 11, 16), spacing, strict=True)])
    np.testing.assert_allclose(covariance, expected, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_maximum_diameters_equal_the_brute_force_over_all_vertex_pairs(seed):
    """The diameters come from the row ends' convex hulls per plane (monotone chain on the integer vertex grid);
    they equal the maxima over every pair of mesh vertices, with PyRadiomics' arithmetic, bit for bit."""
    from hccrad.features.engine.shape import mesh_vertices

    rng = np.random.default_rng(seed)
    spacing = (1.5, 0.7, 0.65)
    region = ndimage.gaussian_filter(rng.normal(size=(10, 26, 28)), 1.5 + seed % 3) > 0.05 * seed
    if seed == 5:  # one slice, then one row: degenerate planes
        region = np.zeros((1, 1, 9), bool)
        region[0, 0, 2:7] = True
    padded = np.pad(region, 1)
    points = mesh_vertices(padded).astype(np.float64) * (np.array(spacing) / 2)
    squared = np.zeros((len(points), len(points)))
    for axis in range(3):  # PyRadiomics' order of the sum: z, y, x
        squared = squared + (points[:, None, axis] - points[None, :, axis]) ** 2
    diameters = maximum_diameters(padded, spacing)
    assert diameters["Maximum3DDiameter"] == np.sqrt(squared.max())
    for axis, name in enumerate(("Maximum2DDiameterSlice", "Maximum2DDiameterColumn", "Maximum2DDiameterRow")):
        same_plane = points[:, None, axis] == points[None, :, axis]
        assert diameters[name] == np.sqrt(np.where(same_plane, squared, 0.0).max())


@pytest.mark.parametrize("seed", range(4))
def test_diameter_candidates_hold_every_vertex_of_the_3d_convex_hull(seed):
    """The 3D diameter is searched among the points that are hull vertices of their plane along all three axes;
    Qhull's hull of all mesh vertices (an independent reference) has no vertex outside them, and they are far
    fewer than the mesh vertices."""
    from scipy.spatial import ConvexHull

    from hccrad.features.engine.shape import _plane_hull_vertices, _vertices_of_every_plane_hull, mesh_vertices

    rng = np.random.default_rng(100 + seed)
    region = ndimage.gaussian_filter(rng.normal(size=(14, 30, 26)), 2.0) > 0.02 * seed
    vertices = mesh_vertices(np.pad(region, 1))
    candidates = _vertices_of_every_plane_hull([_plane_hull_vertices(vertices, axis) for axis in range(3)])
    hull = vertices[ConvexHull(vertices.astype(np.float64)).vertices]
    assert {tuple(point) for point in hull} <= {tuple(point) for point in candidates}
    assert len(candidates) < len(vertices) / 5


def test_flat_region_has_pyradiomics_conventions():
    """A region of one gray level: the class conventions for flat regions (0, 1, 1e6) must match."""
    volume = np.full((12, 20, 20), 50.0, dtype=np.float32)
    region = np.zeros(volume.shape, dtype=bool)
    region[3:9, 5:15, 4:16] = True
    compare(image_from(volume), region, {"setting": {"binWidth": 25}, "imageType": {"Original": {}}})


# ------------------------------------------------------------------------------------------- awkward masks


def awkward_masks() -> dict[str, np.ndarray]:
    shape = (16, 40, 40)
    rng = np.random.default_rng(3)
    masks = {}
    blob = ndimage.gaussian_filter(rng.normal(size=shape), 2.0) > 0.05
    masks["random-blobs-disconnected"] = blob
    thin = np.zeros(shape, dtype=bool)
    thin[4:12, 10:30, 20:22] = True
    masks["thin-two-voxels"] = thin
    plate = np.zeros(shape, dtype=bool)
    plate[3:13, 8:32, 15] = True
    masks["one-voxel-thick"] = plate
    border = np.zeros(shape, dtype=bool)
    border[0:6, 0:12, 30:40] = True
    masks["touching-the-border"] = border
    single = np.zeros(shape, dtype=bool)
    single[7, 5:35, 8:30] = rng.random((30, 22)) > 0.3
    masks["single-slice"] = single
    diagonal = np.zeros(shape, dtype=bool)
    for k in range(12):
        diagonal[2 + k, 5 + 2 * k: 8 + 2 * k, 5 + 2 * k: 9 + 2 * k] = True
    masks["oblique-staircase"] = diagonal
    return masks


@pytest.mark.parametrize("name", list(awkward_masks()))
def test_awkward_masks_match(name):
    region = awkward_masks()[name]
    image = image_from(textured_volume(region.shape, seed=5), (2.0, 0.8, 0.8))
    params = {"setting": {"binWidth": 10, "label": 1},
              "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.5]}, "Wavelet": {}, "Gradient": {}}}
    compare(image, region, params, pad=4)
    compare(image, region, {**PAPER, "setting": {**PAPER["setting"], "resampledPixelSpacing": [1.0, 1.0, 1.5]}},
            pad=4)


def test_a_line_of_voxels_fails_like_pyradiomics():
    region = np.zeros((10, 10, 10), dtype=bool)
    region[5, 5, 2:8] = True
    image = image_from(textured_volume((10, 10, 10)))
    with pytest.raises(ValueError, match="too few dimensions"):
        pyradiomics(image, region, NATIVE, 2)
    with pytest.raises(ValueError, match="too few dimensions"):
        region_features(image, region, NATIVE, 2)


def test_runs_split_by_a_gap_still_count_as_a_line():
    coordinates = np.array([[0, 0, 0], [0, 0, 3], [2, 5, 1]])
    assert has_two_on_a_line(coordinates, np.array([0, 0, 1]))
    assert not has_two_on_a_line(coordinates, np.array([1, 0, 0]))
    assert has_two_on_a_line(np.array([[1, 1, 1], [4, 4, 4]]), np.array([1, 1, 1]))


def test_what_the_engine_lacks_is_refused_by_name_and_auto_is_advised():
    with pytest.raises(UnsupportedSetting, match="image type 'LBP2D' is not implemented.*engine: auto"):
        region_features(image_from(textured_volume((8, 8, 8))), np.ones((8, 8, 8), bool),
                        {"imageType": {"LBP2D": {}}}, 2)
    with pytest.raises(UnsupportedSetting, match="'resegmentRange: \\[1, 2, 3\\]' must hold 1 or 2 values"):
        region_features(image_from(textured_volume((8, 8, 8))), np.ones((8, 8, 8), bool),
                        {"setting": {"resegmentRange": [1, 2, 3]}}, 2)


# ----------------------------------------------------------------------------------------- real reference


def test_real_abdominal_ct_liver_with_a_drawn_lesion():
    folder = shared_path("reference", "ct", "totalseg_abdomen")
    image = sitk.ReadImage(str(folder / "example_ct_sm.nii.gz"), sitk.sitkFloat32)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_seg.nii.gz")))
    liver = labels == 5
    centre = np.round(np.argwhere(liver).mean(axis=0)).astype(int)
    lesion = sphere(liver.shape, centre, 12.0, image.GetSpacing()[::-1]) & liver
    compare(image, lesion, NATIVE, pad=5)
    compare(image, liver & ~lesion, NATIVE, pad=5)


def test_real_sarcoma_ct_with_manual_mask():
    folder = shared_path("reference", "ct", "ibsi_sts_002")
    image = sitk.ReadImage(str(folder / "CT_image.nii.gz"), sitk.sitkFloat32)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "CT_mask.nii.gz"))) > 0
    params = {**NATIVE, "imageType": {"Original": {}, "LoG": {"sigma": [1, 3]}, "Gradient": {}}}
    compare(image, mask, params, pad=8)


def test_real_three_slice_dicom_liver():
    from hccrad.io.images import read_image, read_mask

    folder = shared_path("reference", "ct", "dcmqi_3slice")
    image = sitk.Cast(read_image(folder), sitk.sitkFloat32)
    liver = sitk.GetArrayFromImage(read_mask(folder / "liver_seg.nrrd", image)) > 0
    compare(image, liver, NATIVE, pad=5)


def test_ibsi_digital_phantom_bin_width_1():
    folder = shared_path("reference", "ct", "ibsi_digital_phantom")
    image = sitk.ReadImage(str(folder / "image.nii.gz"), sitk.sitkFloat32)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask.nii.gz"))) > 0
    params = {"setting": {"binWidth": 1, "label": 1}, "imageType": {"Original": {}}}
    features = compare(image, mask, params, pad=0)
    # IBSI 1's reference values for this phantom where PyRadiomics' conventions agree with IBSI's:
    # mean intensity 2.15, volume by voxel counting 592 mm^3 (74 voxels of 2 x 2 x 2 mm), mesh volume 556 mm^3
    assert features["original_firstorder_Mean"] == pytest.approx(2.15, abs=0.005)
    assert features["original_shape_VoxelVolume"] == pytest.approx(592.0)
    assert features["original_shape_MeshVolume"] == pytest.approx(556.0, abs=0.5)


# ---------------------------------------------------------------------------------------- paper-like case


def test_downsampled_paper_like_case():
    """A synthetic patient on a coarse grid, the paper's settings with the resampled spacing scaled alike."""
    from hccrad.features.regions import remnant_liver_mask, tumor_mask
    from hccrad.synth.anatomy import Grid, acquire, render_case
    from hccrad.synth.patients import draw_patient
    from hccrad.synth.writers import to_sitk

    grid = Grid(shape=(36, 96, 96), spacing=(6.0, 350 / 96, 350 / 96), origin=(-175.0, -170.0, -110.0))
    patient = draw_patient("SMALL", "D", 4321, 0.0)
    rendered = render_case(patient.anatomy, grid)
    image = sitk.Cast(to_sitk(acquire(rendered, 1.0, 14.0, 6.0, 1), grid), sitk.sitkFloat32)
    params = {**PAPER, "setting": {**PAPER["setting"], "resampledPixelSpacing": [2.6, 2.6, 6.0]}}
    for region in (tumor_mask(rendered.labels), remnant_liver_mask(rendered.labels)):
        compare(image, region, params, pad=8)


def test_two_level_wavelet_and_custom_image_type_settings():
    """Level 2 names its bands ``wavelet2-*`` and decomposes level 1's approximation; per-type settings apply."""
    spacing = (1.5, 0.7, 0.7)
    volume = textured_volume((24, 48, 48), seed=9)
    region = sphere(volume.shape, (12, 24, 24), 8.0, spacing)
    params = {"setting": {"binWidth": 15, "label": 1},
              "imageType": {"Wavelet": {"level": 2, "binWidth": 5}, "Gradient": {"gradientUseSpacing": False}},
              "featureClass": {"firstorder": None, "glszm": ["ZonePercentage", "SmallAreaEmphasis"]}}
    features = compare(image_from(volume, spacing), region, params, pad=10)
    assert any(name.startswith("wavelet2-HHH_") for name in features)
    assert list(features)[-1].startswith("gradient_glszm_SmallAreaEmphasis")


def test_linear_resampling_goes_through_simpleitk_and_matches():
    """Only the B-spline is recomputed; another interpolator is SimpleITK's own call, and still PyRadiomics'."""
    region = awkward_masks()["random-blobs-disconnected"]
    image = image_from(textured_volume(region.shape, seed=6), (2.0, 0.8, 0.8))
    params = {**PAPER, "setting": {**PAPER["setting"], "interpolator": "sitkLinear",
                                   "resampledPixelSpacing": [1.0, 1.0, 1.5]}}
    compare(image, region, params, pad=4)


def test_resampling_without_an_interpolator_key_uses_pyradiomics_default_bspline():
    """PyRadiomics' default interpolator is sitkBSpline: a parameter file that gives resampledPixelSpacing and no
    interpolator resamples, in the engine too (it used to skip resampling, and disagreed by 3x on glcm Contrast)."""
    region = awkward_masks()["random-blobs-disconnected"]
    image = image_from(textured_volume(region.shape, seed=8), (2.0, 0.8, 0.8))
    settings = {key: value for key, value in PAPER["setting"].items() if key != "interpolator"}
    params = {**PAPER, "setting": {**settings, "resampledPixelSpacing": [1.0, 1.0, 1.0]}}
    ours = compare(image, region, params, pad=4)
    native = region_features(image, region, {**params, "setting": {**settings, "interpolator": None}}, 4)
    assert ours["original_shape_VoxelVolume"] != native["original_shape_VoxelVolume"]  # it did resample


@pytest.mark.parametrize(("params", "words"), [
    ({"imageType": {"LoG": {"sigma": [0, -1, 2]}}}, "less than or equals to min limit(exclusive) '0'"),
    ({"setting": {"binwidth": 25}}, "Key 'binwidth' was not defined"),
    ({"setting": {"binWidth": "wide"}}, "binWidth"),
    ({"setting": {"label": 2}}, "'label: 2' cannot apply in a study"),
])
def test_parameter_files_are_checked_as_pyradiomics_checks_them(tmp_path, params, words):
    """PyRadiomics' own schema refuses the same files (its extractor raises), for both engines."""
    import yaml
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from hccrad.features.config import ParameterFileError

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParameterFileError, match=re.escape(words)) as caught:
        FeatureConfig(params=str(path)).radiomics_params()
    assert str(path) in str(caught.value)
    if "label" not in params.get("setting", {}):
        with pytest.raises(Exception):  # noqa: B017 - pykwalify's SchemaError
            RadiomicsFeatureExtractor(params)
