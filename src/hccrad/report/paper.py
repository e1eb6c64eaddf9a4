"""The paper folder: the study's tables and figures in the paper's numbering, as a journal takes them.

``<output_dir>/report/paper/`` holds, from the run's own files:

* tables (each as CSV, Word and LaTeX, and all of them in ``tables.docx`` with captions and footnotes), captioned
  in the paper's numbering (``report: {item_format}``, default "Supplementary {kind} {number}"): the baseline
  characteristics (``table1``; not numbered in the paper's supplement), Supplementary Table 1 (acquisition),
  Supplementary Table 2 (candidate morphological factors, ``table2``), Supplementary Table 3 (identified factors,
  ``table3``), Supplementary Table 4 (model comparisons, ``table4``: DeLong as in the paper, the censoring-aware
  comparison beside it) and the C-index/AUC summary of the abstract (not numbered);
* figures (each as vector PDF with embedded fonts, SVG and PNG at 300 dpi, sized for a two-column journal page,
  colour-blind-safe colours, panel letters): Supplementary Figure 1 (hazard ratios with the paper's coding and a
  legend), Supplementary Figure 2 (ROC and calibration, T vs T&L, panels a-h), Supplementary Figure 3 (risk-score
  boxes), Supplementary Figure 4 (subgroups, a-p);
* ``methods.md`` / ``.docx`` (written from the run) and ``tripod_ai.md`` / ``.docx`` (the TRIPOD+AI checklist with
  where the outputs address each item), see :mod:`hccrad.report.methods`;
* ``README.md``: what is where.

Numbers are written by :mod:`hccrad.report.formatting`, the same rules the HTML report uses.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hccrad.evaluate.figures import interval_errors, log_ticks  # noqa: E402
from hccrad.evaluate.style import MODEL_COLORS, OKABE_ITO  # noqa: E402,F401  (the one definition)
from hccrad.io.files import write_atomic  # noqa: E402
from hccrad.io.manifest import Study  # noqa: E402
from hccrad.report.formatting import (  # noqa: E402
    FOOTNOTES,
    format_estimate,
    format_horizon,
    format_number,
    format_p,
    is_missing,
    latex_escape,
    missing_auc_reason,
)

#: Journal figure widths (inches): one column 89 mm, two columns 183 mm.
ONE_COLUMN_IN, TWO_COLUMN_IN = 3.5, 7.2
STYLE = {"font.family": "DejaVu Sans", "font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7,
         "legend.fontsize": 6, "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "axes.spines.top": False,
         "axes.spines.right": False, "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
         "savefig.dpi": 300}
PANEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class PaperTable:
    """One table of the paper: its file name, caption, rows (already formatted text) and footnotes."""
    name: str
    caption: str
    frame: pd.DataFrame
    footnotes: list[str] = field(default_factory=list)


@dataclass
class PaperFigure:
    """One figure: its file name, caption, and the function that draws it."""
    name: str
    caption: str
    draw: Callable[[], plt.Figure]


def read_stage_table(path: Path) -> pd.DataFrame | None:
    """A table written by a stage; None when the stage did not write it, empty when it had no rows."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


_read = read_stage_table


def _horizon_note(frame: pd.DataFrame | None) -> list[str]:
    if frame is None or "event_at_horizon" not in frame:
        return []
    return [FOOTNOTES[f"horizon_{rule}"] for rule in sorted(set(frame["event_at_horizon"].dropna()))
            if f"horizon_{rule}" in FOOTNOTES]


# --- tables ------------------------------------------------------------------------------------------------

def table_one(study: Study) -> PaperTable | None:
    frame = _read(study.config.layout.evaluation_table("table1"))
    if frame is None:
        return None
    rows = frame.fillna("")
    tests = sorted({str(t) for t in rows.get("test", pd.Series(dtype=str)) if str(t)})
    out = pd.DataFrame({"Characteristic": rows["characteristic"], "Training set": rows["training"],
                        "Validation set": rows["validation"],
                        "p": [format_p(p) if not is_missing(p) else "" for p in rows["p"]]})
    notes = ["Continuous variables: median [interquartile range]; categorical: n (%)."]
    if tests:
        notes.append("p: training versus validation set, by " + ", ".join(tests) + ".")
    return PaperTable("table1", "Baseline characteristics (not numbered in the paper's supplement) of the patients "
                      "in the training and validation "
                                "sets.", out, notes)


