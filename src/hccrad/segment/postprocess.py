"""The paper's post-processing of a predicted liver/tumor label map.

1. Tumor components (26-connected) that do not touch the liver are false positives outside the liver and
   become background.
2. Of the remaining tumor components only the largest is kept (the paper keeps "only the largest tumor by
   volume"); the smaller ones lie in the liver and become liver (label 1).
3. Holes are filled: inside the tumor (-> tumor) and inside the whole liver, i.e. liver + tumor + portal vein
   (-> liver).
"""

from __future__ import annotations

import numpy as np

from hccrad.io.masks import FULL_CONNECTIVITY, LABEL_LIVER, LABEL_PORTAL_VEIN, LABEL_TUMOR, largest_component


def postprocess_labels(labels: np.ndarray) -> np.ndarray:
    """Apply the post-processing above to a (z, y, x) label array and return a new array."""
    from scipy import ndimage  # here: the package is imported by the features command, which does not need SciPy

    out = labels.copy()
    tumor = out == LABEL_TUMOR
    liver = out == LABEL_LIVER
    components, count = ndimage.label(tumor, structure=FULL_CONNECTIVITY)
    if count:
        touching = np.unique(components[ndimage.binary_dilation(liver, structure=FULL_CONNECTIVITY) & tumor])
        outside = np.isin(components, np.setdiff1d(np.arange(1, count + 1), touching))
        out[outside] = 0
        kept = largest_component(out == LABEL_TUMOR)
        out[(out == LABEL_TUMOR) & ~kept] = LABEL_LIVER
    tumor = ndimage.binary_fill_holes(out == LABEL_TUMOR)
    out[tumor] = LABEL_TUMOR
    organ = ndimage.binary_fill_holes(np.isin(out, (LABEL_LIVER, LABEL_TUMOR, LABEL_PORTAL_VEIN)))
    out[organ & (out == 0)] = LABEL_LIVER
    return out
