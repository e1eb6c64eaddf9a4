"""Coding the clinical factors (AFP, Child-Pugh, BCLC, treatment) as Cox covariates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hccrad.io.config import PAPER_AFP_CUTOFF_NG_ML
from hccrad.io.errors import InputError
from hccrad.survival.config import ClinicalCoding

BCLC_ORDER = {"0": 0, "A": 1, "B": 2, "C": 3, "D": 4}
CHILD_PUGH_ORDER = {"A": 0, "B": 1, "C": 2}
CLINICAL_INPUTS = ("afp", "child_pugh", "bclc", "treatment")
#: The reference category of the categorical inputs coded as indicators (the paper's).
REFERENCE_CATEGORY = {"child_pugh": "A", "bclc": "A"}
#: The ordinal codings: covariate -> (the input's name in words, level -> code).
ORDINAL_CODINGS = {"child_pugh_grade": ("Child-Pugh", CHILD_PUGH_ORDER), "bclc_stage": ("BCLC", BCLC_ORDER)}


class ClinicalInputError(InputError, ValueError):
    """A clinical value that the fitted coding cannot represent (unknown category, impossible number)."""


def fit_coding(train: pd.DataFrame, coding: ClinicalCoding) -> dict[str, Any]:
    """The coding learned from training data: levels, reference categories and imputation values."""
    treatments = train["treatment"].dropna().astype(str)
    reference = coding.treatment_reference or (treatments.value_counts().index[0] if len(treatments) else None)
    other_treatments = sorted(set(treatments) - {reference})
    spec: dict[str, Any] = {
        "afp": coding.afp,
        "afp_cutoff_ng_ml": (PAPER_AFP_CUTOFF_NG_ML if coding.afp_cutoff_ng_ml is None
                             else coding.afp_cutoff_ng_ml),
        "child_pugh": coding.child_pugh,
        "bclc": coding.bclc,
        "treatment_reference": reference,
        "treatment_levels": other_treatments,
        "child_pugh_levels": sorted(set(train["child_pugh"].dropna().astype(str)) - {REFERENCE_CATEGORY["child_pugh"]}),
        "bclc_levels": sorted(set(train["bclc"].dropna().astype(str)) - {REFERENCE_CATEGORY["bclc"]},
                              key=BCLC_ORDER.get),
    }
    encoded = encode(train, spec, impute=None)
    spec["impute"] = {column: float(np.nanmedian(encoded[column])) if column == "afp_log10"
                      else float(encoded[column].mode().iloc[0]) if encoded[column].notna().any() else 0.0
                      for column in encoded.columns}
    return spec


def covariate_description(column: str, spec: dict[str, Any]) -> str:
    """Human-readable meaning of one coded covariate, with its reference level."""
    if column == "afp_ge_cutoff":
        return f"AFP >= {spec['afp_cutoff_ng_ml']:g} ng/mL (reference < {spec['afp_cutoff_ng_ml']:g})"
    if column == "afp_log10":
        return "AFP, per tenfold increase (log10 ng/mL)"
    if column == "child_pugh_grade":
        return "Child-Pugh grade, per grade (A=0, B=1, C=2)"
    if column.startswith("child_pugh_"):
        return f"Child-Pugh {column.rsplit('_', 1)[1]} (reference A)"
    if column == "bclc_stage":
        return "BCLC stage, per stage (0=0, A=1, B=2, C=3, D=4)"
    if column.startswith("bclc_"):
        return f"BCLC {column.rsplit('_', 1)[1]} (reference A)"
    if column.startswith("treatment_"):
        return f"Treatment {column[len('treatment_'):]} (reference {spec['treatment_reference']})"
    return column


def clinical_input(covariate: str) -> str | None:
    """The clinical input (``afp``, ``child_pugh``, ``bclc``, ``treatment``) a coded covariate comes from."""
    return next((name for name in CLINICAL_INPUTS if covariate.startswith(name)), None)


def reference_level(clinical: str, spec: dict[str, Any]) -> str:
    """The reference category of a clinical input in words (``AFP < 400 ng/mL``, ``Child-Pugh A``, ...)."""
    if clinical == "afp":
        return f"AFP < {spec.get('afp_cutoff_ng_ml', PAPER_AFP_CUTOFF_NG_ML):g} ng/mL"
    if clinical == "child_pugh":
        return f"Child-Pugh {REFERENCE_CATEGORY['child_pugh']}"
    if clinical == "bclc":
        return f"BCLC {REFERENCE_CATEGORY['bclc']}"
    if clinical == "treatment":
        return f"Treatment {spec.get('treatment_reference') or ''}".strip()
    return clinical


def ordinal_level(covariate: str, code: float) -> str:
    """The level an ordinal coding's value stands for (``bclc_stage`` 2 -> ``BCLC B``); the value itself when it
    stands for none."""
    name, order = ORDINAL_CODINGS[covariate]
    levels = {value: level for level, value in order.items()}
    return f"{name} {levels.get(int(round(code)), f'{code:g}')}"


def encode(frame: pd.DataFrame, spec: dict[str, Any], impute: dict[str, float] | None) -> pd.DataFrame:
    """Code the clinical columns of ``frame``; missing values stay NaN unless ``impute`` is given.

    Raises
    ------
    ClinicalInputError
        For a category the training data did not have (listing the patients).
    """
    out = pd.DataFrame(index=frame.index)
    afp = pd.to_numeric(frame["afp"], errors="coerce")
    if spec["afp"] == "cutoff":
        out["afp_ge_cutoff"] = np.where(afp.isna(), np.nan, (afp >= spec["afp_cutoff_ng_ml"]).astype(float))
    else:
        out["afp_log10"] = np.log10(afp.clip(lower=0.1))
    child_pugh = frame["child_pugh"].astype("string")
    _check_levels(child_pugh, set(CHILD_PUGH_ORDER), "child_pugh")
    if spec["child_pugh"] == "ordinal":
        out["child_pugh_grade"] = child_pugh.map(CHILD_PUGH_ORDER).astype(float)
    else:
        for level in spec["child_pugh_levels"]:
            out[f"child_pugh_{level}"] = np.where(child_pugh.isna(), np.nan, (child_pugh == level).astype(float))
    bclc = frame["bclc"].astype("string")
    _check_levels(bclc, set(BCLC_ORDER), "bclc")
    if spec["bclc"] == "ordinal":
        out["bclc_stage"] = bclc.map(BCLC_ORDER).astype(float)
    else:
        for level in spec["bclc_levels"]:
            out[f"bclc_{level}"] = np.where(bclc.isna(), np.nan, (bclc == level).astype(float))
    treatment = frame["treatment"].astype("string")
    known = {spec["treatment_reference"], *spec["treatment_levels"]}
    _check_levels(treatment, known, "treatment")
    for level in spec["treatment_levels"]:
        out[f"treatment_{level}"] = np.where(treatment.isna(), np.nan, (treatment == level).astype(float))
    if impute is not None:
        out = out.fillna({column: value for column, value in impute.items() if column in out})
    return out


def _check_levels(values: pd.Series, allowed: set[str | None], field: str) -> None:
    unknown = values.dropna()[~values.dropna().isin([a for a in allowed if a is not None])]
    if len(unknown):
        patients = ", ".join(f"{index} ({value!r})" for index, value in unknown.head(5).items())
        raise ClinicalInputError(
            f"{field}: categories unseen in training for {patients}; known: {sorted(a for a in allowed if a)}"
        )