def supplementary_table_one(study: Study) -> PaperTable | None:
    frame = _read(study.config.layout.acquisition_summary)
    if frame is None or frame.empty:
        return None

    def text(value: Any) -> str:
        if is_missing(value):
            return "-"
        return f"{value:g}" if isinstance(value, (int, float, np.integer, np.floating)) else str(value)

    table = frame.map(text).rename(columns=lambda c: ACQUISITION_HEADERS.get(c, c.replace("_", " ")))
    return PaperTable("supplementary_table1", f"{_label(study, 'Table', 1)}. CT acquisition parameters per center.",
                      table,
                      ["Read from each CT's DICOM or image header; a range where a center's scans differ; - where "
                       "the headers do not say (a NIfTI CT carries no acquisition parameters)."])


#: Supplementary Table 1's column headings, by the acquisition summary's columns.
ACQUISITION_HEADERS = {"center": "Center", "patients": "Patients", "scanner": "Scanner",
                       "tube_voltage_kv": "Tube voltage (kV)", "tube_current_ma": "Tube current (mA)",
                       "rotation_time_s": "Rotation time (s)", "detector_collimation_mm": "Detector collimation (mm)",
                       "fov_mm": "FOV (mm)", "pixel_matrix": "Matrix", "kernel": "Reconstruction kernel",
                       "slice_thickness_mm": "Slice thickness (mm)"}


def table_two(study: Study) -> PaperTable | None:
    from hccrad.features.morphology import PAPER_MORPHOLOGY_NAMES

    path = study.config.layout.feature_table
    if not path.is_file():
        return None
    features = pd.read_parquet(path)
    rows = []
    for paper, column in PAPER_MORPHOLOGY_NAMES.items():
        if column not in features:
            continue
        group = "Tumor" if column.startswith("Tumor_") and not column.startswith("Tumor_to_Rliver") else \
            "Liver parenchyma"
        row = {"Classification": group, "Factor": paper}
        for dataset, label in (("training", "Training set"), ("validation", "Validation set")):
            values = features.loc[features["dataset"] == dataset, column].dropna()
            row[label] = (f"{values.median():.2f} [{values.quantile(.25):.2f}-{values.quantile(.75):.2f}]"
                          if len(values) else "no patient")
        rows.append(row)
    return PaperTable("table2", f"{_label(study, 'Table', 2)}. Candidate morphological factors of the tumor and the "
                      "liver parenchyma.",
                      pd.DataFrame(rows),
                      ["Median [interquartile range]. Volumes in mL, CT attenuation in HU; the attenuation 'at a "
                       "rate of q' is p1 + q (p99 - p1) of the region's HU (hccrad's definition; the paper does not "
                       "define it)."])


def figure_codes(selected: pd.DataFrame) -> pd.DataFrame:
    """Supplementary Figure 1's coding of the factors: C-a, C-b ... for clinical factors, T-a ... for the tumor's,
    L-a ... for the liver's (and TL for the T&L risk score), in the order the models list them."""
    from hccrad.features.names import factor_group, paper_name

    prefixes = {"clinical": "C", "tumor": "T", "liver": "L", "tumor and liver": "TL"}
    order = list(prefixes)
    covariates = sorted(dict.fromkeys(selected["covariate"]), key=lambda c: order.index(factor_group(c)))
    codes, counts = {}, {}
    for covariate in covariates:
        prefix = prefixes[factor_group(covariate)]
        counts[prefix] = counts.get(prefix, 0) + 1
        codes[covariate] = f"{prefix}-{PANEL_LETTERS[counts[prefix] - 1]}" if counts[prefix] <= 26 else \
            f"{prefix}-{counts[prefix]}"
    rows = []
    for covariate, code in codes.items():
        description = selected.loc[selected["covariate"] == covariate, "description"].iloc[0]
        rows.append({"Code": code, "Factor": paper_name(covariate) if factor_group(covariate) != "clinical"
                     else description, "Column": covariate})
    return pd.DataFrame(rows)


def _clinical_description(selected: pd.DataFrame, column: str, fallback: str) -> str:
    """A clinical factor's coding as its model's hazard-ratio table words it (``Child-Pugh grade, per grade (A=0,
    B=1, C=2)``)."""
    rows = selected.loc[selected["covariate"] == column]
    if "description" in rows and len(rows) and isinstance(rows["description"].iloc[0], str):
        return rows["description"].iloc[0]
    return fallback


