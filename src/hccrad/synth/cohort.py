"""`hccrad synth`: a multi-center synthetic HCC cohort with CTs, reference masks, clinical table and truth.

Layout of the written folder::

    study.yaml                 the manifest (validation centers D, E, F)
    clinical.csv               one row per patient: ids, center, image paths, clinical factors, PFS
    images/<id>/ct.nii.gz      or images/<id>/dicom/S003-IM0001.dcm ... for the DICOM centers
    images/<id>/mask.nii.gz    reference labels: 1 liver, 2 tumor, 3 portal vein
    truth/model.json           the true Cox model of the outcomes
    truth/latent.csv           per patient: latent and measured image properties, true times
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hccrad.io.files import write_atomic
from hccrad.io.images import write_image_atomic
from hccrad.io.masks import LABEL_LIVER, LABEL_PORTAL_VEIN, LABEL_TUMOR, connected_components
from hccrad.synth.anatomy import Grid, acquire, render_case
from hccrad.synth.centers import (
    DEFAULT_CENTER_WEIGHTS,
    DEFAULT_CENTERS,
    DEFAULT_VALIDATION_CENTERS,
    ScannerProfile,
    profile_for,
)
from hccrad.synth.patients import draw_outcome, draw_patient, linear_predictor, true_terms, truth_document
from hccrad.synth.writers import to_sitk, write_dicom_series

#: Extent of the scanned volume along z (mm), covering the liver from dome to tip with margin.
Z_RANGE_MM = (-110.0, 100.0)


@dataclass(frozen=True)
class CohortSpec:
    """What to generate."""

    n_patients: int = 120
    seed: int = 7
    full_resolution: bool = False
    n_jobs: int | None = None
    missing_afp_fraction: float = 0.02


def center_grid(profile: ScannerProfile, full_resolution: bool) -> Grid:
    """The voxel grid a center writes: its FOV and matrix in-plane, its slice thickness along z."""
    matrix = profile.scaled_matrix(full_resolution)
    pixel = profile.pixel_spacing_mm(full_resolution)
    nz = int(round((Z_RANGE_MM[1] - Z_RANGE_MM[0]) / profile.slice_thickness_mm)) + 1
    half = profile.fov_mm / 2.0
    origin = (-half + pixel / 2.0, -half + 5.0 + pixel / 2.0, Z_RANGE_MM[0])
    return Grid(shape=(nz, matrix, matrix), spacing=(profile.slice_thickness_mm, pixel, pixel), origin=origin)


def assign_centers(n_patients: int, rng: np.random.Generator) -> list[str]:
    """Centers in proportion to DEFAULT_CENTER_WEIGHTS (largest remainder), each with at least
    ``min(3, n_patients // 6)`` patients, in a seeded random order."""
    names = [profile.center for profile in DEFAULT_CENTERS]
    weights = np.array([DEFAULT_CENTER_WEIGHTS[name] for name in names])
    floor = min(3, n_patients // len(names))
    quotas = weights * n_patients
    counts = np.maximum(floor, np.floor(quotas).astype(int))
    while counts.sum() > n_patients:
        counts[np.argmax(np.where(counts > floor, counts - quotas, -np.inf))] -= 1
    while counts.sum() < n_patients:
        counts[np.argmax(quotas - counts)] += 1
    centers = [name for name, count in zip(names, counts, strict=True) for _ in range(count)]
    return [str(center) for center in rng.permutation(centers)]


def measure_labels(labels: np.ndarray, voxel_volume_ml: float) -> dict[str, float]:
    """Volumes (mL) of the reference labels: liver (1+3 inside), largest tumor, remnant liver."""
    tumor = labels == LABEL_TUMOR
    _, sizes = connected_components(tumor)
    count = len(sizes)
    largest = float(sizes[0]) * voxel_volume_ml if count else 0.0
    rliver = float((labels == LABEL_LIVER).sum()) * voxel_volume_ml
    return {
        "tumor_volume_ml": largest,
        "all_tumor_volume_ml": float(tumor.sum()) * voxel_volume_ml,
        "rliver_volume_ml": rliver,
        "portal_vein_volume_ml": float((labels == LABEL_PORTAL_VEIN).sum()) * voxel_volume_ml,
        "n_tumor_components": float(count),
    }


def _make_patient(job: tuple[str, str, int, str, bool, bool]) -> dict:
    patient_id, center, seed, out_dir, full_resolution, drop_afp = job
    out = Path(out_dir)
    profile = profile_for(center)
    patient = draw_patient(patient_id, center, seed, profile.contrast_shift_hu)
    grid = center_grid(profile, full_resolution)
    rendered = render_case(patient.anatomy, grid)
    psf = 0.7 if profile.sharp_kernel else 1.4
    if not full_resolution:
        psf *= 0.5  # the demo's coarse pixels already blur
    ct = acquire(rendered, psf + grid.spacing[1], profile.noise_sd_hu(), profile.slice_thickness_mm,
                 seed + 1)

    case_dir = out / "images" / patient_id
    mask_path = case_dir / "mask.nii.gz"
    if profile.file_format == "dicom":
        ct_path = case_dir / "dicom"
        write_dicom_series(ct, grid, ct_path, profile, patient_id)
    else:
        ct_path = case_dir / "ct.nii.gz"
        write_image_atomic(to_sitk(ct, grid), ct_path)
    write_image_atomic(to_sitk(rendered.labels, grid), mask_path)

    volumes = measure_labels(rendered.labels, grid.voxel_volume_ml)
    ratio = volumes["tumor_volume_ml"] / max(volumes["rliver_volume_ml"], 1e-6)
    terms = true_terms(patient.clinical, volumes["tumor_volume_ml"], ratio,
                       patient.anatomy.tumor_heterogeneity, patient.anatomy.liver_fibrosis)
    lp = linear_predictor(terms)
    outcome = draw_outcome(lp, seed + 2)
    clinical = patient.clinical
    # Centers differ in how they record Child-Pugh: the score at center C, the grade elsewhere.
    child_pugh = str(clinical.child_pugh_score) if center == "C" else clinical.child_pugh
    row = {
        "patient_id": patient_id,
        "center": center,
        "ct": str(ct_path.relative_to(out)),
        "mask": str(mask_path.relative_to(out)),
        "afp": "" if drop_afp else f"{clinical.afp:g}",
        "child_pugh": child_pugh,
        "bclc": clinical.bclc,
        "treatment": clinical.treatment,
        "pfs_months": outcome["pfs_months"],
        "pfs_event": outcome["pfs_event"],
    }
    latent = {
        "patient_id": patient_id,
        "center": center,
        **volumes,
        "tumor_liver_ratio": ratio,
        "tumor_heterogeneity": patient.anatomy.tumor_heterogeneity,
        "liver_fibrosis": patient.anatomy.liver_fibrosis,
        "necrosis_fraction": patient.anatomy.necrosis_fraction,
        "margin_width_mm": patient.anatomy.margin_width_mm,
        "n_satellites": patient.extra["n_satellites"],
        "portal_vein_diameter_mm": 2.0 * patient.anatomy.portal_radius,
        "afp_true": clinical.afp,
        "linear_predictor": lp,
        **{f"term_{name}": value for name, value in terms.items()},
        **outcome,
    }
    return {"row": row, "latent": latent}


def study_manifest(name: str) -> dict:
    """The YAML manifest of a synthetic cohort."""
    return {
        "name": name,
        "clinical_table": "clinical.csv",
        "columns": {"portal_vein_diameter_mm": None},
        "split": {"validation_centers": list(DEFAULT_VALIDATION_CENTERS)},
        "horizons_months": [6, 12],
        "treatment_categories": ["TACE", "TACE+systemic"],
        "output_dir": "output",
        # The demo's coarse voxels would be upsampled ~60-fold by the paper's resampling: use the native grid.
        "features": {"params": "demo"},
    }


def generate_cohort(out_dir: Path | str, spec: CohortSpec = CohortSpec(), progress=None) -> Path:
    """Generate the cohort into ``out_dir`` and return the manifest's path.

    Deterministic for ``spec.seed``: patient *i* always gets the same center, anatomy and outcome,
    whatever the number of worker processes.

    Parameters
    ----------
    out_dir
        Folder to write (created; existing case files are overwritten).
    spec
        Cohort size, seed, resolution and parallelism.
    progress
        Optional callable ``progress(done, total)`` called after each patient.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    master = np.random.default_rng(spec.seed)
    centers = assign_centers(spec.n_patients, master)
    seeds = master.integers(0, 2**31 - 16, size=spec.n_patients)
    drop_afp = master.random(spec.n_patients) < spec.missing_afp_fraction
    width = max(3, len(str(spec.n_patients)))
    jobs = [
        (f"SYN{index + 1:0{width}d}", centers[index], int(seeds[index]), str(out), spec.full_resolution,
         bool(drop_afp[index]))
        for index in range(spec.n_patients)
    ]
    n_jobs = spec.n_jobs or min(os.cpu_count() or 1, 8)
    results = []
    if n_jobs == 1:
        for done, job in enumerate(jobs, start=1):
            results.append(_make_patient(job))
            if progress:
                progress(done, len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            for done, result in enumerate(pool.map(_make_patient, jobs, chunksize=1), start=1):
                results.append(result)
                if progress:
                    progress(done, len(jobs))

    clinical = pd.DataFrame([result["row"] for result in results])
    latent = pd.DataFrame([result["latent"] for result in results])
    write_atomic(out / "clinical.csv", clinical.to_csv(index=False))
    (out / "truth").mkdir(exist_ok=True)
    write_atomic(out / "truth" / "latent.csv", latent.to_csv(index=False))
    truth = truth_document() | {"seed": spec.seed, "n_patients": spec.n_patients,
                                "full_resolution": spec.full_resolution}
    write_atomic(out / "truth" / "model.json", json.dumps(truth, indent=2))
    manifest = out / "study.yaml"
    write_atomic(manifest, yaml.safe_dump(study_manifest(f"hccrad synthetic cohort (seed {spec.seed})"),
                                         sort_keys=False))
    return manifest
