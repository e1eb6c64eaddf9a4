"""Subgroups, risk groups, risk-score distributions and decision curves."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from hccrad.evaluate.discrimination import binary_outcome_at, delong_auc, influence_se, ipcw_auc_influence
from hccrad.evaluate.horizon import DEFAULT_RULE, EventAtHorizon, km_event, km_median
from hccrad.io.config import PAPER_AFP_CUTOFF_NG_ML


def subgroup_definitions(table: pd.DataFrame, afp_cutoff: float = PAPER_AFP_CUTOFF_NG_ML) -> dict[str, pd.Series]:
    """The paper's subgroup factors as labelled Series: AFP level, BCLC stage, Child-Pugh grade, treatment."""
    afp = pd.to_numeric(table["afp"], errors="coerce")
    return {
        "AFP level": pd.Series(np.where(afp.isna(), None, np.where(afp >= afp_cutoff, f">= {afp_cutoff:g} ng/mL",
                                                                    f"< {afp_cutoff:g} ng/mL")), index=table.index),
        "BCLC stage": table["bclc"].map({"0": "0/A", "A": "0/A", "B": "B", "C": "C/D", "D": "C/D"}),
        "Child-Pugh grade": table["child_pugh"].map({"A": "A", "B": "B/C", "C": "B/C"}),
        "Treatment style": table["treatment"],
    }


def _heterogeneity(factor: str, estimates: list[tuple[float, float]]) -> dict:
    """Cochran's Q that independent subgroup AUCs (value, SE) are equal, on k - 1 degrees of freedom."""
    if len(estimates) < 2:
        return {"factor": factor, "q": np.nan, "df": 0, "p": np.nan}
    aucs, ses = np.array(estimates).T
    weights = 1 / ses**2
    pooled = np.sum(weights * aucs) / weights.sum()
    q = float(np.sum(weights * (aucs - pooled) ** 2))
    return {"factor": factor, "q": q, "df": len(aucs) - 1, "p": float(stats.chi2.sf(q, len(aucs) - 1))}


def subgroup_auc_note(cases: int, controls: int) -> str:
    """Why a subgroup's AUC is not estimated, or "" when it is: fewer than two progressions or two
    progression-free patients at the horizon."""
    if cases < 2:
        return f"not estimable: too few progressions ({cases})"
    if controls < 2:
        return f"not estimable: too few progression-free ({controls})"
    return ""


