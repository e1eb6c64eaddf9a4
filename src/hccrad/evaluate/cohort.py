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


#: Plausibility rules of ``hccrad validate`` (docs/manifest.md, "What validate shows"): each is a warning that
#: says what to check.
MAX_PLAUSIBLE_PFS_MONTHS = 120.0  # 10 years: beyond any HCC cohort's progression-free follow-up
EVENT_RATE_BOUNDS = (0.05, 0.95)
#: Median follow-up of the patients coded as progressed over that of the patients coded as censored.
MAX_EVENT_FOLLOW_UP_RATIO = 2.5
#: A category seen in at most this many patients is named, with the remedy.
RARE_CATEGORY_COUNT = 2


def plausibility_warnings(table: pd.DataFrame, time_unit: str, event_coding: str) -> list[str]:
    """Warnings for gross unit and coding mistakes in the valid patients' follow-up (``pfs_months`` after the
    unit conversion, ``pfs_event`` after the event coding): a PFS beyond :data:`MAX_PLAUSIBLE_PFS_MONTHS`, an event
    rate outside :data:`EVENT_RATE_BOUNDS`, and progressed patients followed :data:`MAX_EVENT_FOLLOW_UP_RATIO`
    times longer than censored ones (a reversed event column)."""
    warnings = []
    time, event = table["pfs_months"].to_numpy(float), table["pfs_event"].to_numpy(int)
    if not len(time):
        return warnings
    longest = float(np.nanmax(time))
    if longest > MAX_PLAUSIBLE_PFS_MONTHS:
        warnings.append(f"the longest PFS is {longest:.0f} months ({longest / 12:.0f} years), read with "
                        f"`time_unit: {time_unit}`: beyond {MAX_PLAUSIBLE_PFS_MONTHS / 12:.0f} years for HCC. Are "
                        "these times in weeks or days? Set `time_unit` to the table's unit")
    rate = float(event.mean())
    if not EVENT_RATE_BOUNDS[0] <= rate <= EVENT_RATE_BOUNDS[1]:
        warnings.append(f"{100 * rate:.0f}% of patients progressed ({int(event.sum())} of {len(event)}), read with "
                        f"`event_coding: {event_coding}`: check that 1 means progression in the event column, or "
                        "set `event_coding: censored=1`")
    if event.any() and (event == 0).any():
        progressed, censored = float(np.median(time[event == 1])), float(np.median(time[event == 0]))
        if censored > 0 and progressed / censored > MAX_EVENT_FOLLOW_UP_RATIO:
            warnings.append(f"patients coded as progressed were followed {progressed / censored:.1f} times longer "
                            f"(median {progressed:.1f} months) than those coded as censored ({censored:.1f}), read "
                            f"with `event_coding: {event_coding}`: is the event column reversed? Check its coding "
                            "(`event_coding: censored=1` if 1 means censored)")
    return warnings


def rare_category_warnings(table: pd.DataFrame, fields: tuple[str, ...] = ("child_pugh", "bclc", "treatment")
                           ) -> list[str]:
    """A category seen in at most :data:`RARE_CATEGORY_COUNT` patients, or spelled close to a larger one
    (``Cisplastin`` beside ``Cisplatin, ...``), named with the remedy (``value_maps`` or
    ``treatment_categories``)."""
    import difflib

    warnings = []
    for field_name in fields:
        if field_name not in table:
            continue
        counts = table[field_name].dropna().astype(str).value_counts()
        for category, count in counts.items():
            larger = [other for other, n in counts.items() if n > count and other != category]
            close = difflib.get_close_matches(category, larger, n=1, cutoff=0.6)
            if count <= RARE_CATEGORY_COUNT or close:
                like = f", close to {close[0]!r} (n = {counts[close[0]]})" if close else ""
                remedy = "`treatment_categories`" if field_name == "treatment" else "`value_maps`"
                warnings.append(f"{field_name} {category!r} is seen in {count} patient(s){like}: a typing variant? "
                                f"Merge it with `value_maps: {{{field_name}: {{{category!r}: ...}}}}` or list the "
                                f"allowed values in {remedy}")
    return warnings


