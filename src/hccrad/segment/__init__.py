"""Segmentation: nnU-Net v2 in the paper's configuration (``hccrad.segment.nnunet``, needs torch), the
post-processing of liver/tumor label maps, and DSC / HD95."""

from hccrad.segment.metrics import compare_labels, dice, hd95
from hccrad.segment.postprocess import postprocess_labels

__all__ = ["compare_labels", "dice", "hd95", "postprocess_labels"]
