"""Synthetic patients: clinical factors, latent anatomy and progression-free survival from a known Cox model.

The true model is saved with the cohort (``truth/model.json``) so that later stages can check that they
recover its signal. Its hazard depends on clinical factors and on image properties measured from the
rendered masks and the latent textures: tumor volume, tumor heterogeneity, the tumor / liver volume
ratio and the liver's fibrotic texture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hccrad.synth.anatomy import PatientAnatomy

#: The true Cox model of the synthetic cohort: log hazard ratio per unit of each term.
TRUE_COEFFICIENTS: dict[str, float] = {
    "afp_ge_400": 0.35,
    "child_pugh_B_or_C": 0.30,
    "bclc_0": -0.30,
    "bclc_B": 0.20,
    "bclc_C": 0.45,
    "bclc_D": 0.80,
    "treatment_TACE+systemic": -0.30,
    "z_log_tumor_volume": 0.45,
    "z_tumor_heterogeneity": 0.60,
    "z_log_tumor_liver_ratio": 0.35,
    "z_liver_fibrosis": 0.55,
}

#: Population constants that standardise the image terms of the true model (not fitted on the sample).
STANDARDIZATION: dict[str, tuple[float, float]] = {
    "log_tumor_volume": (math.log(60.0), 1.1),
    "tumor_heterogeneity": (0.5, 0.22),
    "log_tumor_liver_ratio": (math.log(0.04), 1.1),
    "liver_fibrosis": (0.4, 0.2),
}

WEIBULL_SHAPE = 1.3
MEDIAN_PFS_AT_ZERO_MONTHS = 9.0


@dataclass
class ClinicalFactors:
    """A synthetic patient's AFP (ng/mL), Child-Pugh score and grade, BCLC stage and treatment."""
    afp: float | None
    child_pugh_score: int
    child_pugh: str
    bclc: str
    treatment: str


