"""Label conventions and connected-component helpers shared by every stage.

Labels: 0 background, 1 liver, 2 tumor, 3 portal vein. Connectivity is 26 (faces, edges and corners)
throughout hccrad, so "the largest tumor" means the same in the generator, the post-processing and the
features.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LABEL_BACKGROUND, LABEL_LIVER, LABEL_TUMOR, LABEL_PORTAL_VEIN = 0, 1, 2, 3
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label the 26-connected components of ``mask``; return (labels, voxel count of each, largest first)."""
    components, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    return components, np.sort(sizes)[::-1]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (an empty mask stays empty).

    Components are labelled on the mask's bounding box only, so a small region of a large image costs little.
    """
    largest = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return largest
    components, count = ndimage.label(mask[box], structure=FULL_CONNECTIVITY)
    if count <= 1:
        largest[box] = mask[box]
        return largest
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest[box] = components == int(np.argmax(sizes))
    return largest


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (one slice per axis) holding every true voxel of ``mask``; None when it has none."""
    extent = []
    for axis in range(mask.ndim):
        occupied = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if occupied.size == 0:
            return None
        extent.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
    return tuple(extent)


def tumor_mask(labels: np.ndarray) -> np.ndarray:
    """``Tumor``: the largest 26-connected component of label 2."""
    return largest_component(labels == LABEL_TUMOR)


def intrahepatic_portal_vein(labels: np.ndarray) -> np.ndarray:
    """Label-3 voxels enclosed by liver or tumor in their axial slice (2D hole filling).

    Intrahepatic branches are islands inside the liver's cross-section; the extrahepatic trunk at the hilum
    lies on the liver's border and is not enclosed.
    """
    liver_or_tumor = (labels == LABEL_LIVER) | (labels == LABEL_TUMOR)
    enclosed = np.zeros_like(liver_or_tumor)
    box = bounding_box(liver_or_tumor)
    if box is None:
        return enclosed
    # hole filling on the liver's box gives the same result as on the whole slice, which is outside-connected
    for index in range(box[0].start, box[0].stop):
        enclosed[index][box[1:]] = ndimage.binary_fill_holes(liver_or_tumor[index][box[1:]])
    return enclosed & (labels == LABEL_PORTAL_VEIN)


def remnant_liver_mask(labels: np.ndarray, exclude_portal_vein: bool = False) -> np.ndarray:
    """``Rliver``: the liver without any tumor voxel.

    Label 1, plus the intrahepatic portal vein (label 3 enclosed by the liver) unless
    ``exclude_portal_vein``. No label-2 voxel is ever included, whichever tumor component it belongs to.
    """
    liver = labels == LABEL_LIVER
    if not exclude_portal_vein:
        liver = liver | intrahepatic_portal_vein(labels)
    return liver & (labels != LABEL_TUMOR)
