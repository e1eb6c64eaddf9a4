"""How the web app says a prediction to a clinician: the primary model first, percentages, what "high" means in
PFS terms, contributions in the paper's words grouped as clinical / tumor / liver, the viewer's orientation, and
messages in the form's own words. Pure functions of a prediction, tested on their own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The study's primary model (the paper's C-T&L), shown first unless ``hccrad serve --primary-model`` says else.
PRIMARY_MODEL = "C-T&L"
#: What each model reads, for the sentence that explains why they differ.
MODEL_INPUTS = {"C": "the four clinical factors only", "T": "the tumor's image features only",
                "T&L": "the tumor's and the liver's image features", "C-T&L": "the clinical factors and the tumor's "
                "and the liver's image features"}
GROUP_TITLES = {"clinical": "Clinical factors", "tumor": "Tumor", "liver": "Liver parenchyma",
                "tumor and liver": "Tumor and liver"}


def percent(probability: float) -> str:
    """A probability as a whole percentage; below 1% is "<1%" and above 99% ">99%", never a false 0% or 100%."""
    if probability is None or not np.isfinite(probability):
        return "-"
    if probability < 0.01:
        return "<1%"
    if probability > 0.99:
        return ">99%"
    return f"{100 * probability:.0f}%"


def ordered_models(names: list[str], primary: str = PRIMARY_MODEL) -> list[str]:
    """The primary model first (when scored), then the others in the study's order C, T, T&L, C-T&L."""
    order = ["C", "T", "T&L", "C-T&L"]
    rest = sorted((n for n in names if n != primary), key=lambda n: order.index(n) if n in order else len(order))
    return ([primary] if primary in names else []) + rest


def why_models_differ(names: list[str], primary: str = PRIMARY_MODEL) -> str:
    """One sentence: what each model reads, and that the primary one is the study's."""
    others = [n for n in names if n != primary]
    if not others:
        return ""
    listing = "; ".join(f"{name} reads {MODEL_INPUTS.get(name, 'its own inputs')}" for name in others)
    lead = (f"{primary} is the study's primary model ({MODEL_INPUTS.get(primary, 'its inputs')}). "
            if primary in names else "")
    return (f"{lead}The other models are shown for comparison and can disagree with it, because each weighs "
            f"different information: {listing}.")


def group_meaning(prediction) -> str:
    """What the risk group means, in PFS terms and consistent with the numbers by construction: the group is set
    by the training cut-off of the risk score, and a score at the cut-off predicts the PFS given here, so "high"
    always means a predicted PFS below it (PFS falls as the score rises)."""
    at_cutoff = ", ".join(f"{percent(value)} at {months:g} months" for months, value in
                          sorted(prediction.cutoff_pfs.items()))
    return (f"High risk means a risk score above {prediction.cutoff:.2f}, the cut-off chosen on the training "
            f"patients: a predicted PFS below {at_cutoff}. Low risk means a score at or below it.")


@dataclass
class Contribution:
    """One line of the contribution chart: a factor, its value in words, and its part of the risk score."""
    group: str
    label: str
    description: str
    value: str
    contribution: float
    reference: bool = False


def _clinical_factor(covariate: str) -> str:
    for prefix, factor in (("afp", "AFP"), ("child_pugh", "Child-Pugh"), ("bclc", "BCLC stage"),
                           ("treatment", "Treatment")):
        if covariate.startswith(prefix):
            return factor
    return covariate


