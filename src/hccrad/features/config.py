"""Settings of the features stage (the ``features:`` section of the study YAML)."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from hccrad.io.errors import InputError

PARAMS_DIR = resources.files("hccrad.features") / "params"


class ParameterFileError(InputError, ValueError):
    """A PyRadiomics parameter file that PyRadiomics would refuse, or that hccrad cannot honour as written."""


#: Parameter sets (as canonical JSON) that PyRadiomics' schema accepted in this process.
_SCHEMA_VALID: set[str] = set()


def check_radiomics_params(params: Any, source: str) -> dict[str, Any]:
    """``params`` if PyRadiomics accepts them and hccrad honours them, else a :class:`ParameterFileError` naming
    ``source`` (the file).

    * PyRadiomics' own schema (``paramSchema.yaml`` with pykwalify, as ``RadiomicsFeatureExtractor`` validates a
      file): types, ranges (a LoG ``sigma`` must be > 0), unknown keys; its message is quoted.
    * ``label`` other than 1: hccrad builds each region (Tumor, Rliver) from the study's label map and hands it
      to the extractor as label 1, so a ``label`` in the parameter file would select nothing.
    """
    import logging

    import pykwalify.core
    from radiomics.featureextractor import getParameterValidationFiles

    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ParameterFileError(f"PyRadiomics parameter file {source}: expected a mapping of imageType, "
                                 f"featureClass and setting, found {type(params).__name__}")
    canonical = json.dumps(params, sort_keys=True, default=str)
    if canonical not in _SCHEMA_VALID:  # a parameter set validated once per process (each run reads it thrice)
        schema, functions = getParameterValidationFiles()
        pykwalify_log = logging.getLogger("pykwalify")
        level = pykwalify_log.level
        pykwalify_log.setLevel(logging.CRITICAL)  # its message is raised below, not logged twice
        try:
            pykwalify.core.Core(source_data=params, schema_files=[schema], extensions=[functions]).validate()
        except Exception as exc:  # pykwalify's SchemaError and CoreError
            message = " ".join(str(exc).split()).removeprefix("<SchemaError: ").removesuffix(": Path: '/'>")
            raise ParameterFileError(f"PyRadiomics parameter file {source} is not valid for PyRadiomics: "
                                     f"{message}") from exc
        finally:
            pykwalify_log.setLevel(level)
        _SCHEMA_VALID.add(canonical)
    if "LBP3D" in (params.get("imageType") or {}):
        problem = lbp3d_unavailable()
        if problem:
            raise ParameterFileError(f"PyRadiomics parameter file {source}: image type LBP3D cannot be computed in "
                                     f"this installation ({problem}); PyRadiomics would skip it without a word. "
                                     "Remove LBP3D from imageType")
    label = (params.get("setting") or {}).get("label", 1)
    if label != 1:
        raise ParameterFileError(
            f"PyRadiomics parameter file {source}: setting 'label: {label}' cannot apply in a study: hccrad builds "
            "each region (Tumor, Rliver) from the study's label map (liver 1, tumor 2, portal vein 3) and passes "
            "it to the extractor as label 1; remove 'label' from the file")
    return params


def lbp3d_unavailable() -> str:
    """Why PyRadiomics' LBP3D filter cannot run here ('' when it can): it needs trimesh and scipy's ``sph_harm``,
    which SciPy 1.17 removed; without them PyRadiomics logs a warning and yields no LBP3D image."""
    missing = []
    try:
        from scipy.special import sph_harm  # noqa: F401
    except ImportError:
        import scipy

        missing.append(f"scipy.special.sph_harm, removed in the installed SciPy {scipy.__version__}")
    try:
        import trimesh  # noqa: F401
    except ImportError:
        missing.append("the trimesh package")
    return "it needs " + " and ".join(missing) if missing else ""


class RobustnessConfig(BaseModel):
    """Feature robustness by perturbation (the ``features: {robustness: ...}`` section; see docs/features.md,
    "Robustness"). Present means on: ``hccrad run`` and ``hccrad robustness`` compute it, and ``min_icc`` filters
    the selection.

    Attributes
    ----------
    perturbations
        Perturbed copies of each patient (the ICC's raters).
    kinds
        What each perturbation changes (:mod:`hccrad.features.perturb`): ``rotation``, ``translation``,
        ``volume``, ``contour``, ``noise``; every enabled kind is drawn anew for each perturbation.
    patients
        How many training patients (a seeded random subset, all when fewer); the ICC's targets.
    icc
        The ICC form that ``min_icc`` reads (all six are written).
    min_icc
        Features of a lower ICC (or with no ICC: constant across every perturbation and patient) are left out of
        the selection, before the univariate screen; ``null`` computes the table without filtering.
    rotation_deg, translation_voxels, volume_fraction, contour_mm
        The largest rotation about z (degrees), shift per axis (voxels), volume change (fraction) and the boundary
        displacement's SD (mm; default: the CT's finest voxel spacing).
    seed
        Seed of the patients' subset and of every perturbation.
    """

    model_config = ConfigDict(extra="forbid")

    perturbations: int = Field(default=10, ge=2)
    kinds: tuple[Literal["rotation", "translation", "volume", "contour", "noise"], ...] = (
        "rotation", "translation", "volume", "contour", "noise")
    patients: int = Field(default=30, ge=3)
    icc: Literal["ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"] = "ICC1"
    min_icc: float | None = Field(default=0.75, ge=0.0, le=1.0)
    rotation_deg: float = Field(default=10.0, ge=0.0, le=45.0)
    translation_voxels: float = Field(default=0.5, ge=0.0, le=5.0)
    volume_fraction: float = Field(default=0.10, ge=0.0, lt=1.0)
    contour_mm: float | None = Field(default=None, ge=0.0)
    seed: int = 20241205


class FeatureConfig(BaseModel):
    """How features are computed; every default is the paper's choice.

    Attributes
    ----------
    params
        PyRadiomics parameter file: ``paper`` (shipped, resampled to 0.647 x 0.647 x 1.5 mm), ``demo``
        (shipped, native grid) or the path of a user YAML (relative to the study YAML).
    min_tumor_voxels
        Cases whose largest tumor component has fewer voxels fail with a clear error.
    min_rliver_voxels
        Cases whose remnant liver has fewer voxels fail with a clear error.
    rliver_exclude_portal_vein
        Remove the intrahepatic portal vein (label 3) from the remnant liver (default: keep it, as the
        paper's liver label included its vessels).
    attenuation_rate
        Definition of "CT attenuation at a rate of q": ``robust_range`` (default) is p1 + q (p99 - p1) of the
        region's HU, with its 1st and 99th percentiles; ``range`` uses the minimum and maximum, which single
        stray voxels set.
    pad_sigmas
        Crop margin around each region before filtering, in multiples of the largest LoG sigma.
    engine
        Which code computes the PyRadiomics features: ``auto`` (default: hccrad's engine computes everything it
        reproduces, PyRadiomics' values to within 1e-6 with about a twelfth of the CPU; PyRadiomics computes the
        rest, the LBP image types, in the same run), ``hccrad`` (the engine alone; a parameter file that needs
        PyRadiomics is refused) or ``pyradiomics`` (the reference, for everything).
    cast_to_float32
        Give both engines the CT cast to float32 (default; integer HU are exact in float32, and a B-spline resampled
        image keeps its fractions), or, with ``false``, the CT as stored, as PyRadiomics is given an image read from
        disk: an integer CT then stays integer through resampling, as in PyRadiomics' own baselines.
    memory_per_case_gb
        Memory one case may take (default 1.5 GB with the hccrad engine, whose paper-sized cases peak at
        0.8-1.0 GB; 3.5 GB with PyRadiomics, 2.7-3.4 GB); the local cluster starts no more workers than the free
        memory allows.
    robustness
        Feature robustness by perturbation (:class:`RobustnessConfig`); absent: off.
    """

    model_config = ConfigDict(extra="forbid")

    params: str = "paper"
    min_tumor_voxels: int = Field(default=27, ge=1)
    min_rliver_voxels: int = Field(default=27, ge=1)
    rliver_exclude_portal_vein: bool = False
    attenuation_rate: Literal["range", "robust_range"] = "robust_range"
    rates: tuple[float, float] = (0.25, 0.75)
    pad_sigmas: float = Field(default=5.0, ge=0)
    engine: Literal["auto", "hccrad", "pyradiomics"] = "auto"
    cast_to_float32: bool = True
    memory_per_case_gb: float | None = Field(default=None, gt=0)
    n_workers: int | None = None
    robustness: RobustnessConfig | None = None

    def memory_per_case(self) -> float:
        """GB of memory one case may take: the setting, else the engine's measured peak with some margin."""
        if self.memory_per_case_gb is not None:
            return self.memory_per_case_gb
        return 3.5 if self.engine == "pyradiomics" else 1.5

    def params_path(self, base_dir: Path | None = None) -> Path:
        """The PyRadiomics parameter file: a shipped one (``paper``, ``demo``) or a user path read relative to
            ``base_dir``; raises FileNotFoundError naming it when absent."""
        if self.params in ("paper", "demo"):
            return Path(str(PARAMS_DIR / f"{self.params}.yaml"))
        path = Path(self.params).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"PyRadiomics parameter file not found: {path}")
        return path

    def radiomics_params(self, base_dir: Path | None = None) -> dict[str, Any]:
        """The PyRadiomics parameters as a dict (the YAML, read safely), checked by
        :func:`check_radiomics_params`."""
        path = self.params_path(base_dir)
        try:
            params = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ParameterFileError(f"PyRadiomics parameter file {path} is not valid YAML: "
                                     f"{' '.join(str(exc).split())}") from exc
        return check_radiomics_params(params, str(path))


