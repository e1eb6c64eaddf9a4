"""The region helpers work on a mask's bounding box for speed; they must equal the whole-image computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hccrad.features.morphology import largest_inscribed_diameter_mm
from hccrad.features.regions import intrahepatic_portal_vein
from hccrad.io import masks
from hccrad.io.masks import (
    FULL_CONNECTIVITY,
    bounding_box,
    label_box,
    largest_component,
    remnant_liver_mask,
    tumor_mask,
)


def _blobs(seed: int, shape=(20, 40, 44), count: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    mask = field > np.quantile(field, 0.93)
    mask[:, :, :3] = False  # keep a margin so that the box is smaller than the image
    return mask


@pytest.mark.parametrize("seed", range(4))
def test_largest_component_equals_whole_image_labelling(seed):
    mask = _blobs(seed)
    components, _ = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    np.testing.assert_array_equal(largest_component(mask), components == np.argmax(sizes))


def test_largest_component_and_box_of_empty_mask():
    empty = np.zeros((4, 5, 6), dtype=bool)
    assert bounding_box(empty) is None
    assert not largest_component(empty).any()


@pytest.mark.parametrize("seed", range(3))
def test_inscribed_diameter_equals_whole_image_transform(seed):
    mask = _blobs(seed)
    spacing = (1.5, 0.7, 0.8)
    expected = 2.0 * ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing).max()
    assert largest_inscribed_diameter_mm(mask, spacing) == pytest.approx(expected, rel=1e-12)


def test_inscribed_diameters_kept_are_each_masks_own(monkeypatch):
    """The kept diameters are keyed by the mask's voxels and spacing: a mask changed by one voxel, or the same mask
    on another spacing, is measured again; the same content in another place of the image is found again; the
    store holds at most INSCRIBED_DIAMETERS_KEPT results."""
    monkeypatch.setattr(masks, "_INSCRIBED_DIAMETERS", masks.OrderedDict())
    calls = []
    original = masks.largest_inside_distance_mm
    monkeypatch.setattr(masks, "largest_inside_distance_mm",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    mask = np.zeros((12, 30, 30), dtype=bool)
    mask[2:10, 5:25, 8:20] = True
    spacing = (1.5, 0.7, 0.8)
    first = largest_inscribed_diameter_mm(mask, spacing)
    moved = np.roll(mask, 3, axis=2)
    assert largest_inscribed_diameter_mm(moved, spacing) == first and len(calls) == 1
    changed = mask.copy()
    changed[5, 14, 14] = False  # a hole in the middle: a smaller ball
    assert largest_inscribed_diameter_mm(changed, spacing) < first and len(calls) == 2
    assert largest_inscribed_diameter_mm(mask, (1.0, 1.0, 1.0)) != first and len(calls) == 3
    for size in range(4, 4 + masks.INSCRIBED_DIAMETERS_KEPT + 2):
        largest_inscribed_diameter_mm(mask[:, :size], spacing)
    assert len(masks._INSCRIBED_DIAMETERS) == masks.INSCRIBED_DIAMETERS_KEPT
    expected = 2.0 * ndimage.distance_transform_edt(np.pad(changed, 1), sampling=spacing).max()
    assert largest_inscribed_diameter_mm(changed, spacing) == expected


def test_intrahepatic_portal_vein_equals_whole_slice_filling():
    labels = np.zeros((6, 40, 40), dtype=np.uint8)
    yy, xx = np.mgrid[:40, :40]
    ring = ((yy - 20) ** 2 + (xx - 22) ** 2 < 12 ** 2)
    labels[1:5][:, ring] = 1
    labels[1:5][:, (yy - 20) ** 2 + (xx - 22) ** 2 < 3 ** 2] = 3  # enclosed branch
    labels[2, 20, 30:40] = 3  # a vessel leaving the liver: not enclosed where outside
    labels[3, 14:17, 18:21] = 2
    liver_or_tumor = np.isin(labels, (1, 2))
    expected = np.stack([ndimage.binary_fill_holes(s) for s in liver_or_tumor]) & (labels == 3)
    result = intrahepatic_portal_vein(labels)
    np.testing.assert_array_equal(result, expected)
    assert result[2, 20, 24] and not result[2, 20, 38]


@pytest.mark.parametrize("seed", range(8))
def test_intrahepatic_portal_vein_equals_binary_fill_holes_on_random_labels(seed):
    """Holes found by labelling each slice's background equal scipy's binary_fill_holes slice by slice, on random
    label maps with holes touching the box's edges, nested rings and slices without label 3."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=(7, 23, 29)).astype(np.uint8)
    labels = np.where(ndimage.uniform_filter(labels.astype(float), 3) > 1.3 + 0.05 * seed, 1, labels).astype(np.uint8)
    labels[seed % 7][labels[seed % 7] == 3] = 0  # a slice without portal vein
    liver_or_tumor = np.isin(labels, (1, 2))
    expected = np.stack([ndimage.binary_fill_holes(s) for s in liver_or_tumor]) & (labels == 3)
    assert expected.any() and ((labels == 3) & ~expected).any()  # enclosed and open label 3 both present
    np.testing.assert_array_equal(intrahepatic_portal_vein(labels), expected)


