"""Publication figures in one consistent style, written as PNG and SVG (text kept as text in SVG).

Each figure prints the numbers of its table (AUCs, p-values, HRs) with the same rounding, so a reader (and
the tests) can match figure and table.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hccrad.evaluate.discrimination import binary_outcome_at, roc_curve_points  # noqa: E402
from hccrad.evaluate.horizon import DEFAULT_RULE, EventAtHorizon  # noqa: E402
from hccrad.evaluate.style import MODEL_COLORS  # noqa: E402  (one colour per model, in every output)
from hccrad.io.layout import group_column, risk_column

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "figure.dpi": 110,
    "savefig.dpi": 200, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
}


def fmt(value: float, digits: int = 3) -> str:
    """The rounding shared by tables' display and figures."""
    return "NA" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p-value for a figure: ``<0.001``, three decimals, or ``NA``."""
    if p is None or not np.isfinite(p):
        return "NA"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_label(p: float) -> str:
    """``p=0.012`` or ``p<0.001``."""
    text = fmt_p(p)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def save(figure: plt.Figure, folder: Path, name: str) -> list[Path]:
    """Write ``figure`` as ``<folder>/<name>.png`` and ``.svg``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in ("png", "svg"):
        path = folder / f"{name}.{suffix}"
        figure.savefig(path, bbox_inches="tight")
        paths.append(path)
    plt.close(figure)
    return paths


def legend_below(axis, ncol: int = 1) -> None:
    """The axis's legend under its x-axis label, outside the data area: no curve, point or error bar crosses it
    (figures are saved with ``bbox_inches="tight"``, so it is kept)."""
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False, fontsize=7)


def log_ticks(low: float, high: float, max_labels: int = 7) -> list[float]:
    """Ticks of a log axis from ``low`` to ``high`` that never crowd: 1-2-5 steps per decade, then decades only,
    then every second (third, ...) decade keeping 1, until at most ``max_labels`` (at least 2) remain."""
    candidates = [m * 10.0 ** e for e in range(int(np.floor(np.log10(low))) - 1, int(np.ceil(np.log10(high))) + 1)
                  for m in (1, 2, 5)]
    ticks = [t for t in candidates if low <= t <= high] or [1.0]
    max_labels = max(2, max_labels)
    if len(ticks) > max_labels:
        ticks = [t for t in ticks if np.isclose(np.log10(t), round(np.log10(t)))]
    step = 1
    while len(ticks) > max_labels and step < 10:
        step += 1
        thinned = [t for t in ticks if round(np.log10(t)) % step == 0]
        ticks = thinned if len(thinned) >= 2 else [ticks[0], ticks[-1]]
    return ticks


def interval_errors(estimate, low, high) -> tuple[np.ndarray, np.ndarray]:
    """Error-bar lengths below and above each estimate (shape (n,)), for matplotlib's ``xerr``/``yerr``.

    A bound that is missing, or lies on the wrong side of its estimate by more than rounding (1e-9), gives NaN,
    and matplotlib then draws the point without that bar; a rounding-sized overshoot (an interval clipped to
    [0, 1] around an AUC of 1 with an SE of 1e-17) is 0. So a degenerate or missing interval never stops a figure.
    """
    estimate, low, high = (np.asarray(a, float) for a in (estimate, low, high))
    with np.errstate(invalid="ignore"):
        below, above = estimate - low, high - estimate
        below = np.where(below < -1e-9, np.nan, np.maximum(below, 0.0))
        above = np.where(above < -1e-9, np.nan, np.maximum(above, 0.0))
    return below, above


def forest_plot(hazards: pd.DataFrame, folder: Path, name: str = "hazard_ratios") -> list[Path]:
    """Supplementary Figure 1 (:func:`forest_figure`) written as PNG and SVG."""
    with plt.rc_context(STYLE):  # the style's save settings (SVG text as text) apply when saving
        return save(forest_figure(hazards), folder, name)


