"""Features of one case: regions, morphological factors and PyRadiomics features of Tumor and Rliver."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad.features.config import FeatureConfig, crop_pad_voxels
from hccrad.features.memory import (
    freeze_imported_objects,
    keep_freed_memory_for_reuse,
    single_threaded_blas,
    wants_malloc_settings,
)
from hccrad.features.morphology import (
    attenuation_statistics,
    largest_inscribed_diameter_mm,
    morphological_factors,
)
from hccrad.features.regions import RegionError, check_region, region_attenuation_problems
from hccrad.io.case import CTCase
from hccrad.io.config import SeriesRule
from hccrad.io.images import ImageReadError, ct_intensity_problems
from hccrad.io.mask_sources import MaskSource
from hccrad.io.masks import LABEL_PORTAL_VEIN, enclosed_holes_ml, portal_vein_problems
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
    #: :meth:`hccrad.io.mask_sources.MaskSource.to_dict` of the case's mask; None: ``mask`` is an hccrad label map.
    mask_source: dict[str, Any] | None = None
    #: The manifest's ``masks: portal_vein_max_diameter_mm``.
    portal_vein_max_diameter_mm: float = 25.0

    @property
    def case_id(self) -> str:
        """The name of the case's result file (the patient id)."""
        return self.patient_id

    def source(self) -> MaskSource:
        """The case's mask source."""
        return MaskSource.from_dict(self.mask_source) if self.mask_source else MaskSource(Path(self.mask))


def case_fingerprint(ct: Path, mask: MaskSource | Path, portal_vein_diameter_mm: float | None,
                     radiomics_params: dict, config: dict, version: str) -> str:
    """A key that changes when anything the case's features depend on changes.

    The CT and the mask are hashed by content: every byte of the file, or of each file of a DICOM folder in name
    order, with the names. File names, sizes and modification times are not enough: a restored backup, ``rsync
    -t`` or a PACS re-export keeps them while the voxels change (``bench/fingerprint_bench.py`` measures the cost).
    """
    digest = hashlib.sha256()
    digest.update(repr(sorted(radiomics_params.items(), key=str)).encode())
    digest.update(repr(sorted(config.items())).encode())
    digest.update(f"{portal_vein_diameter_mm}|{version}".encode())
    if isinstance(mask, MaskSource):
        digest.update(repr(sorted(mask.to_dict()["convention"].items())).encode())
        digest.update(repr(sorted(mask.to_dict()["structures"])).encode())
        for path in mask.files:
            update_with_content(digest, path)
    else:
        update_with_content(digest, mask)
    update_with_content(digest, ct)
    return digest.hexdigest()[:32]


def engine_version(engine: str) -> str:
    """hccrad's version plus the feature engines' names and versions: part of every case fingerprint, so a change of
    engine, or of either engine's version, recomputes the features. ``auto`` names both, since PyRadiomics
    computes what the fast engine lacks."""
    from hccrad import __version__

    parts = [__version__]
    if engine in ("hccrad", "auto"):
        from hccrad.features.engine import ENGINE_VERSION

        parts.append(f"hccrad-engine {ENGINE_VERSION}")
    if engine in ("pyradiomics", "auto"):
        import radiomics

        parts.append(f"pyradiomics {radiomics.__version__}")
    return "|".join(parts)


def engine_plan(engine: str, params: dict[str, Any]) -> dict[str, Any]:
    """Which engine computes what: ``{"engine", "hccrad": [...], "pyradiomics": [...], "reason"}`` with the shape
    classes and image types each computes, in the parameter file's order. ``engine: auto`` gives the fast engine
    everything it reproduces and PyRadiomics the rest (the LBP image types); ``hccrad`` and ``pyradiomics``
    compute everything themselves."""
    image_types = list(params.get("imageType") or {"Original": {}})
    shape = [name for name in (params.get("featureClass") or {"shape": None}) if name.startswith("shape")]
    if engine == "pyradiomics":  # without importing the engine, nor numba with it
        return {"engine": engine, "hccrad": [], "pyradiomics": shape + image_types, "reason": "engine: pyradiomics"}
    from hccrad.features.engine import PYRADIOMICS_IMAGE_TYPES

    delegated = [name for name in image_types if engine == "auto" and name in PYRADIOMICS_IMAGE_TYPES]
    return {"engine": engine, "hccrad": shape + [name for name in image_types if name not in delegated],
            "pyradiomics": delegated,
            "reason": ("the fast engine does not implement " + ", ".join(delegated)) if delegated else ""}