@pytest.mark.parametrize("chunk_voxels", [1, 40 * 44 * 3, 1 << 22])
def test_label_box_slab_by_slab_equals_the_whole_comparison(monkeypatch, chunk_voxels):
    """One plane at a time, three (the last slab shorter) or all at once: the box of the whole comparison."""
    monkeypatch.setattr(masks, "LABEL_BOX_CHUNK_VOXELS", chunk_voxels)
    labels = np.zeros((20, 40, 44), dtype=np.uint8)
    labels[_blobs(0)] = 1
    labels[_blobs(1) & (labels == 0)] = 2
    labels[3, 5, 40] = 3
    for values in [(1,), (2,), (1, 2), (3,), (1, 2, 3)]:
        assert label_box(labels, values) == bounding_box(np.isin(labels, values)), values
    assert label_box(labels, (4,)) is None
    assert label_box(labels[:, :, :0], (1,)) is None


@pytest.mark.parametrize("seed", range(3))
def test_tumor_and_remnant_liver_equal_the_whole_image_definitions(seed):
    """Label 2's largest 26-connected component, and label 1 plus the enclosed portal vein, computed on the
    labels' boxes: as computed on the whole image."""
    labels = np.zeros((20, 40, 44), dtype=np.uint8)
    labels[_blobs(seed, count=6)] = 1
    labels[_blobs(seed + 10) & (labels == 1)] = 2
    labels[2:5, 18:21, 20:23][labels[2:5, 18:21, 20:23] == 1] = 3
    components, _ = ndimage.label(labels == 2, structure=FULL_CONNECTIVITY)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    np.testing.assert_array_equal(tumor_mask(labels), components == np.argmax(sizes))
    liver_or_tumor = np.isin(labels, (1, 2))
    enclosed = np.stack([ndimage.binary_fill_holes(s) for s in liver_or_tumor]) & (labels == 3)
    np.testing.assert_array_equal(remnant_liver_mask(labels), (labels == 1) | enclosed)
    np.testing.assert_array_equal(remnant_liver_mask(labels, exclude_portal_vein=True), labels == 1)


@pytest.mark.parametrize("seed", range(5))
def test_feret_diameter_equals_the_brute_force_over_all_voxel_centres(seed):
    """The subcapsular-blob check's length: only voxels ending their line along z, y and x, then a centroid bound,
    are compared; the result equals the largest distance over every pair of voxel centres, bit for bit."""
    rng = np.random.default_rng(seed)
    spacing = (2.0, 0.8, 0.7)
    smooth = ndimage.gaussian_filter(rng.normal(size=(9, 22, 18)), 1.0 + seed % 3)
    component = smooth > np.quantile(smooth, 0.5 + 0.1 * seed)
    if seed == 3:  # a tube along y, one voxel thick
        component = np.zeros((5, 30, 5), bool)
        component[2, 3:27, 2] = True
    if seed == 4:  # one voxel
        component = np.zeros((3, 3, 3), bool)
        component[1, 1, 1] = True
    points = np.argwhere(component) * np.asarray(spacing)
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
    assert masks._feret_diameter_mm(component, spacing) == float(np.sqrt(squared.max()))