def contribution_lines(model, prediction) -> list[Contribution]:
    """The prediction's contributions in the paper's words, grouped clinical / tumor / liver.

    An image feature's contribution is coef x (value - training mean), its value given in training standard
    deviations. A clinical factor is read against its reference category: the categories of one factor are
    joined into one line naming the patient's category, whose contribution is the sum of coef x indicator, 0 for
    the reference category (shown as the baseline, not as a bar); a numeric coding (AFP per tenfold, grades per
    step) counts from the reference level the same way. The lines add up to the risk score minus that of a
    patient in the reference categories with average image features.
    """
    from hccrad.features.names import describe_feature, factor_group, paper_name
    from hccrad.survival.clinical import (
        ORDINAL_CODINGS,
        clinical_input,
        covariate_description,
        ordinal_level,
        reference_level,
    )

    table = prediction.contributions
    spec = model.clinical_spec_ or {}
    lines: list[Contribution] = []
    clinical: dict[str, list[Any]] = {}
    for row in table.itertuples():
        if factor_group(row.covariate) == "clinical" and spec:
            clinical.setdefault(_clinical_factor(row.covariate), []).append(row)
            continue
        label = "T&L risk score" if row.covariate == "TL_risk_score" else paper_name(row.covariate)
        if row.covariate == "TL_risk_score":
            value = f"{row.value:.2f}"
        else:
            value = f"{row.value:+.1f} SD from the training mean"
        lines.append(Contribution(factor_group(row.covariate), label, describe_feature(row.covariate), value,
                                  float(row.contribution)))
    for factor, rows in clinical.items():
        active = [row for row in rows if row.value != 0]
        effect = float(sum(row.coef * row.value for row in rows))
        if rows[0].covariate in ("afp_log10",):
            value = f"{10 ** rows[0].value:.4g} ng/mL"
            description = covariate_description(rows[0].covariate, spec)
        elif len(rows) == 1 and rows[0].covariate in ORDINAL_CODINGS:
            value = ordinal_level(rows[0].covariate, rows[0].value)
            if not active:
                value += " (reference category)"
            description = covariate_description(rows[0].covariate, spec)
        elif active:
            description = covariate_description(active[0].covariate, spec)
            value = description.split(" (reference")[0]
        else:
            value = f"{reference_level(clinical_input(rows[0].covariate), spec)} (reference category)"
            description = f"{factor}: the reference category, against which the others are measured"
        lines.append(Contribution("clinical", factor, description, value, effect, reference=not active))
    order = {"clinical": 0, "tumor": 1, "liver": 2, "tumor and liver": 3}
    return sorted(lines, key=lambda line: (order.get(line.group, 9), -abs(line.contribution)))


def orientation_labels(direction: tuple[float, ...]) -> dict[str, str]:
    """The patient directions at the edges of an axial slice shown with row 0 on top and column 0 on the left,
    from the image's direction cosines (LPS: +x is the patient's left, +y posterior): ``left``, ``right``,
    ``top``, ``bottom`` -> R, L, A, P, H or F."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    names = (("R", "L"), ("A", "P"), ("F", "H"))  # (towards -axis, towards +axis) in LPS

    def towards(vector: np.ndarray) -> str:
        axis = int(np.argmax(np.abs(vector)))
        return names[axis][1] if vector[axis] > 0 else names[axis][0]

    column_axis, row_axis = matrix[:, 0], matrix[:, 1]
    return {"left": towards(-column_axis), "right": towards(column_axis), "top": towards(-row_axis),
            "bottom": towards(row_axis)}


#: Internal names and command-line advice -> the form's words.
_FORM_WORDS = (
    (r"; fix it, or use --allow-impute to treat it as missing", "; correct it in the form"),
    (r" \(pass --allow-impute to use the training medians/modes\)", ""),
    (r" \(pass --allow-extrapolation to score anyway\)", ""),
    (r"--allow-impute|--allow-extrapolation|--segmentation-model \w*|--ct|--mask", "the form"),
    (r"\bafp\b", "AFP"), (r"\bchild_pugh\b", "Child-Pugh"), (r"\bbclc\b", "BCLC stage"),
    (r"\btreatment\b", "treatment"),
)


def form_words(message: str) -> str:
    """A message as the form names things: its field labels, no command-line options, no internal names."""
    for pattern, replacement in _FORM_WORDS:
        message = re.sub(pattern, replacement, message)
    return message


def group_text(prediction) -> str:
    """The risk-group cell: ``high risk``; outside the model's applicability domain ``high risk (outside the
    model's applicability domain)``, shown without emphasis; ``withheld`` when the setting withholds it."""
    if prediction.withheld:
        return "withheld: outside the model's applicability domain"
    if prediction.outside_domain:
        return f"{prediction.risk_group} risk (outside the model's applicability domain: not reliable)"
    return f"{prediction.risk_group} risk"