def describe_plan(plan: dict[str, Any]) -> str:
    """One line: which engine computes which classes and image types."""
    parts = [f"{name} computes {', '.join(plan[name])}" for name in ("hccrad", "pyradiomics") if plan[name]]
    return f"features engine {plan['engine']}: " + "; ".join(parts) + (f" ({plan['reason']})" if plan["reason"] else "")


def image_type_of(feature_name: str) -> str:
    """The PyRadiomics image type of a feature name (``wavelet-LLH_glcm_Contrast`` -> ``Wavelet``); ``shape`` for
    the shape classes."""
    kind, feature_class = feature_name.split("_", 2)[:2]
    if feature_class.startswith("shape"):
        return "shape"
    prefixes = {"original": "Original", "log-sigma": "LoG", "wavelet": "Wavelet", "gradient": "Gradient",
                "squareroot": "SquareRoot", "square": "Square", "logarithm": "Logarithm",
                "exponential": "Exponential", "lbp-2D": "LBP2D", "lbp-3D": "LBP3D"}
    return next(name for prefix, name in prefixes.items() if kind.startswith(prefix))


def region_radiomics(engine: str, params: dict[str, Any], pad_voxels: int, cast_to_float32: bool = True):
    """A function ``(image, region, prefix) -> features`` computing PyRadiomics' features with ``engine``
    (``auto``, ``hccrad`` or ``pyradiomics``; see :func:`engine_plan`), on the image cast to float32 or, without
    ``cast_to_float32``, as stored. The features come in PyRadiomics' order whichever engine computed them."""
    if engine == "pyradiomics":
        extractor = radiomics_extractor(params, pad_voxels)
        return RegionRadiomics(lambda image, region, prefix: radiomics_features(extractor, image, region, prefix,
                                                                                 cast_to_float32))
    from hccrad.features.engine import check_params, prepare_regions, prepared_features, region_features

    check_params(params, allow_pyradiomics_types=engine == "auto")
    plan = engine_plan(engine, params)
    delegated = plan["pyradiomics"]
    image_types = params.get("imageType") or {"Original": {}}
    classes = params.get("featureClass") or {}
    engine_params = {**params, "imageType": {name: custom for name, custom in image_types.items()
                                             if name not in delegated}}
    all_classes = classes or {name: None for name in ("shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm",
                                                      "gldm", "ngtdm")}
    if delegated and not engine_params["imageType"]:  # the engine computes only the shape classes
        engine_params = {**params, "imageType": {"Original": {}},
                         "featureClass": {name: wanted for name, wanted in all_classes.items()
                                          if name.startswith("shape")}}
    texture_classes = {name: wanted for name, wanted in all_classes.items() if not name.startswith("shape")}
    extractors = []
    for name in delegated if texture_classes else []:
        extractor = radiomics_extractor({**params, "imageType": {name: image_types[name]}}, pad_voxels)
        # PyRadiomics computes the shape classes whatever the image types: the engine already has them
        extractor.enabledFeatures = {key: value for key, value in extractor.enabledFeatures.items()
                                     if not key.startswith("shape")}
        extractors.append(extractor)

    def in_order(ours: dict[str, float], prefix: str) -> dict[str, float]:
        order = {name: k for k, name in enumerate(["shape", *image_types])}
        ordered = sorted(ours.items(), key=lambda item: order[image_type_of(item[0])])  # stable within a type
        return {f"{prefix}_{key}": float(value) for key, value in ordered}

    def compute(image: sitk.Image, region: np.ndarray, prefix: str) -> dict[str, float]:
        ours = region_features(image, region, engine_params, pad_voxels, cast_to_float32)
        for extractor in extractors:
            ours.update(radiomics_features(extractor, image, region, "", cast_to_float32))
        return in_order(ours, prefix)

    if extractors:
        return RegionRadiomics(compute)
    return RegionRadiomics(
        compute, prepare=lambda image, regions: prepare_regions(image, regions, engine_params, pad_voxels,
                                                                cast_to_float32),
        finish=lambda prepared, prefix: in_order(prepared_features(prepared, engine_params), prefix))


