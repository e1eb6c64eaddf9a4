"""Features of one case: regions, morphological factors and PyRadiomics features of Tumor and Rliver."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad.features.config import FeatureConfig, crop_pad_voxels
from hccrad.features.morphology import largest_inscribed_diameter_mm, morphological_factors
from hccrad.features.regions import RegionError, check_region, region_attenuation_problems
from hccrad.io.case import CTCase
from hccrad.io.config import SeriesRule
from hccrad.io.images import ImageReadError, ct_intensity_problems
from hccrad.io.masks import LABEL_PORTAL_VEIN
from hccrad.io.provenance import update_with_content


@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs to compute one case (plain data, so it travels to remote workers)."""

    patient_id: str
    ct: str
    mask: str
    portal_vein_diameter_mm: float | None
    radiomics_params: dict[str, Any]
    config: dict[str, Any]
    series_rule: dict[str, Any]
    fingerprint: str


def case_fingerprint(ct: Path, mask: Path, portal_vein_diameter_mm: float | None, radiomics_params: dict,
                     config: dict, version: str) -> str:
    """A key that changes when anything the case's features depend on changes.

    The CT and the mask are hashed by content: every byte of the file, or of each file of a DICOM folder in name
    order, with the names. File names, sizes and modification times are not enough: a restored backup, ``rsync
    -t`` or a PACS re-export keeps them while the voxels change (``bench/fingerprint_bench.py`` measures the cost).
    """
    digest = hashlib.sha256()
    digest.update(repr(sorted(radiomics_params.items(), key=str)).encode())
    digest.update(repr(sorted(config.items())).encode())
    digest.update(f"{portal_vein_diameter_mm}|{version}".encode())
    update_with_content(digest, mask)
    update_with_content(digest, ct)
    return digest.hexdigest()[:32]


def engine_version(engine: str) -> str:
    """hccrad's version plus the feature engine's name and version: part of every case fingerprint, so a change of
    engine, or of either engine's version, recomputes the features."""
    from hccrad import __version__

    if engine == "pyradiomics":
        import radiomics

        return f"{__version__}|pyradiomics {radiomics.__version__}"
    from hccrad.features.engine import ENGINE_VERSION

    return f"{__version__}|hccrad-engine {ENGINE_VERSION}"


def region_radiomics(engine: str, params: dict[str, Any], pad_voxels: int):
    """A function ``(image, region, prefix) -> features`` computing PyRadiomics' features with ``engine``."""
    if engine == "pyradiomics":
        extractor = radiomics_extractor(params, pad_voxels)
        return lambda image, region, prefix: radiomics_features(extractor, image, region, prefix)
    from hccrad.features.engine import check_params, region_features

    check_params(params)

    def compute(image: sitk.Image, region: np.ndarray, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{key}": float(value) for key, value in
                region_features(image, region, params, pad_voxels).items()}

    return compute


def radiomics_extractor(params: dict[str, Any], pad_voxels: int):
    """A PyRadiomics extractor for ``params`` that crops ``pad_voxels`` around the region before filtering."""
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    params = {key: (dict(value) if isinstance(value, dict) else value) for key, value in params.items()}
    settings = params.setdefault("setting", {}) or {}
    params["setting"] = settings
    settings["padDistance"] = int(pad_voxels)
    return featureextractor.RadiomicsFeatureExtractor(params)


def radiomics_features(extractor, image: sitk.Image, region: np.ndarray, prefix: str) -> dict[str, float]:
    """PyRadiomics features of one region of the CT cast to float32, named ``<prefix>_<imagetype>_<class>_<feature>``.
    """
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    mask = sitk.GetImageFromArray(region.astype(np.uint8))
    mask.CopyInformation(image)
    raw = extractor.execute(image, mask, label=1)
    return {f"{prefix}_{key}": float(value) for key, value in raw.items() if not key.startswith("diagnostics_")}


def portal_vein_diameter(labels: np.ndarray, spacing_zyx: tuple[float, float, float],
                         given_mm: float | None) -> tuple[float | None, str]:
    """Portal-vein diameter (mm) and where it came from: the clinical table, the label-3 mask, or nowhere."""
    if given_mm is not None and math.isfinite(given_mm):
        return float(given_mm), "clinical table"
    portal = labels == LABEL_PORTAL_VEIN
    if portal.any():
        return largest_inscribed_diameter_mm(portal, spacing_zyx), "mask label 3 (2 x max EDT)"
    return None, "missing"


def compute_case(job: CaseJob) -> dict[str, Any]:
    """Compute one case; never raises: a failure comes back as ``{"status": "failed", "error": ...}``."""
    try:
        config = FeatureConfig.model_validate(job.config)
        case = CTCase.read(job.ct, job.mask, SeriesRule.model_validate(job.series_rule),
                           exclude_portal_vein=config.rliver_exclude_portal_vein)
        errors, qc_warnings = ct_intensity_problems(case.hu, job.ct)
        if errors:
            raise ImageReadError("; ".join(errors))
        tumor, rliver = case.tumor, case.remnant_liver
        check_region(tumor, "Tumor", config.min_tumor_voxels)
        check_region(rliver, "Rliver", config.min_rliver_voxels)
        for region, name in ((tumor, "Tumor"), (rliver, "Rliver")):
            errors, warnings = region_attenuation_problems(case.hu, region, name)
            if errors:
                raise RegionError("; ".join(errors))
            qc_warnings += warnings
        diameter, diameter_source = portal_vein_diameter(case.labels, case.spacing, job.portal_vein_diameter_mm)
        features, notes = morphological_factors(case.hu, case.spacing, tumor, rliver, diameter, config.rates,
                                                config.attenuation_rate)
        pad = crop_pad_voxels(job.radiomics_params, case.spacing, config.pad_sigmas)
        compute = region_radiomics(config.engine, job.radiomics_params, pad)
        # the CT keeps its pixel type (int16 for most CTs): each engine casts the region's crop to float32
        image = case.image
        del case  # the labels are no longer needed: free them before the radiomics
        for name, region in (("Tumor", tumor), ("Rliver", rliver)):
            features.update(compute(image, region, name))
        return {
            "status": "ok",
            "patient_id": job.patient_id,
            "fingerprint": job.fingerprint,
            "features": features,
            "notes": notes | {"PV_max_diameter_mm": diameter_source},
            "qc_warnings": qc_warnings,
            "worker_pid": os.getpid(),
        }
    except Exception as exc:  # every failure is recorded per case; the cohort goes on
        return {
            "status": "failed",
            "patient_id": job.patient_id,
            "fingerprint": job.fingerprint,
            "error_type": type(exc).__name__,
            "error": str(exc),
            "worker_pid": os.getpid(),
        }
