"""`hccrad robustness`: which features survive a slightly different segmentation or scan.

For a seeded subset of the training patients, each case is perturbed ``perturbations`` times
(:mod:`hccrad.features.perturb`) and every perturbed case goes through the features stage's own code, everything
after reading (:func:`hccrad.features.extract.case_features`), with the study's settings. Per feature, the
patients are the ICC's targets and the perturbations its raters (:func:`hccrad.features.icc.icc_table`).

Output (``<output_dir>/features``)::

    robustness/<id>.p<k>.json   one file per perturbed case, written atomically, with its fingerprint
    robustness_values.parquet   every perturbed case's features (patient_id, perturbation, features...)
    robustness.csv              per feature: region, image type, class, the six ICCs with 95% intervals,
                                patients, perturbations, and whether it passes min_icc
    robustness/run.json         what this run computed, reused and failed, and the settings

Resumable like the features stage: a perturbed case whose fingerprint (the case's inputs, the settings, the
perturbation's draw) is unchanged is reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hccrad.features.config import VALUE_SETTINGS, FeatureConfig
from hccrad.features.extract import CaseJob, case_fingerprint, engine_version
from hccrad.features.icc import FORMS, icc_table
from hccrad.features.perturb import PerturbationDraw, draw, noise_level_hu, perturb, perturbation_seed
from hccrad.io.errors import InputError
from hccrad.io.files import ensure_writable_dir, write_atomic
from hccrad.io.ids import case_path
from hccrad.io.manifest import Study

#: Margin (mm) kept above and below the whole liver when a case's slices are cut out for perturbing: more than the
#: perturbations' box needs (:func:`box_margin_mm`, 27 mm in the paper's settings). The axial plane is kept whole
#: (its air keeps the CT recognisable as one).
CROP_MARGIN_MM = 40.0


class RobustnessError(InputError):
    """The robustness analysis cannot run (no feature table, too few training patients with features)."""


@dataclass(frozen=True)
class PerturbedJob:
    """One perturbed case: the case's inputs (as :class:`CaseJob`), the perturbation's number and its draws."""
    case: CaseJob
    number: int
    draw: dict[str, Any]

    @property
    def patient_id(self) -> str:
        return self.case.patient_id

    @property
    def case_id(self) -> str:
        return f"{self.case.patient_id}.p{self.number:02d}"

    @property
    def fingerprint(self) -> str:
        return self.case.fingerprint


def robustness_patients(table: pd.DataFrame, count: int, seed: int) -> list[str]:
    """The training patients with features (sorted ids), or a seeded random ``count`` of them."""
    training = sorted(str(i) for i in table.index[table["dataset"] == "training"])
    if len(training) <= count:
        return training
    chosen = np.random.default_rng(seed).choice(len(training), size=count, replace=False)
    return sorted(training[k] for k in chosen)


def build_jobs(study: Study, config: FeatureConfig, patients: list[str]) -> list[PerturbedJob]:
    """Every perturbation of every chosen patient, with fingerprints."""
    robustness = config.robustness
    params = config.radiomics_params(study.config.base_dir)
    settings = config.model_dump(mode="json")
    values = {name: settings[name] for name in VALUE_SETTINGS}
    rule = study.config.dicom_series.model_dump()
    version = engine_version(config.engine)
    max_diameter = study.config.masks.portal_vein_max_diameter_mm
    records = {record.patient_id: record for record in study.patients}
    jobs = []
    for patient_id in patients:
        record = records.get(patient_id)
        if record is None or record.ct is None or not record.has_mask:
            continue
        source = record.mask_source
        base = case_fingerprint(record.ct, source, record.portal_vein_diameter_mm, params,
                                values | {"portal_vein_max_diameter_mm": max_diameter}, version)
        for number in range(1, robustness.perturbations + 1):
            plan = draw(robustness.kinds, perturbation_seed(robustness.seed, patient_id, number),
                        robustness.rotation_deg, robustness.translation_voxels, robustness.volume_fraction,
                        robustness.contour_mm if robustness.contour_mm is not None else -1.0)
            fingerprint = hashlib.sha256(f"{base}|{json.dumps(plan.to_dict(), sort_keys=True)}".encode()
                                         ).hexdigest()[:32]
            case = CaseJob(patient_id, str(record.ct), str(record.mask or ""), record.portal_vein_diameter_mm,
                           params, settings, rule, fingerprint, source.to_dict(), max_diameter)
            jobs.append(PerturbedJob(case, number, plan.to_dict()))
    return jobs


#: The cases a worker process read last, by their inputs (at most :data:`CASES_KEPT`, the newest last): the
#: perturbations of one patient are submitted one after the other, so a worker reads (and decompresses) each CT
#: about once rather than once per perturbation, even when the scheduler hands it a neighbour's task.
_CASES: dict[str, dict[str, Any]] = {}
CASES_KEPT = 2


def _worker_case(job: PerturbedJob) -> dict[str, Any]:
    """``{"case": CTCase, "noise": {...}}`` for the job's inputs, read once per worker while it stays recent."""
    from hccrad.io.case import CTCase
    from hccrad.io.config import SeriesRule

    config = FeatureConfig.model_validate(job.case.config)
    key = json.dumps([job.case.ct, job.case.mask_source, job.case.series_rule, config.rliver_exclude_portal_vein],
                     sort_keys=True, default=str)
    entry = _CASES.pop(key, None)
    if entry is None:
        while len(_CASES) >= CASES_KEPT:
            _CASES.pop(next(iter(_CASES)))
        entry = {"case": CTCase.read(job.case.ct, job.case.source(), SeriesRule.model_validate(job.case.series_rule),
                                     exclude_portal_vein=config.rliver_exclude_portal_vein)}
    _CASES[key] = entry  # the newest last
    return entry