@dataclass
class SyntheticPatient:
    """Everything drawn for one patient before rendering."""

    patient_id: str
    center: str
    seed: int
    anatomy: PatientAnatomy
    clinical: ClinicalFactors
    vascular_invasion: bool
    extra: dict = field(default_factory=dict)


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def draw_patient(patient_id: str, center: str, seed: int, contrast_shift_hu: float) -> SyntheticPatient:
    """Draw one patient's anatomy and clinical factors (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    liver_fibrosis = float(rng.beta(2.0, 3.0))
    liver_scale = float(np.clip(rng.normal(0.9, 0.06) - 0.08 * (liver_fibrosis - 0.4), 0.76, 1.06))
    diameter = float(np.clip(rng.lognormal(math.log(46.0), 0.45), 14.0, 105.0))
    z_size = (math.log(diameter) - math.log(46.0)) / 0.45
    heterogeneity = float(np.clip(0.6 * rng.beta(2.0, 2.0) + 0.4 * _sigmoid(1.2 * z_size + rng.normal(0, 0.8)),
                                  0.0, 1.0))
    radii = tuple(float(diameter / 2 * rng.uniform(0.85, 1.15)) for _ in range(3))
    in_left_lobe = rng.random() < 0.2 and diameter < 70
    s = liver_scale
    if in_left_lobe:
        center_xyz = (18 * s + rng.uniform(-20, 20), -38 * s + rng.uniform(-6, 6), 22 * s + rng.uniform(-10, 10))
    else:
        spread = max(0.0, 1.0 - diameter / 120.0)
        center_xyz = (
            -62 * s + rng.uniform(-30, 30) * spread,
            8 * s + rng.uniform(-35, 35) * spread,
            rng.uniform(-35, 35) * spread,
        )
    necrosis = 0.0
    if diameter > 35 and rng.random() < 0.25 + 0.6 * heterogeneity:
        necrosis = float(np.clip(0.25 + 0.45 * heterogeneity + rng.normal(0, 0.05), 0.15, 0.75))
    n_satellites = int(rng.poisson(0.4 + 1.0 * heterogeneity))
    satellites = []
    for _ in range(n_satellites):
        satellites.append((
            float(-62 * s + rng.uniform(-45, 45)),
            float(8 * s + rng.uniform(-50, 50)),
            float(rng.uniform(-45, 45)),
            float(rng.uniform(3.5, min(9.0, diameter / 3))),
        ))
    portal_radius = float(np.clip(rng.normal(6.2, 0.6) + 1.6 * liver_fibrosis, 4.5, 9.5))
    anatomy = PatientAnatomy(
        body_semi_axes=(float(rng.uniform(140, 175)), float(rng.uniform(105, 125))),
        fat_thickness=float(rng.uniform(8, 28)),
        liver_scale=liver_scale,
        liver_irregularity=float(rng.uniform(0.03, 0.07)),
        liver_fibrosis=liver_fibrosis,
        liver_hu=float(rng.normal(116.0, 6.0) + contrast_shift_hu),
        tumor_center=tuple(float(c) for c in center_xyz),
        tumor_radii=radii,
        tumor_irregularity=float(rng.uniform(0.03, 0.10) + 0.08 * heterogeneity),
        tumor_heterogeneity=heterogeneity,
        necrosis_fraction=necrosis,
        rim_enhancement_hu=float(rng.uniform(0, 25)),
        margin_width_mm=float(rng.uniform(0.5, 5.0)),
        tumor_hu=float(rng.normal(86.0, 9.0) + 0.8 * contrast_shift_hu),
        satellites=tuple(satellites),
        portal_radius=portal_radius,
        hilum=(float(-22 * s), float(22 * s), float(-8 * s)),
        seed=int(rng.integers(2**31)),
    )

    vascular_invasion = bool(rng.random() < 0.12 + 0.35 * _sigmoid(z_size))
    score = int(np.clip(round(5 + 3.4 * liver_fibrosis + rng.normal(0, 0.8)), 5, 12))
    grade = "A" if score <= 6 else "B" if score <= 9 else "C"
    log10_afp = rng.normal(1.6 + 0.55 * z_size + 0.5 * heterogeneity, 1.1)
    afp = float(round(10 ** np.clip(log10_afp, -0.2, 5.5), 1))
    multifocal = n_satellites > 0
    if grade == "C" and rng.random() < 0.7:
        bclc = "D"
    elif vascular_invasion:
        bclc = "C"
    elif multifocal or diameter > 50:
        bclc = "B"
    elif diameter < 20 and grade == "A":
        bclc = "0"
    else:
        bclc = "A"
    treatment = "TACE+systemic" if rng.random() < 0.25 + 0.35 * (bclc in ("C", "D")) else "TACE"
    clinical = ClinicalFactors(afp, score, grade, bclc, treatment)
    return SyntheticPatient(patient_id, center, seed, anatomy, clinical, vascular_invasion,
                            extra={"n_satellites": n_satellites, "diameter_mm": diameter})


def true_terms(clinical: ClinicalFactors, tumor_volume_ml: float, tumor_liver_ratio: float,
               heterogeneity: float, fibrosis: float, afp_cutoff: float = 400.0) -> dict[str, float]:
    """The covariates of the true Cox model for one patient (names as in TRUE_COEFFICIENTS)."""

    def standard(name: str, value: float) -> float:
        mean, sd = STANDARDIZATION[name]
        return (value - mean) / sd

    return {
        "afp_ge_400": float(clinical.afp is not None and clinical.afp >= afp_cutoff),
        "child_pugh_B_or_C": float(clinical.child_pugh in ("B", "C")),
        "bclc_0": float(clinical.bclc == "0"),
        "bclc_B": float(clinical.bclc == "B"),
        "bclc_C": float(clinical.bclc == "C"),
        "bclc_D": float(clinical.bclc == "D"),
        "treatment_TACE+systemic": float(clinical.treatment == "TACE+systemic"),
        "z_log_tumor_volume": standard("log_tumor_volume", math.log(max(tumor_volume_ml, 1e-3))),
        "z_tumor_heterogeneity": standard("tumor_heterogeneity", heterogeneity),
        "z_log_tumor_liver_ratio": standard("log_tumor_liver_ratio", math.log(max(tumor_liver_ratio, 1e-5))),
        "z_liver_fibrosis": standard("liver_fibrosis", fibrosis),
    }


def linear_predictor(terms: dict[str, float]) -> float:
    """The true model's linear predictor of a patient's covariate values ``terms``."""
    return float(sum(TRUE_COEFFICIENTS[name] * value for name, value in terms.items()))


def draw_outcome(lp: float, seed: int) -> dict[str, float]:
    """Weibull PFS for log hazard ``lp`` and independent censoring (staggered entry and drop-out)."""
    rng = np.random.default_rng(seed)
    rate = math.log(2.0) / MEDIAN_PFS_AT_ZERO_MONTHS**WEIBULL_SHAPE
    event_time = (-math.log(1.0 - rng.random()) / (rate * math.exp(lp))) ** (1.0 / WEIBULL_SHAPE)
    administrative = rng.uniform(14.0, 40.0)
    dropout = rng.exponential(80.0)
    censor_time = min(administrative, dropout)
    observed = min(event_time, censor_time)
    return {
        "true_event_months": round(event_time, 3),
        "censor_months": round(censor_time, 3),
        "pfs_months": round(max(observed, 0.1), 2),
        "pfs_event": int(event_time <= censor_time),
    }


def truth_document() -> dict:
    """The generator's true model, as saved in ``truth/model.json``."""
    return {
        "model": "Cox proportional hazards with Weibull baseline",
        "weibull_shape": WEIBULL_SHAPE,
        "median_pfs_months_at_zero_linear_predictor": MEDIAN_PFS_AT_ZERO_MONTHS,
        "coefficients": dict(TRUE_COEFFICIENTS),
        "standardization": {k: {"mean": m, "sd": s} for k, (m, s) in STANDARDIZATION.items()},
        "censoring": "min(uniform(14, 40) months administrative, exponential(mean 80 months) drop-out)",
        "image_terms": {
            "z_log_tumor_volume": "log tumor volume (mL) from the reference mask, label 2",
            "z_tumor_heterogeneity": "latent tumor texture amplitude (0..1), drives HU variance and necrosis",
            "z_log_tumor_liver_ratio": "log of tumor volume / remnant liver volume from the reference mask",
            "z_liver_fibrosis": "latent liver texture amplitude (0..1), drives parenchymal HU variance",
        },
    }
