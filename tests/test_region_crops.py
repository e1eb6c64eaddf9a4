"""The region helpers work on a mask's bounding box for speed; they must equal the whole-image computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hccrad.features.morphology import largest_inscribed_diameter_mm
from hccrad.features.regions import intrahepatic_portal_vein
from hccrad.io.masks import FULL_CONNECTIVITY, bounding_box, largest_component


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
