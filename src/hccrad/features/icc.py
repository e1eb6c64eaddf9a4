"""Intraclass correlation coefficients of many features at once (Shrout & Fleiss 1979; McGraw & Wong 1996).

For each feature, ``values[feature, target, rater]`` holds n targets (patients) rated by k raters (perturbations).
The two-way ANOVA's mean squares give the six forms, as pingouin's ``intraclass_corr`` computes them (the tests
compare every value and interval with pingouin's, and with Shrout & Fleiss' published example):

* ``ICC1``: one-way random effects, single rater (ICC(1,1)); ``ICC1k``: its average of k raters;
* ``ICC2``: two-way random effects, absolute agreement, single rater (ICC(A,1)); ``ICC2k`` averaged;
* ``ICC3``: two-way mixed effects, consistency, single rater (ICC(C,1)); ``ICC3k`` averaged.

95% intervals by the F distribution (Shrout & Fleiss; McGraw & Wong's approximate degrees of freedom for ICC2).
A feature whose values are all equal has no variance between or within targets: its ICCs are NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import f as f_distribution

FORMS = ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k")


def icc_table(values: np.ndarray, alpha: float = 0.05) -> pd.DataFrame:
    """The six ICCs with their (1 - alpha) intervals for each feature.

    Parameters
    ----------
    values
        (features, n targets, k raters), complete (no NaN); n >= 2 and k >= 2.

    Returns
    -------
    One row per feature: ``<form>``, ``<form>_low``, ``<form>_high`` for each of :data:`FORMS`.
    """
    values = np.asarray(values, dtype=np.float64)
    _, n, k = values.shape
    if n < 2 or k < 2:
        raise ValueError(f"ICCs need at least 2 targets and 2 raters, found {n} and {k}")
    grand = values.mean(axis=(1, 2))
    target_means = values.mean(axis=2)
    rater_means = values.mean(axis=1)
    ss_targets = k * ((target_means - grand[:, None]) ** 2).sum(axis=1)
    ss_raters = n * ((rater_means - grand[:, None]) ** 2).sum(axis=1)
    ss_total = ((values - grand[:, None, None]) ** 2).sum(axis=(1, 2))
    ss_error = ss_total - ss_targets - ss_raters
    df_targets, df_raters, df_error = n - 1, k - 1, (n - 1) * (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        msb = ss_targets / df_targets
        msj = ss_raters / df_raters
        mse = ss_error / df_error
        msw = (ss_raters + ss_error) / (df_raters + df_error)
        icc1 = (msb - msw) / (msb + (k - 1) * msw)
        icc2 = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
        icc3 = (msb - mse) / (msb + (k - 1) * mse)
        icc1k = (msb - msw) / msb
        icc2k = (msb - mse) / (msb + (msj - mse) / n)
        icc3k = (msb - mse) / msb
        f1 = msb / msw
        f3 = msb / mse
        df_within = n * (k - 1)
        q = 1 - alpha / 2
        f1_low = f1 / f_distribution.ppf(q, df_targets, df_within)
        f1_high = f1 * f_distribution.ppf(q, df_within, df_targets)
        f3_low = f3 / f_distribution.ppf(q, df_targets, df_error)
        f3_high = f3 * f_distribution.ppf(q, df_error, df_targets)
        fj = msj / mse
        vn = df_error * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        vd = df_targets * k ** 2 * icc2 ** 2 * fj ** 2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        v = vn / vd
        f2_high = f_distribution.ppf(q, n - 1, v)
        f2_low = f_distribution.ppf(q, v, n - 1)
        low2 = n * (msb - f2_high * mse) / (f2_high * (k * msj + (k * n - k - n) * mse) + n * msb)
        high2 = n * (f2_low * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f2_low * msb)
        table = {
            "ICC1": icc1, "ICC1_low": (f1_low - 1) / (f1_low + k - 1), "ICC1_high": (f1_high - 1) / (f1_high + k - 1),
            "ICC2": icc2, "ICC2_low": low2, "ICC2_high": high2,
            "ICC3": icc3, "ICC3_low": (f3_low - 1) / (f3_low + k - 1), "ICC3_high": (f3_high - 1) / (f3_high + k - 1),
            "ICC1k": icc1k, "ICC1k_low": 1 - 1 / f1_low, "ICC1k_high": 1 - 1 / f1_high,
            "ICC2k": icc2k, "ICC2k_low": low2 * k / (1 + low2 * (k - 1)),
            "ICC2k_high": high2 * k / (1 + high2 * (k - 1)),
            "ICC3k": icc3k, "ICC3k_low": 1 - 1 / f3_low, "ICC3k_high": 1 - 1 / f3_high,
        }
    flat = ss_total <= 0  # every value equal: no variance to split
    frame = pd.DataFrame(table)
    frame.loc[flat, :] = np.nan
    return frame