def table_three(study: Study) -> PaperTable | None:
    from hccrad.features.names import describe_feature, factor_group

    selected = _read(study.config.layout.selected_factors)
    if selected is None or selected.empty:
        return None
    codes = figure_codes(selected)
    models = list(dict.fromkeys(selected["model"]))
    groups = {"clinical": "Clinical factors", "tumor": "Tumor features", "liver": "Liver parenchyma features",
              "tumor and liver": "Tumor and liver"}
    rows = []
    for _, code in codes.iterrows():
        group = factor_group(code["Column"])
        used = set(selected.loc[selected["covariate"] == code["Column"], "model"])
        kind = "clinical" if group == "clinical" else (
            "morphological" if code["Column"].startswith(("Tumor_HU", "Tumor_volume", "Tumor_to", "Rliver_HU",
                                                          "Rliver_volume")) else "high-dimensional")
        rows.append({"Classification": groups[group], "Type": kind, "Code": code["Code"], "Factor": code["Factor"],
                     "Description": (describe_feature(code["Column"]) if group != "clinical"
                                     else _clinical_description(selected, code["Column"], code["Factor"])),
                     **{model: "x" if model in used else "" for model in models}})
    return PaperTable("table3", f"{_label(study, 'Table', 3)}. Factors identified for the models (x: in the model).",
                      pd.DataFrame(rows),
                      ["Selected on the training patients only: univariate Cox screen, correlation filter, "
                       f"LASSO-Cox (see the methods). Codes as in {_label(study, 'Figure', 1)}."])


def table_four(study: Study) -> PaperTable | None:
    delong = _read(study.config.layout.evaluation_table("delong"))
    ipcw = _read(study.config.layout.evaluation_table("auc_comparison"))
    if delong is None or delong.empty:
        return None
    keys = ["comparison", "dataset", "horizon"]
    merged = delong.merge(ipcw, on=keys, how="left", suffixes=("", "_ipcw")) if ipcw is not None else delong
    rows = []
    for _, row in merged.iterrows():
        record = {"Comparison": row["comparison"], "Set": str(row["dataset"]).capitalize(),
                  "Horizon": format_horizon(row["horizon"]),
                  "AUC (first, second)": f"{format_number(row['auc_first'], 3)}, {format_number(row['auc_second'], 3)}",
                  "Difference, DeLong (95% CI)": format_estimate(row["difference"], row["ci_low"], row["ci_high"], 3),
                  "p, DeLong": format_p(row["p"])}
        if "difference_ipcw" in row:
            record["Difference, censoring-aware (95% CI)"] = format_estimate(
                row["difference_ipcw"], row["ci_low_ipcw"], row["ci_high_ipcw"], 3)
            record["p, censoring-aware"] = format_p(row["p_ipcw"])
        rows.append(record)
    notes = [FOOTNOTES["complete_case"], FOOTNOTES["censoring_aware"], FOOTNOTES["apparent"]]
    return PaperTable("table4", f"{_label(study, 'Table', 4)}. Comparison of the models' time-dependent AUCs.",
                      pd.DataFrame(rows),
                      notes + _horizon_note(delong))


def summary_table(study: Study, horizons: list[float]) -> PaperTable | None:
    concordance = _read(study.config.layout.evaluation_table("concordance"))
    discrimination = _read(study.config.layout.evaluation_table("discrimination"))
    if concordance is None or concordance.empty:
        return None
    rows = []
    for _, row in concordance.iterrows():
        record = {"Model": row["model"], "Set": str(row["dataset"]).capitalize(),
                  "Patients (events)": f"{int(row['n'])} ({int(row['events'])})",
                  "C-index (95% CI)": format_estimate(row["harrell_c"], row["harrell_ci_low"], row["harrell_ci_high"],
                                                      3)}
        for horizon in horizons:
            match = None if discrimination is None else discrimination[
                (discrimination["model"] == row["model"]) & (discrimination["dataset"] == row["dataset"])
                & (discrimination["horizon"] == horizon)]
            if match is None or match.empty:
                record[f"AUC at {format_horizon(horizon)} (95% CI)"] = "not estimated"
            elif is_missing(match.iloc[0]["auc_ipcw"]):
                record[f"AUC at {format_horizon(horizon)} (95% CI)"] = missing_auc_reason(
                    match.iloc[0].get("n_cases"), match.iloc[0].get("n_controls"))
            else:
                m = match.iloc[0]
                record[f"AUC at {format_horizon(horizon)} (95% CI)"] = format_estimate(
                    m["auc_ipcw"], m["auc_ipcw_ci_low"], m["auc_ipcw_ci_high"], 3)
        rows.append(record)
    return PaperTable("summary_c_index_auc", "Summary table (not numbered in the paper). C-index and time-dependent "
                                             "AUC of each model, as the "
                                             "abstract reports them.", pd.DataFrame(rows),
                      ["C-index: Harrell's, bootstrap 95% CI. AUC: inverse-probability-of-censoring weighted "
                       "cumulative/dynamic AUC (riskRegression's Score), bootstrap 95% CI.", FOOTNOTES["apparent"]]
                      + _horizon_note(discrimination))