def largest_sigma_mm(params: dict[str, Any]) -> float:
    """The largest LoG sigma of a parameter set (0 when LoG is not used)."""
    log = (params.get("imageType") or {}).get("LoG") or {}
    sigmas = log.get("sigma") or (params.get("setting") or {}).get("sigma") or []
    return float(max(sigmas)) if sigmas else 0.0


def crop_pad_voxels(params: dict[str, Any], spacing_mm: tuple[float, ...], pad_sigmas: float) -> int:
    """Voxels of margin around a region before filtering: the parameter file's ``padDistance`` when it gives one;
    else ``pad_sigmas`` x largest sigma over the finest spacing (of the resampled grid when resampling), at least 5
    (wavelet support, PyRadiomics' default)."""
    given = (params.get("setting") or {}).get("padDistance")
    if given is not None:
        return int(given)
    resampled = (params.get("setting") or {}).get("resampledPixelSpacing")
    finest = min(float(s) for s in resampled if s) if resampled and any(resampled) else min(spacing_mm)
    return max(5, math.ceil(pad_sigmas * largest_sigma_mm(params) / finest) + 2)


#: The FeatureConfig fields that change feature values (the others only schedule the work).
VALUE_SETTINGS = ("min_tumor_voxels", "min_rliver_voxels", "rliver_exclude_portal_vein", "attenuation_rate", "rates",
                  "pad_sigmas", "engine", "cast_to_float32")


def feature_settings_record(config: FeatureConfig, radiomics_params: dict[str, Any], series_rule: dict[str, Any],
                            engine_version: str) -> dict[str, Any]:
    """What a model artifact records of the features it was fitted on, so that a new patient's features are
    computed the same way: the engine and its version, the PyRadiomics parameters (and their SHA-256 over
    canonical JSON), the value-changing settings and the DICOM series rule."""
    import hashlib
    import json

    canonical = json.dumps(radiomics_params, sort_keys=True, separators=(",", ":"), default=str)
    values = config.model_dump(mode="json")
    return {"engine": config.engine, "engine_version": engine_version, "radiomics_params": radiomics_params,
            "radiomics_params_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
            "settings": {name: values[name] for name in VALUE_SETTINGS},
            "series_rule": series_rule}