def _case_noise(entry: dict[str, Any], image, labels: np.ndarray) -> float:
    """The CT's noise level in the liver parenchyma, once per case read (kept beside the case)."""
    import SimpleITK as sitk

    from hccrad.io.masks import LABEL_LIVER

    if "noise" not in entry:
        entry["noise"] = noise_level_hu(sitk.GetArrayViewFromImage(image), labels == LABEL_LIVER)
    return entry["noise"]


def compute_perturbed(job: PerturbedJob) -> dict[str, Any]:
    """One perturbed case through the features stage's own code (:func:`hccrad.features.extract.case_features`:
    the checks, regions, morphological factors and radiomics of the study's cases); never raises (a failure is
    returned)."""

    from hccrad.features.extract import case_features, failed_case
    from hccrad.io.case import CTCase
    from hccrad.io.masks import bounding_box

    try:
        config = FeatureConfig.model_validate(job.case.config)
        entry = _worker_case(job)
        case = entry["case"]
        box = bounding_box(case.labels > 0)
        if box is None:
            raise ValueError("the mask holds no liver")
        margin = int(np.ceil(CROP_MARGIN_MM / case.spacing[0]))
        first, last = max(0, box[0].start - margin), min(case.labels.shape[0], box[0].stop + margin)
        image = case.image[:, :, first:last]
        labels = np.ascontiguousarray(case.labels[first:last])
        plan = PerturbationDraw(**{**job.draw, "shift_voxels": tuple(job.draw["shift_voxels"])})
        if plan.contour_mm < 0:  # "one voxel": the finest spacing of this CT
            plan = PerturbationDraw(**{**plan.__dict__, "contour_mm": float(min(case.spacing))})
        noise = _case_noise(entry, image, labels) if plan.noise else 0.0
        perturbed, perturbed_labels = perturb(image, labels, plan, noise, box_margin_mm(job, case.spacing))
        copy = CTCase(perturbed, perturbed_labels, config.rliver_exclude_portal_vein,
                      {**case.mask_mapping, "warnings": []})
        inner = CaseJob(job.patient_id, f"{job.case.ct} (perturbation {job.number})", job.case.mask,
                        job.case.portal_vein_diameter_mm, job.case.radiomics_params, job.case.config,
                        job.case.series_rule, job.fingerprint, None, job.case.portal_vein_max_diameter_mm)
        result = case_features(inner, copy)
        result.update({"perturbation": job.number, "draw": {**plan.to_dict(), "noise_sd_hu": noise}})
        return result
    except Exception as exc:  # recorded per perturbed case; the others go on
        return {**failed_case(job.case, exc), "perturbation": job.number}


def box_margin_mm(job: PerturbedJob, spacing_zyx: tuple[float, float, float]) -> float:
    """The margin of the perturbations' box around the liver: the features' crop pad around a region (mm, on the
    finest grid the features use), plus 10 mm for the B-spline prefilter's reach beyond it."""
    from hccrad.features.config import crop_pad_voxels

    config = FeatureConfig.model_validate(job.case.config)
    resampled = (job.case.radiomics_params.get("setting") or {}).get("resampledPixelSpacing")
    finest = min(float(s) for s in resampled if s) if resampled and any(resampled) else min(spacing_zyx)
    return crop_pad_voxels(job.case.radiomics_params, spacing_zyx, config.pad_sigmas) * finest + 10.0


@dataclass
class RobustnessRun:
    """What a robustness run produced: the ICC table, the perturbed values and the failures."""
    table: pd.DataFrame
    values: pd.DataFrame
    failures: list[dict[str, Any]]
    computed: list[str]
    reused: list[str]
    patients: list[str]


def feature_kind(name: str) -> tuple[str, str, str]:
    """(region, image type, class) of a feature column; morphological factors are ``morphological``."""
    parts = name.split("_", 3)
    if len(parts) == 4 and parts[0] in ("Tumor", "Rliver") and parts[2] in (
            "shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"):
        return parts[0], parts[1], parts[2]
    region = "Tumor" if name.startswith("Tumor") else "Rliver" if name.startswith(("Rliver", "PV")) else "-"
    return region, "-", "morphological"