# --- figures -----------------------------------------------------------------------------------------------

def _panel(axis, letter: str) -> None:
    """The panel's letter, bold, above the axis's top-left corner, clear of its title and its y label."""
    axis.text(-0.28, 1.04, letter, transform=axis.transAxes, fontsize=9, fontweight="bold", ha="left", va="bottom")


def _tick_text(value: float) -> str:
    return f"{value:g}"


def hazard_ratio_figure(hazards: pd.DataFrame, codes: pd.DataFrame) -> plt.Figure:
    """Supplementary Figure 1 as the paper draws it: per model (panels a-d, stacked) each factor by its code with
    its HR and 95% CI on a log axis, and beside it the columns "HR (95% CI)" and "p" in the tables' rounding; a CI
    that runs off the axis ends in an arrow; the codes' legend below."""
    models = list(dict.fromkeys(hazards["model"]))
    code_of = dict(zip(codes["Column"], codes["Code"], strict=True))
    finite = hazards[["ci_low", "ci_high"]].replace([np.inf, -np.inf], np.nan).stack()
    finite = finite[(finite > 0)]
    low = max(0.05, float(finite.min())) if len(finite) else 0.1
    high = min(20.0, float(finite.max())) if len(finite) else 10.0
    low, high = min(low, 0.5), max(high, 2.0)
    ticks = log_ticks(low, high, 7)
    counts = [max(1, int((hazards["model"] == m).sum())) for m in models]
    legend_lines = (len(codes) + 1) // 2  # two columns
    with plt.rc_context(STYLE):
        figure = plt.figure(figsize=(TWO_COLUMN_IN, 0.17 * sum(counts) + 0.55 * len(models)
                                     + 0.12 * legend_lines + 0.4))
        grid = figure.add_gridspec(len(models) + 1, 1, height_ratios=[0.17 * c + 0.45 for c in counts]
                                   + [0.12 * legend_lines + 0.2])
        for k, model in enumerate(models):
            axis = figure.add_subplot(grid[k, 0])
            rows_of = hazards[hazards["model"] == model].reset_index(drop=True)
            y = len(rows_of) - 1 - np.arange(len(rows_of))
            hr = rows_of["hr"].to_numpy(float)
            ci_low, ci_high = rows_of["ci_low"].to_numpy(float), rows_of["ci_high"].to_numpy(float)
            color = MODEL_COLORS.get(model, "k")
            axis.hlines(y, np.clip(ci_low, low, high), np.clip(ci_high, low, high), color=color, linewidth=1)
            axis.plot(np.clip(hr, low, high), y, "s", color=color, markersize=3)
            off_right, off_left = ci_high > high, ci_low < low
            axis.plot(np.full(off_right.sum(), high), y[off_right], ">", color=color, markersize=3.5, clip_on=False)
            axis.plot(np.full(off_left.sum(), low), y[off_left], "<", color=color, markersize=3.5, clip_on=False)
            axis.axvline(1.0, color="grey", linewidth=0.6, linestyle=":")
            axis.set_xscale("log")
            axis.set_xlim(low, high)
            axis.set_xticks(ticks, [_tick_text(t) for t in ticks])
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.set_yticks(y, [code_of.get(c, c) for c in rows_of["covariate"]])
            axis.set_ylim(-0.7, len(rows_of) - 0.3)
            axis.set_title(f"{model} model", loc="left")
            for yy, row in zip(y, rows_of.itertuples(), strict=True):
                axis.text(1.04, yy, format_estimate(row.hr, row.ci_low, row.ci_high, 2), va="center", ha="left",
                          fontsize=6, transform=axis.get_yaxis_transform())
                axis.text(1.40, yy, format_p(row.p), va="center", ha="left", fontsize=6,
                          transform=axis.get_yaxis_transform())
            axis.text(1.04, len(rows_of) - 0.3, "HR (95% CI)", va="bottom", ha="left", fontsize=6, fontweight="bold",
                      transform=axis.get_yaxis_transform())
            axis.text(1.40, len(rows_of) - 0.3, "p", va="bottom", ha="left", fontsize=6, fontweight="bold",
                      transform=axis.get_yaxis_transform())
            if k == len(models) - 1:
                axis.set_xlabel("Hazard ratio (log scale)")
            _panel(axis, PANEL_LETTERS[k])
        legend = figure.add_subplot(grid[len(models), 0])
        legend.axis("off")
        text = [f"{row.Code}: {row.Factor}" for row in codes.itertuples()]
        half = (len(text) + 1) // 2
        for column, part in enumerate((text[:half], text[half:])):
            legend.text(0.0 + 0.5 * column, 1.0, "\n".join(part), va="top", ha="left", fontsize=6,
                        transform=legend.transAxes, family="DejaVu Sans")
        figure.subplots_adjust(left=0.08, right=0.58, top=0.97, bottom=0.02, hspace=0.6)
        box = legend.get_position()
        legend.set_position([box.x0, box.y0, 0.9, box.height])  # the codes' legend spans the page
        return figure


