"""Features: morphological factors and PyRadiomics features of the tumor and the remnant liver."""

from hccrad.features.cohort import FeatureRun, extract_features, load_feature_table
from hccrad.features.config import FeatureConfig

__all__ = ["FeatureConfig", "FeatureRun", "extract_features", "load_feature_table"]
