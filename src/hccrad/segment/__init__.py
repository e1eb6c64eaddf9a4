"""Segmentation: nnU-Net v2 in the paper's configuration, post-processing, DSC and HD95."""