def forest_figure(hazards: pd.DataFrame) -> plt.Figure:
    """Supplementary Figure 1: HR with 95% CI of every model's factors (one log scale for all, at most seven tick
    labels, whole feature names)."""
    bounds = pd.concat([hazards["ci_low"], hazards["ci_high"]]).replace([np.inf, -np.inf], np.nan)
    bounds = bounds[bounds > 0]
    low_all = min(0.5, max(1e-3, float(bounds.min()))) if len(bounds) else 0.5
    high_all = max(2.0, min(1e3, float(bounds.max()))) if len(bounds) else 2.0
    ticks = log_ticks(low_all, high_all)
    with plt.rc_context(STYLE):
        models = list(dict.fromkeys(hazards["model"]))
        heights = [max(1, (hazards["model"] == m).sum()) for m in models]
        figure, axes = plt.subplots(len(models), 1, figsize=(8, 0.28 * sum(heights) + 1.2 * len(models)),
                                    gridspec_kw={"height_ratios": heights}, squeeze=False)
        for axis, model in zip(axes[:, 0], models, strict=True):
            rows = hazards[hazards["model"] == model].reset_index(drop=True)
            y = np.arange(len(rows))[::-1]
            low = np.clip(rows["ci_low"], low_all, high_all)
            high = np.clip(rows["ci_high"], low_all, high_all)
            hr = np.clip(rows["hr"], low_all, high_all)
            axis.errorbar(hr, y, xerr=list(interval_errors(hr, low, high)), fmt="s",
                          color=MODEL_COLORS.get(model, "k"), capsize=2, markersize=4)
            axis.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
            axis.set_xscale("log")
            axis.set_xlim(low_all, high_all)
            axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.set_yticks(y)
            axis.set_yticklabels(rows["covariate"])  # whole names: the figure widens, a cut name is unreadable
            for yy, (_, row) in zip(y, rows.iterrows(), strict=True):
                axis.annotate(f"{fmt(row['hr'], 2)} ({fmt(row['ci_low'], 2)}-{fmt(row['ci_high'], 2)}), "
                              f"{p_label(row['p'])}", (1.01, yy), xycoords=("axes fraction", "data"),
                              va="center", fontsize=7)
            axis.set_title(f"{model} model", loc="left")
        axes[-1, 0].set_xlabel("Hazard ratio (95% CI), log scale")
        figure.tight_layout()
        return figure


def roc_figure(predictions: pd.DataFrame, models: list[str], horizon: float, dataset: str,
               aucs: pd.DataFrame, folder: Path, name: str, rule: EventAtHorizon = DEFAULT_RULE) -> list[Path]:
    """ROC curves (binary definition at the horizon, cases by ``rule``) of several models, AUC with 95% CI in the
    legend."""
    subset = predictions[predictions["dataset"] == dataset]
    labels = binary_outcome_at(subset["pfs_months"], subset["pfs_event"], horizon, rule)
    keep = ~np.isnan(labels)
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(4.2, 4.2))
        for model in models:
            row = aucs[(aucs["model"] == model) & (aucs["dataset"] == dataset) & (aucs["horizon"] == horizon)]
            scores = subset[risk_column(model)].to_numpy(float)
            scored = keep & np.isfinite(scores)  # the tables' subset: patients the model could score
            unscored = int(np.count_nonzero(~np.isfinite(scores)))
            fpr, tpr = roc_curve_points(scores[scored], labels[scored])
            r = row.iloc[0]
            left_out = f"; {unscored} unscored left out" if unscored else ""
            axis.plot(fpr, tpr, color=MODEL_COLORS.get(model), label=f"{model}: AUC {fmt(r['auc_binary'])} "
                      f"({fmt(r['auc_binary_ci_low'])}-{fmt(r['auc_binary_ci_high'])}){left_out}")
        axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
        axis.set_xlabel("1 - specificity")
        axis.set_ylabel("Sensitivity")
        axis.set_title(f"{dataset.capitalize()}, {horizon:g}-month PFS")
        legend_below(axis)
        return save(figure, folder, name)


def calibration_axis(axis, groups: pd.DataFrame, smooth: pd.DataFrame | None, summary: dict, model: str) -> None:
    """Draw one model's grouped calibration (points with 95% CIs), smooth curve and summary on ``axis``."""
    color = MODEL_COLORS.get(model, "k")
    below, above = interval_errors(groups["observed"], groups["observed_ci_low"], groups["observed_ci_high"])
    axis.errorbar(groups["predicted"], groups["observed"], yerr=[below, above],
                  fmt="o", color=color, capsize=2, markersize=4,
                  label=f"{model}: ICI {fmt(summary['ici'])}, slope {fmt(summary['slope'], 2)}")
    if smooth is not None:
        order = np.argsort(smooth["predicted"].to_numpy())
        axis.plot(smooth["predicted"].to_numpy()[order], smooth["observed"].to_numpy()[order], color=color,
                  linewidth=1)
    axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("Predicted probability of progression")
    axis.set_ylabel("Observed (Kaplan-Meier)")


