"""Segmentation: post-processing of liver/tumor label maps, DSC and HD95.

The nnU-Net v2 training and inference of the paper's configuration are not built yet (see docs/segmentation.md).
"""

from hccrad.segment.metrics import compare_labels, dice, hd95
from hccrad.segment.postprocess import postprocess_labels

__all__ = ["compare_labels", "dice", "hd95", "postprocess_labels"]