class RegionRadiomics:
    """``(image, region, prefix) -> features`` (see :func:`region_radiomics`), in two halves where hccrad's engine
    computes everything: :meth:`prepare` resamples or crops each region (the results hold no reference to the whole
    CT, so the caller can release the CT and the full-size masks before the filters run; where the filters run on
    the whole image, the regions share one float32 copy of it), :meth:`finish` computes one region's features.
    Where PyRadiomics computes some, :meth:`prepare` keeps the image and regions as they are."""

    def __init__(self, compute: Callable[[sitk.Image, np.ndarray, str], dict[str, float]],
                 prepare: Callable[[sitk.Image, list[np.ndarray]], list[Any]] | None = None,
                 finish: Callable[[Any, str], dict[str, float]] | None = None) -> None:
        self._compute = compute
        self._prepare = prepare
        self._finish = finish

    def __call__(self, image: sitk.Image, region: np.ndarray, prefix: str) -> dict[str, float]:
        return self._compute(image, region, prefix)

    def prepare(self, image: sitk.Image, regions: list[np.ndarray]) -> list[Any]:
        if self._prepare is not None:
            return self._prepare(image, regions)
        return [(image, region) for region in regions]

    def finish(self, prepared: Any, prefix: str) -> dict[str, float]:
        if self._finish is not None:
            return self._finish(prepared, prefix)
        return self._compute(*prepared, prefix)


def radiomics_extractor(params: dict[str, Any], pad_voxels: int):
    """A PyRadiomics extractor for ``params`` that crops ``pad_voxels`` around the region before filtering."""
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    params = {key: (dict(value) if isinstance(value, dict) else value) for key, value in params.items()
              if value is not None}
    settings = params.setdefault("setting", {}) or {}
    params["setting"] = settings
    settings["padDistance"] = int(pad_voxels)
    return featureextractor.RadiomicsFeatureExtractor(params)


def radiomics_features(extractor, image: sitk.Image, region: np.ndarray, prefix: str, cast_to_float32: bool = True
                       ) -> dict[str, float]:
    """PyRadiomics features of one region of the image (cast to float32 unless ``cast_to_float32`` is False), named
    ``<prefix>_<imagetype>_<class>_<feature>`` (no prefix when ``prefix`` is empty)."""
    if cast_to_float32 and image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    mask = sitk.GetImageFromArray(region.astype(np.uint8))
    mask.CopyInformation(image)
    raw = extractor.execute(image, mask, label=1)
    join = f"{prefix}_" if prefix else ""
    return {f"{join}{key}": float(value) for key, value in raw.items() if not key.startswith("diagnostics_")}


def portal_vein_diameter(labels: np.ndarray, spacing_zyx: tuple[float, float, float],
                         given_mm: float | None) -> tuple[float | None, str]:
    """Portal-vein diameter (mm) and where it came from: the clinical table, the label-3 mask, or nowhere."""
    if given_mm is not None and math.isfinite(given_mm):
        return float(given_mm), "clinical table"
    portal = labels == LABEL_PORTAL_VEIN
    if portal.any():
        return largest_inscribed_diameter_mm(portal, spacing_zyx), "mask label 3 (2 x max EDT)"
    return None, "missing"


def empty_region_message(case: CTCase, name: str) -> str:
    """Why a region is empty: what the mask held, the convention it was read by, and the likely fix."""
    mapping = case.mask_mapping
    found = "; ".join(mapping.get("found", [])) or "the mask holds no structure"
    message = (f"{name} region is empty: {found}; read by the convention {mapping.get('convention', '?')} "
               "(the manifest's masks: labels)")
    if name == "Tumor":
        holes = enclosed_holes_ml(case.liver | case.portal_vein, case.spacing)
        if holes >= 0.1:
            message += (f". The liver mask encloses a hole of {holes:.1f} mL: a tumor left out of the liver mask? "
                        "Give the tumor its own label, or its own file in the mask_tumor column")
        else:
            message += (". A liver label written over the tumor, or a tumor under another label? Give the tumor its "
                        "own label, or its own file in the mask_tumor column")
    return message