def study_summary(table: pd.DataFrame, mapping: dict[str, str], time_unit: str, event_coding: str,
                  value_maps: dict[str, dict[str, str]], horizons: tuple[float, ...] = (6.0, 12.0),
                  afp_cutoff: float = PAPER_AFP_CUTOFF_NG_ML, missing: dict[str, int] | None = None) -> str:
    """What ``hccrad validate`` understood of a study, as Markdown: the mapping (table column -> field, unit and
    conversion, event coding, value maps), patients and events per center and set, PFS in months (median by
    Kaplan-Meier, range, median follow-up by reverse Kaplan-Meier, progressions by each horizon), each clinical
    factor's categories per set (AFP as median [IQR] and the count at or above the cut-off), and missing values.

    Parameters
    ----------
    table
        The valid patients (``Study.table()``): ``center``, ``dataset``, ``pfs_months``, ``pfs_event``, ``afp``,
        ``child_pugh``, ``bclc``, ``treatment``.
    mapping
        hccrad field -> table column, for the fields the manifest maps.
    missing
        Per hccrad field, the rows with no value.
    """
    from hccrad.io.config import MONTHS_PER_UNIT

    factor = MONTHS_PER_UNIT[time_unit]
    lines = ["# What hccrad understood of the study", "", "## Mapping", "",
             "| table column | hccrad field |", "|---|---|"]
    lines += [f"| {column} | {field_name} |" for field_name, column in mapping.items()]
    conversion = ("no conversion" if time_unit == "months" else
                  f"months = {time_unit} x {factor:.6g} (1 month = 30.4375 days)")
    lines += ["", f"Follow-up read in **{time_unit}** ({conversion}); event coding `{event_coding}` "
                  f"({'1 = progression' if event_coding == 'event=1' else '1 = censored, so 0 = progression'})."]
    for field_name, values in value_maps.items():
        lines.append(f"Value map for {field_name}: " + ", ".join(f"{k!r} -> {v!r}" for k, v in values.items()) + ".")
    sets = [s for s in ("training", "validation") if (table["dataset"] == s).any()]
    lines += ["", "## Patients", "", "| center | set | patients | progressions |", "|---|---|---|---|"]
    for (center, dataset), group in table.groupby(["center", "dataset"], sort=True):
        lines.append(f"| {center} | {dataset} | {len(group)} | {int(group['pfs_event'].sum())} |")
    lines += ["", "## Progression-free survival (months)", "",
              "| | " + " | ".join(sets + ["all"]) + " |", "|---" * (len(sets) + 2) + "|"]
    subsets = [table[table["dataset"] == s] for s in sets] + [table]

    def row(label: str, function) -> str:
        return f"| {label} | " + " | ".join(function(subset) for subset in subsets) + " |"

    def median(subset: pd.DataFrame) -> str:
        return format_median(km_median(subset["pfs_months"].to_numpy(float), subset["pfs_event"].to_numpy(int)))

    def follow_up(subset: pd.DataFrame) -> str:
        event = subset["pfs_event"].to_numpy(int)
        if not (event == 0).any():
            return "not estimable (no censored patient)"
        return format_median(km_median(subset["pfs_months"].to_numpy(float), 1 - event))

    lines.append(row("patients (progressions)", lambda s: f"{len(s)} ({int(s['pfs_event'].sum())})"))
    lines.append(row("median PFS (Kaplan-Meier)", median))
    lines.append(row("range", lambda s: f"{s['pfs_months'].min():.1f}-{s['pfs_months'].max():.1f}"))
    lines.append(row("median follow-up (reverse Kaplan-Meier)", follow_up))
    for horizon in horizons:
        lines.append(row(f"progressed by {horizon:g} months",
                         lambda s, h=horizon: str(int(((s["pfs_months"] <= h) & (s["pfs_event"] == 1)).sum()))))
    lines += ["", "## Clinical factors", "", "| factor | value | " + " | ".join(sets) + " |",
              "|---|---|" + "---|" * len(sets)]
    if "afp" in table and table["afp"].notna().any():
        afp = {s: pd.to_numeric(table.loc[table["dataset"] == s, "afp"], errors="coerce") for s in sets}
        lines.append("| AFP, ng/mL | median [IQR] | " + " | ".join(
            f"{a.median():.1f} [{a.quantile(.25):.1f}-{a.quantile(.75):.1f}]" for a in afp.values()) + " |")
        lines.append(f"| AFP | >= {afp_cutoff:g} ng/mL | " + " | ".join(
            f"{int((a >= afp_cutoff).sum())}" for a in afp.values()) + " |")
    for field_name, label in (("child_pugh", "Child-Pugh"), ("bclc", "BCLC"), ("treatment", "treatment")):
        if field_name not in table:
            continue
        for category in sorted(table[field_name].dropna().astype(str).unique()):
            lines.append(f"| {label} | {category} | " + " | ".join(
                str(int((table.loc[table["dataset"] == s, field_name].astype(str) == category).sum()))
                for s in sets) + " |")
    if missing:
        lines += ["", "## Missing values", "", "| field | rows without a value |", "|---|---|"]
        lines += [f"| {field_name} | {count} |" for field_name, count in missing.items()]
    return "\n".join(lines) + "\n"