def roc_calibration_figure(study: Study, horizons: list[float], rule: str) -> plt.Figure | None:
    """Figure 2: ROC (top row) and calibration (bottom row) of T and T&L, training and validation at each horizon,
    panels a-h; every legend sits below its panel's axis, so no curve, point or error bar crosses it."""
    from hccrad.evaluate.discrimination import binary_outcome_at, roc_curve_points
    from hccrad.io.layout import risk_column

    paths = study.config.layout
    predictions = _read(paths.predictions)
    discrimination = _read(paths.evaluation_table("discrimination"))
    groups = _read(paths.evaluation_table("calibration_groups"))
    summary = _read(paths.evaluation_table("calibration"))
    models = [m for m in ("T", "T&L") if predictions is not None and risk_column(m) in predictions]
    if not models or discrimination is None or groups is None:
        return None
    cells = [(h, d) for h in horizons for d in ("training", "validation")]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(2, len(cells), figsize=(TWO_COLUMN_IN, 5.0), squeeze=False)
        for k, (horizon, dataset) in enumerate(cells):
            subset = predictions[predictions["dataset"] == dataset]
            labels = binary_outcome_at(subset["pfs_months"].to_numpy(float), subset["pfs_event"].to_numpy(int),
                                       horizon, rule)
            roc, calibration = axes[0][k], axes[1][k]
            for model in models:
                scores = subset[risk_column(model)].to_numpy(float)
                keep = ~np.isnan(labels) & np.isfinite(scores)
                row = discrimination[(discrimination["model"] == model) & (discrimination["dataset"] == dataset)
                                     & (discrimination["horizon"] == horizon)]
                if keep.sum() < 2 or len(set(labels[keep])) < 2 or row.empty:
                    continue
                fpr, tpr = roc_curve_points(scores[keep], labels[keep])
                r = row.iloc[0]
                auc = format_estimate(r["auc_binary"], r["auc_binary_ci_low"], r["auc_binary_ci_high"], 2)
                roc.plot(fpr, tpr, color=MODEL_COLORS[model], linewidth=1, label=f"{model} {auc}")
                g = groups[(groups["model"] == model) & (groups["dataset"] == dataset) & (groups["horizon"] == horizon)]
                s = summary[(summary["model"] == model) & (summary["dataset"] == dataset)
                            & (summary["horizon"] == horizon)] if summary is not None else pd.DataFrame()
                if not g.empty:
                    errors = list(interval_errors(g["observed"], g["observed_ci_low"], g["observed_ci_high"]))
                    label = f"{model} ICI {format_number(s.iloc[0]['ici'], 3)}" if not s.empty else model
                    calibration.errorbar(g["predicted"], g["observed"], yerr=errors, fmt="o", markersize=2.5,
                                         capsize=1.5, linewidth=0.8, color=MODEL_COLORS[model], label=label)
            roc.plot([0, 1], [0, 1], color="grey", linewidth=0.5, linestyle=":")
            roc.set_title(f"{dataset.capitalize()}, {format_horizon(horizon)}")
            roc.set_xlabel("1 - specificity")
            roc.set_ylabel("Sensitivity")
            roc.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False, handlelength=1.0,
                       handletextpad=0.4, borderaxespad=0.0, title="AUC (95% CI)", title_fontsize=5.5, fontsize=5.5)
            calibration.plot([0, 1], [0, 1], color="grey", linewidth=0.5, linestyle=":")
            calibration.set_xlim(0, 1)
            calibration.set_ylim(0, 1)
            calibration.set_xlabel("Predicted risk of progression")
            calibration.set_ylabel("Observed (Kaplan-Meier)")
            # below the axis, never over the points and error bars
            calibration.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False,
                               handlelength=1.0, handletextpad=0.4, columnspacing=0.8, borderaxespad=0.0,
                               fontsize=5.5)
            _panel(roc, PANEL_LETTERS[k])
            _panel(calibration, PANEL_LETTERS[len(cells) + k])
        figure.tight_layout()
        return figure


#: The models of Supplementary Figure 3, as the paper draws it ("Box chart of three prediction models").
BOX_MODELS = ("C", "T&L", "C-T&L")


