"""Table 1: the cohort's baseline characteristics per data set, with tests of difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from hccrad.evaluate.horizon import format_median, km_median
from hccrad.io.config import PAPER_AFP_CUTOFF_NG_ML


def table_one(table: pd.DataFrame, afp_cutoff: float = PAPER_AFP_CUTOFF_NG_ML) -> pd.DataFrame:
    """Table 1: characteristics of the training and validation sets, with tests of their difference.

    Parameters
    ----------
    table
        One row per valid patient: ``dataset``, ``afp`` (ng/mL), ``child_pugh``, ``bclc``, ``treatment``,
        ``center``, ``pfs_months``, ``pfs_event``.
    afp_cutoff
        The study's AFP cut-off (ng/mL).

    Returns
    -------
    One row per characteristic (and per level of a categorical one): the value per set, the p-value and its test
    (Mann-Whitney for continuous values, chi-square or Fisher's exact test for categories, log-rank for PFS).
    """
    from lifelines.statistics import logrank_test

    sets = [s for s in ("training", "validation") if (table["dataset"] == s).any()]
    rows = []

    def continuous(name, values):
        row = {"characteristic": name}
        groups = []
        for s in sets:
            v = pd.to_numeric(values[table["dataset"] == s], errors="coerce").dropna()
            groups.append(v)
            row[s] = f"{v.median():.1f} [{v.quantile(.25):.1f}-{v.quantile(.75):.1f}]" if len(v) else ""
        row["p"] = stats.mannwhitneyu(*groups).pvalue if len(groups) == 2 and all(len(g) for g in groups) else np.nan
        row["test"] = "Mann-Whitney"
        rows.append(row)

    def categorical(name, values):
        counts = pd.crosstab(values.fillna("missing"), table["dataset"])
        p = np.nan
        if len(sets) == 2 and counts.shape[0] > 1:
            p = stats.chi2_contingency(counts.to_numpy())[1] if counts.to_numpy().min() >= 5 or counts.shape != (
                2, 2) else stats.fisher_exact(counts.to_numpy())[1]
        test = "Fisher" if counts.shape == (2, 2) and counts.to_numpy().min() < 5 else "chi-square"
        rows.append({"characteristic": name, **{s: "" for s in sets}, "p": p, "test": test})
        for level in counts.index:
            rows.append({"characteristic": f"  {level}", **{s: f"{counts.loc[level, s]} "
                         f"({100 * counts.loc[level, s] / counts[s].sum():.0f}%)" for s in sets}, "p": np.nan,
                         "test": ""})

    rows.append({"characteristic": "patients", **{s: str(int((table["dataset"] == s).sum())) for s in sets},
                 "p": np.nan, "test": ""})
    continuous("AFP, ng/mL, median [IQR]", table["afp"])
    table_afp = pd.to_numeric(table["afp"], errors="coerce")
    categorical(f"AFP >= {afp_cutoff:g} ng/mL",
                pd.Series(np.where(table_afp.isna(), None, np.where(table_afp >= afp_cutoff, "yes", "no")),
                          index=table.index))
    categorical("Child-Pugh grade", table["child_pugh"])
    categorical("BCLC stage", table["bclc"])
    categorical("Treatment", table["treatment"])
    categorical("Center", table["center"])
    row = {"characteristic": "PFS events", "test": "log-rank"}
    for s in sets:
        subset = table[table["dataset"] == s]
        row[s] = f"{int(subset['pfs_event'].sum())} ({100 * subset['pfs_event'].mean():.0f}%)"
    if len(sets) == 2:
        a, b = (table[table["dataset"] == s] for s in sets)
        row["p"] = logrank_test(a["pfs_months"], b["pfs_months"], a["pfs_event"], b["pfs_event"]).p_value
    rows.append(row)
    row = {"characteristic": "median PFS, months", "p": np.nan, "test": ""}
    follow = {"characteristic": "median follow-up, months (reverse KM)", "p": np.nan, "test": ""}
    for s in sets:
        subset = table[table["dataset"] == s]
        time, event = subset["pfs_months"].to_numpy(float), subset["pfs_event"].to_numpy(int)
        row[s] = format_median(km_median(time, event))
        follow[s] = (format_median(km_median(time, 1 - event)) if (event == 0).any()
                     else "not estimable (no censored patient)")
    rows += [row, follow]
    return pd.DataFrame(rows, columns=["characteristic", *sets, "p", "test"])