def robustness_table(values: pd.DataFrame, min_icc: float | None, form: str) -> pd.DataFrame:
    """Per feature the six ICCs over the patients (targets) whose every perturbation (raters) has features."""
    features = [c for c in values.columns if c not in ("patient_id", "perturbation")]
    wide = values.set_index(["patient_id", "perturbation"])[features].astype(float)
    perturbations = sorted(values["perturbation"].unique())
    complete = [p for p, rows in wide.groupby(level=0) if len(rows) == len(perturbations)]
    cube = np.stack([wide.xs(p, level=0).reindex(perturbations).to_numpy(float).T for p in complete], axis=1)
    usable = np.isfinite(cube).all(axis=(1, 2))
    stats = pd.DataFrame(np.nan, index=features, columns=icc_table(np.zeros((1, 2, 2)) + 1.0).columns)
    if usable.any() and len(complete) >= 2:
        stats.loc[np.array(features)[usable]] = icc_table(cube[usable]).to_numpy()
    kinds = pd.DataFrame([feature_kind(f) for f in features], index=features,
                         columns=["region", "image_type", "feature_class"])
    table = kinds.join(stats)
    table.insert(0, "feature", features)
    table["n_patients"] = len(complete)
    table["n_perturbations"] = len(perturbations)
    table["icc_form"] = form
    table["passes"] = (table[form] >= min_icc) if min_icc is not None else True
    return table.reset_index(drop=True)


def extract_robustness(study: Study, table: pd.DataFrame, scheduler: str | None = None,
                       config: FeatureConfig | None = None, progress: Callable[[int, int], None] | None = None
                       ) -> RobustnessRun:
    """Perturb, compute and summarise; see the module docstring. ``table`` is the study's feature table (its
    training patients with features are the candidates)."""
    from hccrad.features.cohort import _read_case, run_jobs

    config = config or FeatureConfig.model_validate(study.config.features)
    if config.robustness is None:
        raise RobustnessError("robustness is off: add features: {robustness: {...}} to the manifest")
    robustness = config.robustness
    paths = study.config.layout
    patients = robustness_patients(table, robustness.patients, robustness.seed)
    if len(patients) < 3:
        raise RobustnessError(f"robustness needs at least 3 training patients with features; the feature table "
                              f"has {len(patients)}")
    cases_dir = ensure_writable_dir(paths.robustness_dir)
    jobs = build_jobs(study, config, patients)
    pending, reused = [], []
    for job in jobs:
        cached = _read_case(case_path(cases_dir, job.case_id, ".json"))
        (reused if cached is not None and cached.get("fingerprint") == job.fingerprint else pending).append(job)
    counter = {"done": 0}

    def report(_result: dict[str, Any]) -> None:
        counter["done"] += 1
        if progress:
            progress(counter["done"], len(pending))

    if pending and not scheduler:
        from hccrad.features.perturb import warm_kernels

        warm_kernels()  # compiled once here (first run after an install), loaded from numba's cache by the workers
    computed = run_jobs(pending, cases_dir, scheduler, config, report, worker=compute_perturbed)
    rows, failures = [], []
    for job in jobs:
        result = _read_case(case_path(cases_dir, job.case_id, ".json"))
        if result is None or result.get("fingerprint") != job.fingerprint:
            failures.append({"patient_id": job.patient_id, "perturbation": job.number, "error_type": "NotComputed",
                             "error": "no current result (interrupted run?): run the command again"})
        elif result["status"] != "ok":
            failures.append({key: result.get(key) for key in ("patient_id", "perturbation", "error_type", "error")})
        else:
            rows.append({"patient_id": job.patient_id, "perturbation": job.number, **result["features"]})
    values = pd.DataFrame(rows)
    if values.empty or values["patient_id"].nunique() < 2:
        raise RobustnessError(f"robustness: fewer than 2 patients have every perturbation computed "
                              f"({len(failures)} perturbed cases failed; the first: "
                              f"{failures[0]['error'] if failures else '-'})")
    summary = robustness_table(values, robustness.min_icc, robustness.icc)
    write_atomic(paths.robustness_values, values.to_parquet(index=False))
    write_atomic(paths.robustness_table, summary.to_csv(index=False))
    write_atomic(paths.robustness_dir / "run.json", json.dumps({
        "computed": computed, "reused": [job.case_id for job in reused], "failed": failures,
        "patients": patients, "settings": robustness.model_dump(mode="json"), "forms": list(FORMS)}, indent=2))
    return RobustnessRun(summary, values, failures, computed, [job.case_id for job in reused], patients)


def load_robustness(study: Study) -> pd.DataFrame | None:
    """The study's robustness table when the manifest turns robustness on and the table exists, else None."""
    config = FeatureConfig.model_validate(study.config.features)
    path = study.config.layout.robustness_table
    if config.robustness is None or not path.is_file():
        return None
    return pd.read_csv(path)


__all__ = ["RobustnessError", "RobustnessRun", "extract_robustness", "load_robustness", "robustness_table"]