def risk_box_figure(study: Study, horizons: list[float], rule: str) -> plt.Figure | None:
    """Supplementary Figure 3: risk scores of the patients who progressed within each horizon and of those who did
    not ("PD within 6 months" / "no PD within 6 months"), for the models C, T&L and C-T&L, per set (rows) and
    horizon, with n under each box and the Mann-Whitney p."""
    from hccrad.evaluate.discrimination import binary_outcome_at
    from hccrad.io.layout import risk_column

    paths = study.config.layout
    predictions = _read(paths.predictions)
    stats = _read(paths.evaluation_table("risk_score_boxes"))
    if predictions is None or stats is None:
        return None
    models = [m for m in BOX_MODELS if risk_column(m) in predictions]
    columns = [(horizon, model) for horizon in horizons for model in models]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(2, len(columns), figsize=(TWO_COLUMN_IN, 4.2), squeeze=False)
        for row_index, dataset in enumerate(("training", "validation")):
            subset = predictions[predictions["dataset"] == dataset]
            for k, (horizon, model) in enumerate(columns):
                labels = binary_outcome_at(subset["pfs_months"].to_numpy(float), subset["pfs_event"].to_numpy(int),
                                           horizon, rule)
                axis = axes[row_index][k]
                scores = subset[risk_column(model)].to_numpy(float)
                data = [scores[np.isfinite(scores) & (labels == 1)], scores[np.isfinite(scores) & (labels == 0)]]
                parts = axis.boxplot(data, widths=0.55, patch_artist=True, showfliers=False,
                                     medianprops={"color": "black", "linewidth": 1.0})
                for box in parts["boxes"]:
                    box.set_facecolor(MODEL_COLORS[model])
                    box.set_alpha(0.6)
                axis.set_xticks([1, 2], [f"PD\nn = {len(data[0])}", f"no PD\nn = {len(data[1])}"], fontsize=5.5)
                row = stats[(stats["model"] == model) & (stats["dataset"] == dataset) & (stats["horizon"] == horizon)]
                p = format_p(row.iloc[0]["mann_whitney_p"]) if not row.empty else "-"
                axis.set_title(f"{model}, {dataset}\nPD within {format_horizon(horizon)}\n"
                               + (f"p {p}" if p.startswith("<") else f"p = {p}"), fontsize=5.5)
                if k == 0:
                    axis.set_ylabel("Risk score")
                _panel(axis, PANEL_LETTERS[row_index * len(columns) + k])
        figure.tight_layout()
        return figure


