"""Features: morphological factors and PyRadiomics features of the tumor and the remnant liver.

The names below load on first use (PEP 562), so that a feature worker importing ``hccrad.features.extract``
does not also load the cohort's table machinery (pandas, pyarrow: about 100 MB per worker).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FeatureConfig": "hccrad.features.config",
    "FeatureRun": "hccrad.features.cohort",
    "extract_features": "hccrad.features.cohort",
    "load_feature_table": "hccrad.features.cohort",
}

__all__ = ["FeatureConfig", "FeatureRun", "extract_features", "load_feature_table"]

if TYPE_CHECKING:
    from hccrad.features.cohort import FeatureRun, extract_features, load_feature_table
    from hccrad.features.config import FeatureConfig


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hccrad.features' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