#: A tumor voxel above this (HU) is dense: calcification, lipiodol from an earlier TACE, or metal.
DENSE_HU = 200.0
#: Dense voxels above this share of the tumor are reported with the rate factors they move.
DENSE_SHARE_WARNING = 0.02


def dense_region_warnings(ct: np.ndarray, region: np.ndarray, name: str, rates: tuple[float, float],
                          rate_definition: str) -> list[str]:
    """A warning when more than :data:`DENSE_SHARE_WARNING` of a region lies above :data:`DENSE_HU`, naming the share
    and each HU factor that the dense voxels move (the factor with them and without them)."""
    values = ct[region]
    dense = values > DENSE_HU
    share = float(np.count_nonzero(dense)) / max(1, values.size)
    if share <= DENSE_SHARE_WARNING or dense.all():
        return []
    with_dense = attenuation_statistics(values, name, rates, rate_definition)
    without = attenuation_statistics(values[~dense], name, rates, rate_definition)
    moved = [f"{key} {with_dense[key]:.0f} HU (without them {without[key]:.0f})" for key in with_dense
             if abs(with_dense[key] - without[key]) >= 10.0]
    return [f"{share:.1%} of the {name.lower()} lies above {DENSE_HU:g} HU (calcification, lipiodol from an earlier "
            f"TACE, or metal?): " + ("; ".join(moved) if moved else "no HU factor moves by 10 HU or more")
            + "; check the mask and the history"]


def compute_case(job: CaseJob, progress: Callable[[str], None] | None = None, reuse_freed_memory: bool = True
                 ) -> dict[str, Any]:
    """Compute one case; never raises: a failure comes back as ``{"status": "failed", "error": ...}``.

    ``progress`` (optional) is called with each stage as it starts: ``reading``, ``checking``, ``features``.
    ``reuse_freed_memory``: a large case takes :data:`hccrad.features.memory.MALLOC_SETTINGS` for the rest of the
    process (the features stage's processes), the objects imported so far leave the garbage collector's reach
    (:func:`~hccrad.features.memory.freeze_imported_objects`) and BLAS runs on one thread
    (:func:`~hccrad.features.memory.single_threaded_blas`); False in a long-running process such as the web app,
    whose freed memory should go back to the system.
    """
    try:
        if reuse_freed_memory:
            freeze_imported_objects()
            single_threaded_blas()
        config = FeatureConfig.model_validate(job.config)
        if progress is not None:
            progress("reading")
        # the holder is the only reference to the case, so that its CT and masks can be released early
        holder = {"case": CTCase.read(job.ct, job.source(), SeriesRule.model_validate(job.series_rule),
                                      exclude_portal_vein=config.rliver_exclude_portal_vein)}
        if reuse_freed_memory and wants_malloc_settings(config.engine, holder["case"].labels.size):
            keep_freed_memory_for_reuse()
        return _held_case_features(job, holder, progress)
    except Exception as exc:  # every failure is recorded per case; the cohort goes on
        return failed_case(job, exc)


def failed_case(job: CaseJob, exc: BaseException) -> dict[str, Any]:
    """A case's failure as its result record."""
    return {"status": "failed", "patient_id": job.patient_id, "fingerprint": job.fingerprint,
            "error_type": type(exc).__name__, "error": str(exc), "worker_pid": os.getpid()}


#: The share of the tumor volume the paper's largest-lesion rule may leave out before hccrad warns.
MULTIFOCAL_DROPPED_SHARE = 0.2