def subgroup_figure(study: Study, horizons: list[float]) -> plt.Figure | None:
    """Figure 4: C-T&L's AUC within the subgroups of each factor, per set and horizon: the paper's panels a-p (one
    per factor, set and horizon), drawn as four forest plots (one per set and horizon; training and validation side
    by side, a row per horizon) in which each factor's block carries its panel letter and its heterogeneity p;
    a subgroup without an estimate says why."""
    rows = _read(study.config.layout.evaluation_table("subgroups"))
    tests = _read(study.config.layout.evaluation_table("subgroup_tests"))
    if rows is None or rows.empty:
        return None
    factors = list(dict.fromkeys(rows["factor"]))
    cells = [(d, h) for h in horizons for d in ("training", "validation")]
    with plt.rc_context(STYLE):
        lines = max(len(rows[(rows["dataset"] == d) & (rows["horizon"] == h)]) + len(factors) for d, h in cells)
        n_rows = (len(cells) + 1) // 2
        figure = plt.figure(figsize=(TWO_COLUMN_IN, (0.13 * lines + 0.7) * n_rows))
        # each panel: a column of labels (an axis without frame) beside its plot, sharing the rows
        grid = figure.add_gridspec(n_rows, 4, width_ratios=[1.3, 1, 1.3, 1], wspace=0.05, hspace=0.4,
                                   left=0.01, right=0.98, top=0.95, bottom=0.08)
        for k, (dataset, horizon) in enumerate(cells):
            axis = figure.add_subplot(grid[k // 2, 2 * (k % 2) + 1])
            text_axis = figure.add_subplot(grid[k // 2, 2 * (k % 2)], sharey=axis)
            text_axis.axis("off")
            labels, positions, y = [], [], lines - 1
            for j, factor in enumerate(factors):
                test = tests[(tests["factor"] == factor) & (tests["dataset"] == dataset)
                             & (tests["horizon"] == horizon)] if tests is not None else pd.DataFrame()
                heterogeneity = f"p = {format_p(test.iloc[0]['p'])}" if not test.empty and not is_missing(
                    test.iloc[0]["p"]) else "not testable"
                letter = PANEL_LETTERS[(k * len(factors) + j) % 26]
                labels.append(f"{letter}  {factor} (heterogeneity {heterogeneity})")  # a heading: no indent
                positions.append(y)
                y -= 1
                part = rows[(rows["factor"] == factor) & (rows["dataset"] == dataset) & (rows["horizon"] == horizon)]
                for _, row in part.iterrows():
                    if is_missing(row["auc"]):
                        axis.text(0.02, y, missing_auc_reason(row.get("cases"), row.get("controls")), fontsize=5.5,
                                  va="center", color="#555")
                    else:
                        spread = [[e[0]] for e in interval_errors([row["auc"]], [row["ci_low"]], [row["ci_high"]])]
                        axis.errorbar([row["auc"]], [y], xerr=spread, fmt="o", markersize=2.5, capsize=1.5,
                                      color=MODEL_COLORS["C-T&L"], linewidth=0.8)
                    labels.append(f" {row['subgroup']} (n={int(row['n'])})")  # a subgroup: indented
                    positions.append(y)
                    y -= 1
            for position, label in zip(positions, labels, strict=True):
                text_axis.text(0.02 if label.startswith(" ") else 0.0, position, label.strip(), va="center",
                               ha="left", fontsize=6, fontweight="normal" if label.startswith(" ") else "bold",
                               transform=text_axis.get_yaxis_transform())
            axis.set_yticks([])
            axis.spines["left"].set_visible(False)
            axis.set_ylim(y + 0.5, lines - 0.5)
            axis.axvline(0.5, color="grey", linewidth=0.5, linestyle=":")
            axis.set_xlim(0.0, 1.0)
            axis.set_title(f"{dataset.capitalize()}, {format_horizon(horizon)}")
            axis.set_xlabel("AUC of C-T&L (95% CI)")
        return figure


# --- writing -----------------------------------------------------------------------------------------------

def save_figure(figure: plt.Figure, folder: Path, name: str) -> list[Path]:
    """``<name>.pdf`` (vector, TrueType fonts embedded), ``.svg`` (text as text) and ``.png`` (300 dpi)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in ("pdf", "svg", "png"):
        buffer = io.BytesIO()
        with plt.rc_context(STYLE):  # the font types are read when the file is written
            figure.savefig(buffer, format=suffix, dpi=300 if suffix == "png" else None, bbox_inches="tight")
        path = folder / f"{name}.{suffix}"
        write_atomic(path, buffer.getvalue())
        paths.append(path)
    plt.close(figure)
    return paths


def table_latex(table: PaperTable) -> str:
    """A booktabs LaTeX table with its caption and footnotes (a standalone document, so that it compiles)."""
    columns = list(table.frame.columns)
    lines = [r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage[margin=1.5cm,landscape]{geometry}",
             r"\begin{document}", r"\begin{table}[ht]", r"\centering\small",
             rf"\caption{{{latex_escape(table.caption)}}}", r"\begin{tabular}{" + "l" * len(columns) + "}",
             r"\toprule", " & ".join(latex_escape(c) for c in columns) + r" \\", r"\midrule"]
    for _, row in table.frame.iterrows():
        lines.append(" & ".join(latex_escape(row[c]) for c in columns) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.footnotes:
        lines.append(r"\par\footnotesize " + latex_escape(note))
    lines += [r"\end{table}", r"\end{document}", ""]
    return "\n".join(lines)


def add_table_to_docx(document, table: PaperTable) -> None:
    """The table's caption (bold), its rows as a Word table, and its footnotes (small type) in ``document``."""
    from docx.shared import Pt

    caption = document.add_paragraph()
    caption.add_run(table.caption).bold = True
    columns = list(table.frame.columns)
    grid = document.add_table(rows=1, cols=len(columns))
    grid.style = "Table Grid"
    for cell, name in zip(grid.rows[0].cells, columns, strict=True):
        cell.text = str(name)
        for run in cell.paragraphs[0].runs:
            run.bold = True
    for _, row in table.frame.iterrows():
        cells = grid.add_row().cells
        for cell, name in zip(cells, columns, strict=True):
            cell.text = "" if is_missing(row[name]) and not isinstance(row[name], str) else str(row[name])
    for note in table.footnotes:
        paragraph = document.add_paragraph()
        run = paragraph.add_run(note)
        run.font.size = Pt(8)


def _docx_bytes(document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def write_table(table: PaperTable, folder: Path) -> list[Path]:
    """``<name>.csv``, ``.docx`` and ``.tex``."""
    import docx

    document = docx.Document()
    add_table_to_docx(document, table)
    files = {folder / f"{table.name}.csv": table.frame.to_csv(index=False),
             folder / f"{table.name}.docx": _docx_bytes(document),
             folder / f"{table.name}.tex": table_latex(table)}
    for path, content in files.items():
        write_atomic(path, content)
    return list(files)


def _label(study: Study, kind: str, number: int) -> str:
    """The paper's label of an item it numbers (``Supplementary Table 2``), by the study's ``report: {item_format}``."""
    from hccrad.report.config import report_config

    return report_config(study.config.report).label(kind, number)


def paper_tables(study: Study) -> list[PaperTable]:
    horizons = list(study.config.horizons_months)
    builders = [lambda: table_one(study), lambda: supplementary_table_one(study), lambda: table_two(study),
                lambda: table_three(study), lambda: table_four(study), lambda: summary_table(study, horizons)]
    return [table for table in (build() for build in builders) if table is not None]


def paper_figures(study: Study) -> list[PaperFigure]:
    from hccrad.evaluate.config import EvaluationConfig

    paths = study.config.layout
    horizons = list(study.config.horizons_months)
    rule = EvaluationConfig.model_validate(study.config.evaluation).event_at_horizon
    figures = []
    hazards = _read(paths.evaluation_table("hazard_ratios"))
    selected = _read(paths.selected_factors)
    if hazards is not None and not hazards.empty and selected is not None:
        codes = figure_codes(selected)
        figures.append(PaperFigure("figure1_hazard_ratios", f"{_label(study, 'Figure', 1)}. Hazard ratios (95% CI, "
                                   f"log scale) of the factors of each model; codes as in {_label(study, 'Table', 3)}.",
                                   lambda: hazard_ratio_figure(hazards, codes)))
    figures.append(PaperFigure("figure2_roc_calibration", f"{_label(study, 'Figure', 2)}. ROC curves (a-d, AUC with "
                               "95% CI) and "
                               "calibration (e-h, grouped observed Kaplan-Meier risk with 95% CI) of the T and T&L "
                               "models in the training and validation sets.",
                               lambda: roc_calibration_figure(study, horizons, rule)))
    figures.append(PaperFigure("figure3_risk_scores", f"{_label(study, 'Figure', 3)}. Risk scores of the C, T&L "
                               "and C-T&L models in the patients with and without progression (PD) within "
                               + " and ".join(format_horizon(h) for h in horizons)
                               + ", training (top) and validation (bottom), with n under each box and the Mann-Whitney "
                               "p.", lambda: risk_box_figure(study, horizons, rule)))
    figures.append(PaperFigure("figure4_subgroups", f"{_label(study, 'Figure', 4)}. AUC (95% CI) of the C-T&L model "
                               "within the subgroups "
                               "of AFP, BCLC stage, Child-Pugh grade and treatment (a-p: one per factor, set and "
                               "horizon), with the heterogeneity test.",
                               lambda: subgroup_figure(study, horizons)))
    return figures


def build_paper(study: Study, out_dir: Path | None = None) -> Path:
    """Write the paper folder (default ``<output_dir>/report/paper``) and return it."""
    import docx

    from hccrad.report.methods import write_methods, write_tripod

    paths = study.config.layout
    folder = Path(out_dir) if out_dir else paths.report_dir / "paper"
    folder.mkdir(parents=True, exist_ok=True)
    listing = ["# The paper folder", "", "Tables (CSV, Word, LaTeX; all in `tables.docx`):", ""]
    combined = docx.Document()
    tables = paper_tables(study)
    for table in tables:
        write_table(table, folder)
        add_table_to_docx(combined, table)
        combined.add_paragraph()
        listing.append(f"* `{table.name}`: {table.caption}")
    write_atomic(folder / "tables.docx", _docx_bytes(combined))
    listing += ["", "Figures (vector PDF with embedded fonts, SVG, PNG at 300 dpi):", ""]
    for item in paper_figures(study):
        figure = item.draw()
        if figure is None:
            listing.append(f"* `{item.name}`: not drawn (its stage's tables are missing)")
            continue
        save_figure(figure, folder, item.name)
        listing.append(f"* `{item.name}`: {item.caption}")
    write_methods(study, folder, tables)
    write_tripod(study, folder)
    listing += ["", "Text (Markdown and Word):", "",
                "* `tables`: All the tables above, with their captions and footnotes, in one Word document.",
                "* `methods`: Methods, written from this run: cohort, segmentation, features, selection, statistics.",
                "* `tripod_ai`: The TRIPOD+AI checklist, with where this run's outputs address each item.",
                "* `README`: This list.", ""]
    write_atomic(folder / "README.md", "\n".join(listing))
    return folder
