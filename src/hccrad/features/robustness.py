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

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hccrad.features.cohort import StudyJobSettings, case_job, read_case, run_jobs
from hccrad.features.config import FeatureConfig
from hccrad.features.extract import CaseJob
from hccrad.features.icc import FORMS, icc_table
from hccrad.features.perturb import PerturbationDraw, draw, noise_level_hu, perturb, perturbation_seed
from hccrad.io.errors import InputError
from hccrad.io.files import ensure_writable_dir, write_atomic
from hccrad.io.ids import case_path
from hccrad.io.manifest import Study, use_predicted_masks
from hccrad.io.provenance import file_sha256


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


def build_jobs(study: Study, config: FeatureConfig, patients: list[str], shared: StudyJobSettings | None = None
               ) -> list[PerturbedJob]:
    """Every perturbation of every chosen patient (its mask from the manifest or, as in the features stage, the
    segmentation stage's prediction), each fingerprinted by its case's job and its draws."""
    robustness = config.robustness
    use_predicted_masks(study)
    shared = shared or StudyJobSettings.of(study, config)
    records = {record.patient_id: record for record in study.patients}
    jobs = []
    for patient_id in patients:
        record = records.get(patient_id)
        if record is None or record.ct is None or not record.has_mask:
            continue
        case = case_job(record, shared)
        for number in range(1, robustness.perturbations + 1):
            plan = draw(robustness.kinds, perturbation_seed(robustness.seed, patient_id, number),
                        robustness.rotation_deg, robustness.translation_voxels, robustness.volume_fraction,
                        robustness.contour_mm if robustness.contour_mm is not None else -1.0)
            fingerprint = hashlib.sha256(f"{case.fingerprint}|{json.dumps(plan.to_dict(), sort_keys=True)}".encode()
                                         ).hexdigest()[:32]
            jobs.append(PerturbedJob(dataclasses.replace(case, fingerprint=fingerprint), number, plan.to_dict()))
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
        plan = PerturbationDraw(**{**job.draw, "shift_voxels": tuple(job.draw["shift_voxels"])})
        margin_mm = box_margin_mm(job, case.spacing)
        # the liver's slices cut out, with every slice the features' crops and the shifted B-spline read (the axial
        # plane kept whole: its air keeps the CT recognisable as one)
        margin = int(np.ceil(margin_mm / case.spacing[0] + abs(plan.shift_voxels[0]))) + 4
        first, last = max(0, box[0].start - margin), min(case.labels.shape[0], box[0].stop + margin)
        image = case.image[:, :, first:last]
        labels = np.ascontiguousarray(case.labels[first:last])
        if plan.contour_mm < 0:  # "one voxel": the finest spacing of this CT
            plan = PerturbationDraw(**{**plan.__dict__, "contour_mm": float(min(case.spacing))})
        noise = _case_noise(entry, image, labels) if plan.noise else 0.0
        perturbed, perturbed_labels = perturb(image, labels, plan, noise, margin_mm)
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
    shared = StudyJobSettings.of(study, config)
    jobs = build_jobs(study, config, patients, shared)
    pending, reused = [], []
    for job in jobs:
        cached = read_case(case_path(cases_dir, job.case_id, ".json"))
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
        result = read_case(case_path(cases_dir, job.case_id, ".json"))
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
    table_text = summary.to_csv(index=False)
    write_atomic(paths.robustness_values, values.to_parquet(index=False))
    write_atomic(paths.robustness_table, table_text)
    write_atomic(paths.robustness_dir / "run.json", json.dumps({
        "computed": computed, "reused": [job.case_id for job in reused], "failed": failures,
        "patients": patients, "settings": robustness.model_dump(mode="json"), "forms": list(FORMS),
        "feature_settings_sha256": shared.digest(),
        "table_sha256": hashlib.sha256(table_text.encode()).hexdigest()}, indent=2))
    return RobustnessRun(summary, values, failures, computed, [job.case_id for job in reused], patients)


#: The robustness settings that only read the table (which ICC form, which threshold): changing them recomputes
#: nothing.
READ_ONLY_SETTINGS = ("icc", "min_icc")


def stale_robustness(study: Study, table: pd.DataFrame) -> str | None:
    """Why the study's robustness table is not the one its manifest and feature table ask for, or None when it is:
    the run's record (``robustness/run.json``) missing or unreadable, the table not the one that run wrote (edited
    or swapped), the perturbations' settings or the features' settings changed since, or other training patients
    chosen from the feature ``table``."""
    config = FeatureConfig.model_validate(study.config.features)
    paths = study.config.layout
    record_path = paths.robustness_dir / "run.json"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return f"its run record {record_path} is missing or unreadable"
    if record.get("table_sha256") != file_sha256(paths.robustness_table):
        return f"{paths.robustness_table} is not the table that run wrote (edited or replaced since)"
    current = {k: v for k, v in config.robustness.model_dump(mode="json").items() if k not in READ_ONLY_SETTINGS}
    recorded = {k: v for k, v in (record.get("settings") or {}).items() if k not in READ_ONLY_SETTINGS}
    changed = sorted(key for key in current if current[key] != recorded.get(key))
    if changed:
        return "the robustness settings changed since it was computed (" + ", ".join(
            f"{key}: {recorded.get(key)!r} then, {current[key]!r} now" for key in changed) + ")"
    if record.get("feature_settings_sha256") != StudyJobSettings.of(study, config).digest():
        return "the feature settings (parameter file, engine or value settings) changed since it was computed"
    patients = robustness_patients(table, config.robustness.patients, config.robustness.seed)
    if patients != record.get("patients"):
        return "the feature table's training patients changed since it was computed"
    return None


def load_robustness(study: Study) -> pd.DataFrame | None:
    """The study's robustness table when the manifest turns robustness on and the table exists, else None."""
    config = FeatureConfig.model_validate(study.config.features)
    path = study.config.layout.robustness_table
    if config.robustness is None or not path.is_file():
        return None
    return pd.read_csv(path)


__all__ = ["RobustnessError", "RobustnessRun", "extract_robustness", "load_robustness", "robustness_table",
           "stale_robustness"]