def multifocal_warnings(all_tumor: np.ndarray, kept: np.ndarray) -> list[str]:
    """A QC warning when the paper's rule (the tumor is the largest 26-connected label-2 component) leaves out more
    than :data:`MULTIFOCAL_DROPPED_SHARE` of the tumor volume: "multifocal: the largest of N lesions holds X% of the
    tumor volume"."""
    from hccrad.io.masks import bounding_box, connected_components

    total = int(np.count_nonzero(all_tumor))
    if not total or np.count_nonzero(kept) >= (1 - MULTIFOCAL_DROPPED_SHARE) * total:
        return []
    _, sizes = connected_components(all_tumor[bounding_box(all_tumor)])  # the lesions' box: not a CT-sized label map
    return [f"multifocal: the largest of {len(sizes)} lesions holds {100 * np.count_nonzero(kept) / total:.0f}% of "
            "the tumor volume; the paper's rule keeps only it, so the other lesions are not in the tumor features"]


def case_features(job: CaseJob, case: CTCase, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Everything after reading: the checks, the regions, the morphological factors and both regions' radiomics
    of a case in memory (the study's case, or a perturbed copy of it); raises on what the checks refuse."""
    return _held_case_features(job, {"case": case}, progress)


def _held_case_features(job: CaseJob, holder: dict[str, CTCase], progress: Callable[[str], None] | None = None
                        ) -> dict[str, Any]:
    """:func:`case_features` of ``holder["case"]``; the holder is emptied once both regions are resampled or
    cropped (with hccrad's engine), so that the whole CT, the labels and the full-size masks are freed before the
    filters run, if no one else holds the case."""
    def stage(name: str) -> None:
        if progress is not None:
            progress(name)

    case = holder["case"]
    config = FeatureConfig.model_validate(job.config)
    stage("checking")
    errors, qc_warnings = ct_intensity_problems(case.hu, job.ct)
    if errors:
        raise ImageReadError("; ".join(errors))
    qc_warnings += case.mask_mapping.get("warnings", [])
    tumor, rliver = case.tumor, case.remnant_liver
    for region, name in ((tumor, "Tumor"), (rliver, "Rliver")):
        if not region.any():
            raise RegionError(empty_region_message(case, name))
    check_region(tumor, "Tumor", config.min_tumor_voxels)
    check_region(rliver, "Rliver", config.min_rliver_voxels)
    errors = portal_vein_problems(case.labels, case.spacing, job.portal_vein_max_diameter_mm,
                                  case.mask_mapping.get("convention", "liver [1], tumor [2], portal vein [3]"))
    if errors:
        raise RegionError("; ".join(errors))
    for region, name in ((tumor, "Tumor"), (rliver, "Rliver")):
        errors, warnings = region_attenuation_problems(case.hu, region, name)
        if errors:
            raise RegionError("; ".join(errors))
        qc_warnings += warnings
    qc_warnings += dense_region_warnings(case.hu, tumor, "Tumor", config.rates, config.attenuation_rate)
    qc_warnings += multifocal_warnings(case.any_tumor, tumor)
    mask_mapping = case.mask_mapping
    diameter, diameter_source = portal_vein_diameter(case.labels, case.spacing, job.portal_vein_diameter_mm)
    features, notes = morphological_factors(case.hu, case.spacing, tumor, rliver, diameter, config.rates,
                                            config.attenuation_rate)
    stage("features")
    pad = crop_pad_voxels(job.radiomics_params, case.spacing, config.pad_sigmas)
    compute = region_radiomics(config.engine, job.radiomics_params, pad, config.cast_to_float32)
    # the CT keeps its pixel type (int16 for most CTs); with cast_to_float32 each engine casts it to float32 (the
    # fast engine only the region's crop)
    image = case.image
    del case  # the labels are no longer needed: free them (if no one else holds the case) before the radiomics
    holder.clear()
    prepared = list(zip(("Tumor", "Rliver"), compute.prepare(image, [tumor, rliver]), strict=True))
    # the prepared crops are all the radiomics need (hccrad's engine): free the CT and the full-size masks
    del image, tumor, rliver
    while prepared:
        name, handle = prepared.pop(0)
        features.update(compute.finish(handle, name))
        del handle
    return {
        "status": "ok",
        "patient_id": job.patient_id,
        "fingerprint": job.fingerprint,
        "features": features,
        "notes": notes | {"PV_max_diameter_mm": diameter_source},
        "qc_warnings": qc_warnings,
        "mask_mapping": mask_mapping,
        "worker_pid": os.getpid(),
    }
