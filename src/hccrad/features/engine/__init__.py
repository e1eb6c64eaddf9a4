"""hccrad's feature engine: PyRadiomics' features, the same values, computed much faster.

See ``docs/features.md`` ("The feature engine") for what it matches and how to switch engines.
"""

from hccrad.features.engine.extract import (
    ENGINE_VERSION,
    PYRADIOMICS_IMAGE_TYPES,
    PreparedRegion,
    UnsupportedSetting,
    check_params,
    prepare_region,
    prepare_regions,
    prepared_features,
    pyradiomics_image_types,
    region_features,
)

__all__ = ["ENGINE_VERSION", "PYRADIOMICS_IMAGE_TYPES", "PreparedRegion", "UnsupportedSetting", "check_params",
           "prepare_region", "prepare_regions", "prepared_features", "pyradiomics_image_types", "region_features"]