def subgroup_auc(table: pd.DataFrame, score_column: str, horizon: float, afp_cutoff: float = PAPER_AFP_CUTOFF_NG_ML,
                 rule: EventAtHorizon = DEFAULT_RULE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AUC at ``horizon`` within each subgroup, and a test that it does not differ between a factor's subgroups.

    The primary AUC (``auc``, ``ci_low``, ``ci_high``, ``se``) is the IPCW cumulative/dynamic AUC of the
    subgroup's patients, censoring estimated within the subgroup, with its influence-function SE and a Wald 95%
    CI clipped to [0, 1]. Beside it, ``auc_complete_case`` (with CI) is the paper's binary AUC with DeLong's
    variance, patients censored before the horizon left out. The heterogeneity test is Cochran's Q over the
    subgroups' IPCW AUCs (independent patients, df = k - 1), in ``q``/``p``; ``p_complete_case`` is the same
    test on the complete-case AUCs. Cases and controls follow ``rule`` (:mod:`hccrad.evaluate.horizon`).
    """
    outcome = binary_outcome_at(table["pfs_months"], table["pfs_event"], horizon, rule)
    time, event = table["pfs_months"].to_numpy(float), table["pfs_event"].to_numpy(int)
    scores = table[score_column].to_numpy(float)
    z = stats.norm.ppf(0.975)
    rows, tests = [], []
    for factor, labels in subgroup_definitions(table, afp_cutoff).items():
        estimates, complete_estimates = [], []
        for level in sorted(labels.dropna().unique(), key=str):
            members = (labels == level).to_numpy()
            complete = members & ~np.isnan(outcome)
            y = outcome[complete]
            row = {"factor": factor, "subgroup": level, "n": int(members.sum()), "cases": int((y == 1).sum()),
                   "controls": int((y == 0).sum()), "censored_before": int(members.sum() - complete.sum()),
                   "auc": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                   "auc_complete_case": np.nan, "ci_low_complete_case": np.nan, "ci_high_complete_case": np.nan}
            row["note"] = subgroup_auc_note(row["cases"], row["controls"])
            if row["cases"] >= 2 and row["controls"] >= 2:
                auc, influence = ipcw_auc_influence(time[members], event[members], scores[members], horizon, rule)
                se = influence_se(influence)
                if np.isfinite(auc) and np.isfinite(se) and se > 1e-12:
                    row.update(auc=auc, se=se, ci_low=min(auc, max(0.0, auc - z * se)),
                               ci_high=max(auc, min(1.0, auc + z * se)))
                    estimates.append((auc, se))
                elif np.isfinite(auc):  # AUC 0 or 1: every case above (or below) every control, SE 0
                    row.update(auc=auc, note=f"95% CI not estimable: AUC {auc:.2f} with SE 0 (complete "
                                             f"separation of cases and controls)")
                else:
                    row["note"] = "not estimable: no censoring-weighted case-control pair"
                binary = delong_auc(scores[complete], y)
                row.update(auc_complete_case=binary.auc, ci_low_complete_case=binary.ci_low,
                           ci_high_complete_case=binary.ci_high)
                if binary.se > 0:
                    complete_estimates.append((binary.auc, binary.se))
            rows.append(row)
        test = _heterogeneity(factor, estimates)
        test["p_complete_case"] = _heterogeneity(factor, complete_estimates)["p"]
        tests.append(test)
    return pd.DataFrame(rows), pd.DataFrame(tests)


def risk_score_by_outcome(table: pd.DataFrame, score_column: str, horizon: float,
                          rule: EventAtHorizon = DEFAULT_RULE) -> dict[str, float]:
    """Risk scores of patients with progression by ``horizon`` (the cases of ``rule``) vs progression-free beyond
    it (Mann-Whitney)."""
    outcome = binary_outcome_at(table["pfs_months"], table["pfs_event"], horizon, rule)
    scores = table[score_column].to_numpy(float)
    progressed, free = scores[outcome == 1], scores[outcome == 0]
    p = float(stats.mannwhitneyu(progressed, free, alternative="two-sided").pvalue) if len(progressed) and len(
        free) else np.nan
    return {"n_progressed": len(progressed), "n_free": len(free),
            "median_progressed": float(np.median(progressed)) if len(progressed) else np.nan,
            "median_free": float(np.median(free)) if len(free) else np.nan, "mann_whitney_p": p}


def risk_group_logrank(table: pd.DataFrame, group_column: str) -> dict[str, float]:
    """Log-rank test of PFS between the high- and low-risk groups, with each group's median PFS."""
    from lifelines.statistics import logrank_test

    high = (table[group_column] == "high").to_numpy()
    low = (table[group_column] == "low").to_numpy()
    time, event = table["pfs_months"].to_numpy(float), table["pfs_event"].to_numpy(int)
    result = {"n_high": int(high.sum()), "n_low": int(low.sum()), "logrank_p": np.nan,
              "median_pfs_high": np.nan, "median_pfs_low": np.nan}
    if high.any() and low.any():
        result["logrank_p"] = float(logrank_test(time[high], time[low], event[high], event[low]).p_value)
        result["median_pfs_high"] = km_median(time[high], event[high])  # NaN: not reached
        result["median_pfs_low"] = km_median(time[low], event[low])
    return result


def decision_curve(table: pd.DataFrame, risk_columns: dict[str, str], horizon: float,
                   thresholds: np.ndarray | None = None, rule: EventAtHorizon = DEFAULT_RULE) -> pd.DataFrame:
    """Net benefit vs threshold probability at ``horizon`` (dcurves, survival outcome: Kaplan-Meier risks at t,
    an event exactly at t counted as ``rule`` says), with treat-all/none."""
    import dcurves

    thresholds = thresholds if thresholds is not None else np.round(np.arange(0.05, 0.96, 0.05), 2)
    time = table["pfs_months"].to_numpy(float)
    data = pd.DataFrame({"time": time, "event": km_event(time, table["pfs_event"].to_numpy(int), horizon, rule)})
    for name, column in risk_columns.items():
        data[name] = table[column].to_numpy(float)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        result = dcurves.dca(data=data, outcome="event", modelnames=list(risk_columns), thresholds=thresholds,
                             time=horizon, time_to_outcome_col="time")
    return result[["model", "threshold", "net_benefit"]].reset_index(drop=True)
