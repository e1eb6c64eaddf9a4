"""The mask helpers of hccrad.io.masks (SimpleITK inside) against scipy.ndimage, the library they replace in the
features command (features issue #33: SciPy's ndimage import cost 0.17 s of CPU and 13 MB per run)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from hccrad.io.masks import (
    FULL_CONNECTIVITY,
    component_boxes,
    dilated_26,
    enclosed_holes_ml,
    face_neighbours,
    inscribed_diameter_mm,
    label_components,
    label_slices_4_connected,
    largest_inside_distance_mm,
)

FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


def random_masks(seed: int, count: int = 6, shape: tuple[int, int, int] = (14, 23, 19)) -> list[np.ndarray]:
    """Speckle of several densities (many components, touching the array's faces) and smooth blobs."""
    rng = np.random.default_rng(seed)
    masks = [rng.random(shape) > threshold for threshold in np.linspace(0.45, 0.85, count // 2)]
    for _ in range(count - len(masks)):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
        masks.append(field > np.quantile(field, rng.uniform(0.4, 0.8)))
    return masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_components_are_numbered_as_scipy_numbers_them(seed):
    """26- and 6-connected components in 3D, 8 and 4 in 2D: the same labels (raster order of each component's
    first voxel) and count as scipy.ndimage.label."""
    for mask in random_masks(seed):
        for fully_connected, structure in ((True, FULL_CONNECTIVITY), (False, FACE_CONNECTIVITY)):
            labels, count = label_components(mask, fully_connected)
            expected, expected_count = ndimage.label(mask, structure=structure)
            assert count == expected_count and np.array_equal(labels, expected)
        plane = mask[mask.shape[0] // 2]
        for fully_connected in (True, False):
            labels, count = label_components(plane, fully_connected)
            expected, expected_count = ndimage.label(plane, structure=ndimage.generate_binary_structure(
                2, 2 if fully_connected else 1))
            assert count == expected_count and np.array_equal(labels, expected)


def test_empty_and_full_masks_have_no_and_one_component():
    assert label_components(np.zeros((3, 4, 5), bool))[1] == 0
    labels, count = label_components(np.ones((3, 4, 5), bool))
    assert count == 1 and (labels == 1).all()


@pytest.mark.parametrize("seed", [3, 4])
def test_slice_components_are_scipys_in_plane_labelling(seed):
    """Each axial slice labelled 4-connected, no joins across slices: the same partition as scipy.ndimage.label
    with the in-plane cross (labels compared as a partition: the pairing of labels is one to one)."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    for mask in random_masks(seed):
        labels = label_slices_4_connected(mask)
        expected, count = ndimage.label(mask, structure=structure)
        assert ((labels > 0) == mask).all()
        pairs = np.unique(np.stack([labels[mask], expected[mask]]), axis=1)
        assert pairs.shape[1] == count == len(np.unique(labels[mask]))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.7, 0.8), (0.5, 1.3, 3.0)])
def test_largest_inside_distance_equals_scipys_euclidean_distance_transform(spacing):
    """The maximum of scipy.ndimage.distance_transform_edt (float64, the same formula) on speckle, smooth blobs,
    an anisotropic ball, a one-voxel tube and a single voxel, each padded by an empty voxel."""
    z, y, x = np.ogrid[:25, :31, :29]
    ball = ((z - 12) * spacing[0] / 9.0) ** 2 + ((y - 15) * spacing[1] / 11.0) ** 2 \
        + ((x - 14) * spacing[2] / 10.0) ** 2 <= 1.0
    tube = np.zeros((9, 12, 20), dtype=bool)
    tube[4, 6, 2:18] = True
    single = np.zeros((3, 3, 3), dtype=bool)
    single[1, 1, 1] = True
    for mask in [*random_masks(5), ball, tube, single]:
        padded = np.pad(mask, 1)
        expected = float(ndimage.distance_transform_edt(padded, sampling=spacing).max())
        assert largest_inside_distance_mm(padded, spacing) == pytest.approx(expected, rel=1e-14, abs=0.0)


def test_inscribed_diameter_is_twice_scipys_largest_distance():
    """The public measure on a mask that touches its array's faces (the helper pads its bounding box)."""
    mask = random_masks(6, count=2)[1]
    spacing = (2.0, 0.75, 0.75)
    expected = 2.0 * float(ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing).max())
    assert inscribed_diameter_mm(mask, spacing) == pytest.approx(expected, rel=1e-14, abs=0.0)
    assert np.isnan(inscribed_diameter_mm(np.zeros((3, 3, 3), bool), spacing))


@pytest.mark.parametrize("seed", [7, 8])
def test_dilation_shell_boxes_and_holes_equal_scipys(seed):
    """dilated_26 = binary_dilation with the cube, face_neighbours = dilation with the cross minus the mask,
    component_boxes = find_objects, enclosed_holes_ml = binary_fill_holes (6-connected background) minus the
    region."""
    spacing = (1.5, 0.8, 0.9)
    for mask in random_masks(seed):
        assert np.array_equal(dilated_26(mask), ndimage.binary_dilation(mask, structure=FULL_CONNECTIVITY))
        assert np.array_equal(face_neighbours(mask), ndimage.binary_dilation(mask, structure=FACE_CONNECTIVITY)
                              & ~mask)
        labels, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
        if count:
            numbers = np.arange(1, count + 1)
            boxes = component_boxes(labels, numbers)
            assert [boxes[n] for n in numbers] == ndimage.find_objects(labels)
        box = tuple(slice(0, n) for n in mask.shape)
        holes = ndimage.binary_fill_holes(mask[box]) & ~mask[box]
        assert enclosed_holes_ml(mask, spacing) == pytest.approx(
            float(np.count_nonzero(holes)) * float(np.prod(spacing)) / 1000.0, rel=1e-12)


def test_a_cavity_and_a_tunnel_to_the_surface():
    """A hollow ball holds its cavity; a hole bored to its surface is no cavity, as scipy says."""
    z, y, x = np.ogrid[:21, :21, :21]
    radius = np.sqrt((z - 10) ** 2 + (y - 10) ** 2 + (x - 10) ** 2)
    shell = (radius <= 9) & (radius > 4)
    cavity = int(np.count_nonzero(radius <= 4))
    assert enclosed_holes_ml(shell, (1.0, 1.0, 1.0)) == pytest.approx(cavity / 1000.0)
    bored = shell.copy()
    bored[10, 10, :10] = False
    expected = ndimage.binary_fill_holes(bored) & ~bored
    assert enclosed_holes_ml(bored, (1.0, 1.0, 1.0)) == pytest.approx(np.count_nonzero(expected) / 1000.0) == 0.0


def test_the_features_stage_does_not_import_scipy_ndimage():
    """A fresh process importing the features command's modules and running the mask QC and measures (the
    tumor's largest component, the intrahepatic portal vein, the portal-vein checks, the inscribed diameter,
    enclosed holes) never imports scipy.ndimage."""
    code = """
import sys
import numpy as np
import hccrad.features.cohort, hccrad.features.extract, hccrad.features.morphology, hccrad.segment
import hccrad.pipeline.run
from hccrad.io.masks import (enclosed_holes_ml, inscribed_diameter_mm, intrahepatic_portal_vein,
                             portal_vein_problems, tumor_mask)
labels = np.zeros((12, 30, 30), np.uint8)
labels[2:10, 4:26, 4:26] = 1
labels[4:8, 8:14, 8:14] = 2
labels[5:7, 18:21, 10:22] = 3
tumor_mask(labels); intrahepatic_portal_vein(labels); enclosed_holes_ml(labels == 1, (2.0, 0.8, 0.8))
portal_vein_problems(labels, (2.0, 0.8, 0.8), 25.0); inscribed_diameter_mm(labels == 3, (2.0, 0.8, 0.8))
print("scipy.ndimage" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
