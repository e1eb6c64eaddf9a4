"""How numbers are written in the report and the paper folder: one set of rules, used by both.

=================================  =====================================================================
value                              written as
=================================  =====================================================================
p-value                            ``< 0.001`` below 0.001, else three decimals (``0.012``, ``0.350``)
estimate with its interval         ``1.65 (1.18-2.31)``; ``-0.12 (-0.30 to 0.05)`` when a bound is negative
horizon                            ``6 months`` (``1 month``)
a count                            ``58``
a proportion                       ``41.5%``
an empty cell                      why: ``too few progressions (1)``, ``not estimable``, ``-``
=================================  =====================================================================
"""

from __future__ import annotations

import math
from typing import Any

#: Footnotes that apply to whole tables, keyed by what they explain; each table states the ones that apply once.
FOOTNOTES = {
    "apparent": ("Training rows are apparent estimates: the models were fitted on these patients, so they are "
                 "optimistic; validation rows are on the validation centres."),
    "apparent_hr": ("Hazard ratios are an unpenalised refit on the training patients of the covariates that the "
                    "screen and LASSO chose; their intervals and p-values ignore that selection, so they are too "
                    "narrow and too small."),
    "complete_case": ("DeLong's test on the patients whose status at the horizon is known (complete case, as in "
                      "the paper): patients censored at or before the horizon are left out."),
    "censoring_aware": ("Censoring-aware comparison: inverse-probability-of-censoring weighted time-dependent "
                        "AUCs with influence-function standard errors (riskRegression's Score), patients censored "
                        "before the horizon weighted for, not left out."),
    "horizon_case": ("Status at a horizon t: a progression at or before t is a case (T <= t), a patient free at t a "
                     "control (T > t), one censored at or before t unknown."),
    "horizon_timeroc": ("Status at a horizon t: a progression before t is a case (T < t, as R's timeROC), a patient "
                        "free at t a control (T > t), one censored at or before t unknown."),
}


def is_missing(value: Any) -> bool:
    """None, NaN or an empty string."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def format_p(p: Any) -> str:
    """``< 0.001`` below 0.001, else three decimals; ``-`` when missing."""
    if is_missing(p):
        return "-"
    value = float(p)
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def format_number(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals (``-`` when missing)."""
    if is_missing(value):
        return "-"
    return f"{float(value):.{digits}f}"


def format_estimate(estimate: Any, low: Any, high: Any, digits: int = 2) -> str:
    """``x.xx (x.xx-x.xx)``, or ``x.xx (a to b)`` when a bound is negative (a hyphen would read as a minus)."""
    if is_missing(estimate):
        return "-"
    text = format_number(estimate, digits)
    if is_missing(low) or is_missing(high):
        return text
    low_text, high_text = format_number(low, digits), format_number(high, digits)
    joiner = " to " if float(low) < 0 or float(high) < 0 else "-"
    return f"{text} ({low_text}{joiner}{high_text})"


def format_horizon(months: Any) -> str:
    """``6 months``; ``1 month``."""
    value = float(months)
    return f"{value:g} month" + ("" if value == 1 else "s")


def format_percent(share: Any, digits: int = 1) -> str:
    if is_missing(share):
        return "-"
    return f"{100 * float(share):.{digits}f}%"


def missing_auc_reason(cases: Any, controls: Any) -> str:
    """Why an AUC is missing, from the numbers of cases (progression by the horizon) and controls (free of
    progression at it): ``too few progressions (1)``, ``too few progression-free (0)``, else ``not estimable``."""
    if not is_missing(cases) and int(float(cases)) < 2:
        return f"too few progressions ({int(float(cases))})"
    if not is_missing(controls) and int(float(controls)) < 2:
        return f"too few progression-free ({int(float(controls))})"
    return "not estimable"


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell."""
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                    "<": r"\textless{}", ">": r"\textgreater{}"}
    return "".join(replacements.get(character, character) for character in str(text))
