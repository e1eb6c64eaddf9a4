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
    """The largest 26-connected component of a boolean mask (an empty mask stays empty)."""
    components, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    if count <= 1:
        return mask.astype(bool, copy=True)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))