def calibration_figure(entries: list[tuple[str, pd.DataFrame, pd.DataFrame, dict]], title: str, folder: Path,
                       name: str) -> list[Path]:
    """Calibration plot of several models (entries: model, groups, smooth curve, summary); returns the files."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(4.2, 4.2))
        for model, groups, smooth, summary in entries:
            calibration_axis(axis, groups, smooth, summary, model)
        axis.set_title(title)
        legend_below(axis)
        return save(figure, folder, name)


def box_figure(predictions: pd.DataFrame, models: list[str], horizon: float, dataset: str,
               stats_table: pd.DataFrame, folder: Path, name: str, rule: EventAtHorizon = DEFAULT_RULE) -> list[Path]:
    """Supplementary Figure 3: risk scores of patients with vs without progression by the horizon (cases by
    ``rule``)."""
    subset = predictions[predictions["dataset"] == dataset]
    labels = binary_outcome_at(subset["pfs_months"], subset["pfs_event"], horizon, rule)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, len(models), figsize=(2.6 * len(models), 3.4), squeeze=False)
        for axis, model in zip(axes[0], models, strict=True):
            scores = subset[risk_column(model)].to_numpy(float)
            scored = np.isfinite(scores)  # the tables' subset: patients the model could score
            data = [scores[scored & (labels == 1)], scores[scored & (labels == 0)]]
            axis.boxplot(data, widths=0.6)
            if (~scored).any():
                axis.text(0.5, -0.22, f"{int((~scored).sum())} unscored left out", transform=axis.transAxes,
                          ha="center", fontsize=7)
            axis.set_xticks([1, 2])
            case_label = f"PD <= {horizon:g} m" if rule == "case" else f"PD < {horizon:g} m"
            axis.set_xticklabels([case_label, f"no PD > {horizon:g} m"])
            row = stats_table[(stats_table["model"] == model) & (stats_table["dataset"] == dataset)
                              & (stats_table["horizon"] == horizon)].iloc[0]
            axis.set_title(f"{model}: Mann-Whitney {p_label(row['mann_whitney_p'])}")
            axis.set_ylabel("Risk score")
        figure.suptitle(f"{dataset.capitalize()} set")
        figure.tight_layout()
        return save(figure, folder, name)


def subgroup_figure(rows: pd.DataFrame, tests: pd.DataFrame, title: str, folder: Path, name: str) -> list[Path]:
    """Supplementary Figure 4: AUC (95% CI) of C-T&L within subgroups, with the heterogeneity p per factor."""
    rows = rows.reset_index(drop=True)
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(6.5, 0.32 * len(rows) + 1.2))
        y = np.arange(len(rows))[::-1]
        valid = rows["auc"].notna().to_numpy()
        below, above = interval_errors(rows["auc"], rows["ci_low"], rows["ci_high"])
        if valid.any():
            axis.errorbar(rows["auc"][valid], y[valid], xerr=[below[valid], above[valid]],
                          fmt="o", color=MODEL_COLORS["C-T&L"], capsize=2, markersize=4)
        labels = []
        for _, row in rows.iterrows():
            labels.append(f"{row['factor']}: {row['subgroup']} (n={row['n']})")
        axis.set_yticks(y)
        axis.set_yticklabels(labels)
        for yy, (_, row) in zip(y, rows.iterrows(), strict=True):
            text = fmt(row["auc"]) if np.isfinite(row["auc"]) else str(row.get("note") or "not estimable")
            axis.annotate(text, (1.01, yy), xycoords=("axes fraction", "data"), va="center", fontsize=7)
        axis.axvline(0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.set_xlim(0, 1)
        axis.set_xlabel("IPCW AUC (95% CI, influence function)")
        notes = "; ".join(f"{r['factor']} " + (p_label(r["p"]) if np.isfinite(r["p"]) else
                                                "not testable (fewer than two subgroups with an AUC and its SE)")
                          for _, r in tests.iterrows())
        axis.set_title(f"{title}\nheterogeneity: {notes}", fontsize=8)
        return save(figure, folder, name)


def km_figure(predictions: pd.DataFrame, model: str, dataset: str, logrank: dict, folder: Path,
              name: str) -> list[Path]:
    """Kaplan-Meier PFS of the high- and low-risk groups with the log-rank p and numbers at risk."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    subset = predictions[predictions["dataset"] == dataset]
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5, 4.2))
        fitters = []
        for group, color in (("low", "#4C72B0"), ("high", "#C44E52")):
            mask = subset[group_column(model)] == group
            if not mask.any():
                continue
            fitter = KaplanMeierFitter(label=f"{group} risk (n={int(mask.sum())})")
            fitter.fit(subset.loc[mask, "pfs_months"], subset.loc[mask, "pfs_event"])
            fitter.plot_survival_function(ax=axis, color=color, ci_show=True)
            fitters.append(fitter)
        unscored = int((~subset[group_column(model)].isin(["low", "high"])).sum())
        left_out = f" ({unscored} unscored left out)" if unscored else ""
        axis.set_title(f"{model} model, {dataset} set: log-rank {p_label(logrank['logrank_p'])}{left_out}")
        axis.set_xlabel("Months")
        axis.set_ylabel("Progression-free survival")
        axis.set_ylim(0, 1.02)
        if fitters:
            add_at_risk_counts(*fitters, ax=axis, rows_to_show=["At risk"])
        figure.tight_layout()
        return save(figure, folder, name)


def decision_figure(curves: pd.DataFrame, title: str, folder: Path, name: str) -> list[Path]:
    """Decision curves (net benefit against threshold probability) of every model in ``curves``."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5, 3.8))
        for model, rows in curves.groupby("model", sort=False):
            style = {"all": dict(color="grey", linestyle="--"), "none": dict(color="black", linestyle=":")}.get(
                model, dict(color=MODEL_COLORS.get(model)))
            axis.plot(rows["threshold"], rows["net_benefit"], label=model, **style)
        top = curves["net_benefit"].max()
        axis.set_ylim(-0.05, max(0.05, top * 1.1))
        axis.set_xlabel("Threshold probability of progression")
        axis.set_ylabel("Net benefit")
        axis.set_title(title)
        legend_below(axis, ncol=3)
        return save(figure, folder, name)
