"""The study report: one self-contained HTML file (figures embedded) plus its tables and figures beside it.

Sections follow the paper: 1 cohort, 2 acquisition, 3 segmentation and quality control, 4 features,
5 models, 6 reproducibility. The report reads what the stages wrote under ``<output_dir>``; a section whose
stage did not run says so.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.evaluate.horizon import MEDIAN_NOT_REACHED, RULE_CAPTIONS
from hccrad.evaluate.style import STRUCTURE_COLORS
from hccrad.io.files import write_atomic
from hccrad.io.ids import case_path
from hccrad.io.layout import model_slug
from hccrad.io.manifest import Study
from hccrad.report.config import report_config
from hccrad.report.paper import read_stage_table as _read_csv
from hccrad.survival.config import MODEL_NAMES

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;line-height:1.4}
header{background:#1f3b57;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
nav{background:#eef2f6;padding:8px 32px;position:sticky;top:0;z-index:2}nav a{margin-right:16px;color:#1f3b57}
main{padding:8px 32px 40px;max-width:1300px}h2{border-bottom:2px solid #1f3b57;padding-top:18px}
table{border-collapse:collapse;font-size:12px;margin:8px 0 16px}th,td{border:1px solid #ccd;padding:3px 7px;
text-align:right}th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}
.fig{display:inline-block;margin:6px;vertical-align:top}.fig img{max-width:560px;border:1px solid #dde}
.qc{display:inline-block;width:150px;margin:4px;font-size:11px;text-align:center;vertical-align:top}
.qc img{width:146px;border:2px solid #9ab}.qc.flag img{border-color:#c33}.flag-text{color:#c33}
.note{color:#555;font-style:italic}.caption{color:#444;font-size:90%;margin:2px 0 10px}
details{margin:6px 0}.scroll{max-height:420px;overflow:auto}
.ok{color:#2a7}.bad{color:#c33}.footnote{font-size:11px;color:#444;margin:-10px 0 12px}
@media print{nav{display:none}main{max-width:none;padding:0}header{padding:6px 0}
.fig{display:block;margin:4px 0;break-inside:avoid}.fig img{max-width:100%;width:100%;border:0}
table{font-size:9px;max-width:100%}th,td{padding:1px 4px;word-break:break-word}
.scroll{max-height:none;overflow:visible}details{display:block}}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) { if (images[i].complete && images[i].naturalWidth > 0) decoded++; }
  document.documentElement.setAttribute('data-images', decoded + '/' + images.length);
});
"""


def esc(value: Any) -> str:
    """``value`` as HTML-escaped text."""
    return html.escape(str(value))


def _horizon_table(frame: pd.DataFrame | None) -> str:
    """A table of statistics at horizons, captioned with the ``event_at_horizon`` rule its rows were computed
    with (read from the table itself; a table from before the rule existed says so)."""
    html = table_html(frame)
    if frame is None or not len(frame):
        return html
    rules = sorted(set(frame["event_at_horizon"].dropna())) if "event_at_horizon" in frame else []
    caption = ("; ".join(RULE_CAPTIONS.get(rule, rule) for rule in rules) if rules else
               "status at t: not recorded (table written before the event_at_horizon setting; run "
               "`hccrad evaluate` again)")
    return html + f'<p class="caption">{esc(caption)}.</p>'


#: Columns whose text repeats a note on every row: the report states each distinct note once, under the table.
NOTE_COLUMNS = ("inference", "censoring")


def _is_p_column(column: str) -> bool:
    return column in ("p", "pval", "p_value") or column.startswith("p_") or column.endswith("_p")


#: Readers' headers of the evaluation's columns (with units); any other snake_case name is put in words.
HEADERS = {
    "model": "Model", "dataset": "Set", "horizon": "Horizon", "n": "Patients", "events": "Progressions",
    "n_cases": "Cases", "n_controls": "Controls", "cases": "Cases", "controls": "Controls",
    "censored_before": "Censored before the horizon", "auc_binary": "AUC, complete case",
    "auc_ipcw": "AUC, IPCW", "auc_ipcw_se": "SE of the IPCW AUC", "harrell_c": "Harrell's C", "uno_c": "Uno's C",
    "uno_tau_months": "Uno's tau, months", "tube_voltage_kv": "Tube voltage (kV)",
    "tube_current_ma": "Tube current (mA)", "rotation_time_s": "Rotation time (s)", "fov_mm": "FOV (mm)",
    "slice_thickness_mm": "Slice thickness (mm)", "detector_collimation_mm": "Detector collimation (mm)",
    "pixel_matrix": "Matrix", "kernel": "Reconstruction kernel", "scanner": "Scanner", "center": "Center",
    "hr": "HR", "coef": "Coefficient", "covariate": "Covariate",
    "description": "Description", "paper_factor": "Factor in the paper", "p": "p", "ici": "ICI", "e50": "E50",
    "e90": "E90", "slope": "Calibration slope", "oe_ratio": "O/E", "observed_risk": "Observed risk",
    "expected_risk": "Mean predicted risk", "n_risk_0_or_1": "Predicted risk 0 or 1", "comparison": "Comparison",
    "auc_first": "AUC, first model", "auc_second": "AUC, second model", "difference": "Difference",
    "median_pfs_high": "Median PFS, high risk (months)", "median_pfs_low": "Median PFS, low risk (months)",
    "n_high": "High risk", "n_low": "Low risk", "logrank_p": "Log-rank p", "cutoff": "Cut-off",
    "cutoff_method": "Cut-off method", "factor": "Factor", "subgroup": "Subgroup", "note": "Note",
    "patients": "Patients", "scored": "Scored", "unscored": "Not scored", "nri": "NRI", "idi": "IDI",
    "nri_events": "NRI, events", "nri_non_events": "NRI, non-events", "integrated_brier": "Integrated Brier",
}
#: An empty cell, and what it says (stated once under each table that has one).
EMPTY = "-"
EMPTY_MEANS = ("not estimable (too few patients or events) or not applicable to this row; the table's CSV in "
               "tables/ holds the machine value")
#: Columns in these units are shown without decimals when every value is whole (120 kV, 250 mA, 12 months).
WHOLE_NUMBER_UNITS = ("_kv", "_ma", "_months", "_mm", "_s")
#: Columns that hold counts, shown as integers.
COUNT_COLUMNS = {"n", "events", "n_cases", "n_controls", "cases", "controls", "censored_before", "n_high", "n_low",
                 "patients", "scored", "unscored", "n_risk_0_or_1", "df", "resamples"}


def readable_header(column: str) -> str:
    """A column's header in words: :data:`HEADERS`, else the snake_case name with spaces, capitalised."""
    name = str(column)
    if name in HEADERS:
        return HEADERS[name]
    if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+|[a-z]+", name):
        words = name.replace("_ci_low", " 95% CI low").replace("_ci_high", " 95% CI high").replace("_", " ")
        return words[:1].upper() + words[1:]
    return name


def _merge_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Each estimate with its ``_ci_low``/``_ci_high`` columns as one "estimate (low-high)" column headed
    "<estimate> (95% CI)"; the CI columns themselves go."""
    from hccrad.report.formatting import format_estimate

    frame = frame.copy()
    for column in list(frame.columns):
        name = str(column)
        for stem in dict.fromkeys((name, name.removesuffix("_c"), name.removesuffix("_ratio"), "")):
            low, high = (f"{stem}_ci_low", f"{stem}_ci_high") if stem else ("ci_low", "ci_high")
            if low in frame and high in frame and (stem or name in ("hr", "auc", "difference", "estimate")):
                merged = [format_estimate(v, lo, hi, 3) if pd.notna(v) else "not estimable"
                          for v, lo, hi in zip(frame[column], frame[low], frame[high], strict=True)]
                position = list(frame.columns).index(column)
                frame = frame.drop(columns=[column, low, high])
                frame.insert(position, f"{readable_header(name)} (95% CI)", merged)
                break
    return frame


def table_html(frame: pd.DataFrame, digits: int = 3, index: bool = False, max_rows: int | None = None,
               link_column: str | None = None) -> str:
    """A DataFrame as an HTML table by the report's formatting rules (:mod:`hccrad.report.formatting`): readers'
    headers (:func:`readable_header`), each estimate with its 95% CI in one cell, counts as integers, numbers
    rounded, p-values as ``< 0.001`` or three decimals, horizons in months, and the notes that repeat on rows
    (``inference``, ``censoring``) stated once as footnotes under the table, their markers on the rows they
    concern; optionally a column linked to QC anchors. The CSV tables keep the machine names."""
    from hccrad.report.formatting import format_horizon, format_p

    if frame is None or frame.empty:
        return '<p class="note">no rows</p>'
    frame = frame.reset_index() if index else frame
    if max_rows is not None:
        frame = frame.head(max_rows)
    notes = [str(note) for column in NOTE_COLUMNS if column in frame
             for note in dict.fromkeys(frame[column].dropna().astype(str)) if note]
    markers = ["".join("*" * (notes.index(str(row[c])) + 1) for c in NOTE_COLUMNS
                       if c in frame and pd.notna(row[c]) and str(row[c]) in notes) for _, row in frame.iterrows()]
    frame = frame.drop(columns=[c for c in (*NOTE_COLUMNS, "event_at_horizon") if c in frame])
    counts = {c for c in frame.columns if str(c) in COUNT_COLUMNS or (
        str(c).endswith(WHOLE_NUMBER_UNITS) and pd.api.types.is_numeric_dtype(frame[c])
        and np.allclose(frame[c].dropna() % 1, 0))}  # 120 kV, 12 months: no pointless decimals
    p_values = {readable_header(c) for c in frame.columns if _is_p_column(str(c)) or "_p_" in f"_{c}_"}
    link_header = readable_header(link_column) if link_column else None
    frame = _merge_intervals(frame).rename(columns=lambda c: readable_header(c) if not str(c).endswith("(95% CI)")
                                           else c)
    counts = {readable_header(c) for c in counts}
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for number, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for position, (column, value) in enumerate(row.items()):
            if column in counts and isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value):
                text = str(int(value))
            elif column in p_values and isinstance(value, (int, float, np.floating)):
                text = format_p(value) if np.isfinite(value) else EMPTY
            elif column == "Horizon" and isinstance(value, (int, float, np.floating)) and np.isfinite(value):
                text = format_horizon(value)
            elif str(column).startswith("Median PFS") and isinstance(value, (float, np.floating)) \
                    and not np.isfinite(value):
                text = MEDIAN_NOT_REACHED
            elif isinstance(value, (float, np.floating)):
                text = EMPTY if not np.isfinite(value) else (
                    f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}")
            else:
                text = EMPTY if value is None or (isinstance(value, float) and np.isnan(value)) else esc(value)
            if column == link_header and text:
                text = f'<a href="#qc-{esc(value)}">{text}</a>'
            if position == 0 and markers[number]:
                text += f"<sup>{markers[number]}</sup>"
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    footnotes = "".join(f'<p class="footnote"><sup>{"*" * (k + 1)}</sup> {esc(note)}</p>'
                        for k, note in enumerate(notes))
    if any(f"<td>{EMPTY}" in row for row in rows):
        footnotes += f'<p class="footnote">{EMPTY}: {EMPTY_MEANS}</p>'

    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{footnotes}"


def summary_markdown_html(markdown: str) -> str:
    """The study summary's Markdown (``validation/summary.md``: headings, paragraphs, pipe tables, bullets, bold) as
    escaped HTML; the first heading is dropped (the report's section names it)."""
    parts, table, bullets = [], [], []

    def inline(text: str) -> str:
        return re.sub(r"`(.+?)`", r"<code>\1</code>", re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(text)))

    def flush() -> None:
        if table:
            rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table
                    if not re.fullmatch(r"\|?(\s*-+\s*\|)+\s*-*\s*", line.strip())]
            head, *body = rows
            parts.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                         + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in body)
                         + "</tbody></table>")
            table.clear()
        if bullets:
            parts.append("<ul>" + "".join(f"<li>{inline(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("- "):
            bullets.append(line[2:])
            continue
        flush()
        if line.startswith("# "):
            continue
        if line.startswith("## "):
            parts.append(f"<h4>{inline(line[3:])}</h4>")
        elif line.strip():
            parts.append(f"<p>{inline(line)}</p>")
    flush()
    return "".join(parts)


def image_html(path: Path, caption: str = "") -> str:
    """A PNG embedded in the page (base64) with its caption."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<div class="fig"><img alt="{esc(caption or Path(path).stem)}" src="data:image/png;base64,{data}">'
            f"<div>{esc(caption)}</div></div>")


# --- section 4: feature robustness -----------------------------------------------------------------------

#: The ICC thresholds whose counts of kept features the report lists.
ICC_THRESHOLDS = (0.5, 0.6, 0.75, 0.8, 0.9)


def robustness_figure(table: pd.DataFrame, form: str, path: Path) -> Path:
    """Box plots of the features' ICC per image type, one colour per region: the distribution the filter cuts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(table["image_type"].unique(), key=lambda name: (name != "-", name))
    figure, axis = plt.subplots(figsize=(9.0, 3.6))
    for offset, (region, color) in zip((-0.2, 0.2), (("Tumor", STRUCTURE_COLORS["tumor"]),
                                                      ("Rliver", STRUCTURE_COLORS["liver"])), strict=True):
        data = [table.loc[(table["image_type"] == name) & (table["region"] == region), form].dropna().to_numpy()
                for name in order]
        positions = [k + offset for k, values in enumerate(data) if len(values)]
        boxes = axis.boxplot([values for values in data if len(values)], positions=positions, widths=0.35,
                             patch_artist=True, showfliers=False)
        for box in boxes["boxes"]:
            box.set_facecolor(color)
            box.set_alpha(0.5)
        axis.plot([], [], "s", color=color, alpha=0.5, label="remnant liver" if region == "Rliver" else "tumor")
    axis.set_xticks(range(len(order)), ["morphological" if name == "-" else name for name in order], rotation=45,
                    ha="right", fontsize=8)
    axis.set_ylabel(form)
    axis.set_ylim(min(0.0, float(np.nanmin(table[form])) if table[form].notna().any() else 0.0), 1.0)
    axis.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def robustness_section(study: Study) -> str:
    """The robustness analysis: settings, ICC per image type and class, every selected feature's ICC with its
    interval, how many features each threshold keeps, and the models with and without the filter."""
    from hccrad.features.config import FeatureConfig

    paths = study.config.layout
    config = FeatureConfig.model_validate(study.config.features).robustness
    table = _read_csv(paths.robustness_table)
    if config is None:
        return ""
    if table is None or table.empty:
        return ('<h3>Feature robustness</h3><p class="note">robustness is on in the manifest but was not computed: '
                "run <code>hccrad robustness</code>.</p>")
    from hccrad.features.cohort import load_feature_table
    from hccrad.features.robustness import stale_robustness

    form = config.icc
    why = (stale_robustness(study, load_feature_table(paths.feature_table)) if paths.feature_table.is_file()
           else "the feature table is missing")
    stale = ("" if why is None else f'<p class="note">This robustness table is out of date: {esc(why)}; run '
             "<code>hccrad robustness</code> again.</p>")
    body = ("<h3>Feature robustness</h3>" + stale + f"<p>{int(table['n_patients'].iloc[0])} training patients x "
            f"{int(table['n_perturbations'].iloc[0])} perturbations ({esc(', '.join(config.kinds))}; rotation up to "
            f"{config.rotation_deg:g} degrees, shift up to {config.translation_voxels:g} voxels, volume "
            f"{config.volume_fraction:+.0%}/{-config.volume_fraction:+.0%}); ICC form {esc(form)}; filter: "
            + (f"features with {esc(form)} &lt; {config.min_icc:g} left out of the selection"
               if config.min_icc is not None else "none (min_icc null)") + ".</p>")
    figure = robustness_figure(table, form, paths.report_figures_dir / "robustness_icc.png")
    body += image_html(figure, f"{form} of every feature per image type (box: quartiles, whiskers 1.5 IQR)")
    summary = (table.groupby("feature_class")[form].describe(percentiles=[0.25, 0.5, 0.75])
               [["count", "25%", "50%", "75%"]].rename(columns={"count": "features", "50%": "median"}).reset_index())
    summary["features"] = summary["features"].astype(int)
    body += f"<h4>{esc(form)} per feature class</h4>{table_html(summary)}"
    kept = pd.DataFrame([{"threshold": f"{form} >= {threshold:.2f}",
                          "features kept": int((table[form] >= threshold).sum()), "of": len(table),
                          "share": f"{(table[form] >= threshold).mean():.0%}"} for threshold in ICC_THRESHOLDS])
    body += f"<h4>Features kept by each threshold</h4>{table_html(kept)}"
    selected = _read_csv(paths.selected_factors)
    if selected is not None and len(selected):
        columns = ["feature", form, f"{form}_low", f"{form}_high"]
        joined = selected[["model", "covariate"]].merge(table[columns], left_on="covariate", right_on="feature")
        body += (f"<h4>{esc(form)} of every selected image factor, with its 95% interval</h4>"
                 + table_html(joined.drop(columns="feature")))
    comparison = _read_csv(paths.robustness_comparison)
    if comparison is not None:
        headers = {"model": "Model", "variant": "Filter", "dataset": "Set", "estimate": "Estimate",
                   "n_factors": "Factors", "n": "Patients", "harrell_c": "C-index"}
        headers |= {column: f"AUC {column[4:-1]} months" for column in comparison.columns
                    if re.fullmatch(r"auc_[0-9.]+m", column)}
        body += ("<h4>The models with and without the robustness filter</h4>"
                 + table_html(comparison.rename(columns=headers))
                 + '<p class="caption">Harrell C and IPCW AUC; training rows are apparent (the patients the model was '
                 "fitted on), validation rows on the validation centers.</p>")
    write_atomic(paths.report_tables_dir / "robustness.csv", table.to_csv(index=False))
    return body


# --- section 1: cohort ---------------------------------------------------------------------------------
# Table 1's statistics are computed by the evaluation (hccrad.evaluate.cohort.table_one); the report reads them.


# --- section 3: quality control ------------------------------------------------------------------------
def qc_flags(liver_ml: float, tumor_ml: float) -> list[str]:
    """Plausibility flags of a case's volumes."""
    flags = []
    if tumor_ml <= 0:
        flags.append("no tumor")
    elif tumor_ml < 1:
        flags.append("tumor under 1 mL")
    if liver_ml < 500:
        flags.append("liver under 500 mL")
    if liver_ml > 4000:
        flags.append("liver over 4 L")
    if tumor_ml > liver_ml:
        flags.append("tumor larger than the liver")
    return flags


def qc_image(record, rule, out: Path) -> dict[str, Any]:
    """Overlay of liver (green) and tumor (red) contours on the CT at the tumor's largest axial slice, in the
    colours of :data:`hccrad.evaluate.style.STRUCTURE_COLORS` (the web app's viewer uses the same)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hccrad.io.case import CTCase

    case = CTCase.read(record.ct, record.mask_source, rule)
    ct, image, voxel_ml = case.hu, case.image, case.voxel_ml
    tumor, liver = case.any_tumor, case.liver | case.portal_vein
    per_slice = tumor.sum(axis=(1, 2)) if tumor.any() else liver.sum(axis=(1, 2))
    z = int(np.argmax(per_slice))
    figure, axis = plt.subplots(figsize=(2.0, 2.0), dpi=75)
    spacing = image.GetSpacing()
    axis.imshow(ct[z], cmap="gray", vmin=-160, vmax=240, aspect=spacing[1] / spacing[0])
    if liver[z].any():
        axis.contour(liver[z], levels=[0.5], colors=[STRUCTURE_COLORS["liver"]], linewidths=0.7)
    if tumor[z].any():
        axis.contour(tumor[z], levels=[0.5], colors=[STRUCTURE_COLORS["tumor"]], linewidths=0.7)
    axis.axis("off")
    figure.subplots_adjust(0, 0, 1, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    liver_ml, tumor_ml = float((liver | tumor).sum()) * voxel_ml, float(tumor.sum()) * voxel_ml
    return {"liver_ml": liver_ml, "tumor_ml": tumor_ml, "flags": qc_flags(liver_ml, tumor_ml), "slice": z,
            "mask_mapping": case.mask_mapping}


def _qc_key(study: Study, record) -> str:
    """The cache key of a case's QC image: the content of its CT and mask. The features stage has just computed
    and checked the case's content fingerprint (``features/cases/<id>.json``), so that is used when present;
    otherwise both files are hashed. Never the files' names and times alone, which a swapped series can keep."""
    from hccrad.io.provenance import content_digest

    source = None
    with contextlib.suppress(OSError, ValueError):
        source = json.loads(study.config.layout.feature_case(record.patient_id).read_text()).get("fingerprint")
    if not source:
        source = content_digest(record.ct, *record.mask_source.files) + record.mask_convention.model_dump_json()
    return hashlib.sha256(f"{source}|{study.config.dicom_series.model_dump_json()}".encode()).hexdigest()[:10]


def qc_gallery(study: Study, qc_dir: Path, features: pd.DataFrame | None = None) -> tuple[str, pd.DataFrame]:
    """QC images (the tumor's largest axial slice with the masks' contours) of every case, as HTML cards and a
    table. The volumes come from the feature table (``Rliver_volume_mL`` + ``Tumor_volume_mL``, ``Tumor_volume_mL``)
    when it has the case, else from the mask."""
    cards, rows = [], []
    for record in study.patients:
        if record.ct is None or not record.has_mask:
            continue
        key = _qc_key(study, record)
        path = case_path(qc_dir, f"{record.patient_id}-{key}", ".png")
        meta_path = path.with_suffix(".json")
        try:
            if path.is_file() and meta_path.is_file():
                meta = json.loads(meta_path.read_text())
            else:
                meta = qc_image(record, study.config.dicom_series, path)
                write_atomic(meta_path, json.dumps(meta))
        except Exception as exc:  # an unreadable case is shown as such
            cards.append(f'<div class="qc flag" id="qc-{esc(record.patient_id)}"><b>{esc(record.patient_id)}</b>'
                         f'<div class="flag-text">{esc(exc)}</div></div>')
            rows.append({"patient_id": record.patient_id, "flags": f"error: {exc}"})
            continue
        if features is not None and record.patient_id in features.index:
            tumor_ml = float(features.loc[record.patient_id, "Tumor_volume_mL"])
            liver_ml = float(features.loc[record.patient_id, "Rliver_volume_mL"]) + tumor_ml
            meta = {**meta, "liver_ml": liver_ml, "tumor_ml": tumor_ml, "flags": qc_flags(liver_ml, tumor_ml)}
        flags = meta["flags"]
        mapping = meta.get("mask_mapping") or {}
        how = "; ".join(f"{structure.replace('_', ' ')}: {found}"
                        for structure, found in (mapping.get("structures") or {}).items())
        data = base64.b64encode(path.read_bytes()).decode()
        cards.append(
            f'<div class="qc{" flag" if flags else ""}" id="qc-{esc(record.patient_id)}">'
            f'<img alt="QC {esc(record.patient_id)}" src="data:image/png;base64,{data}">'
            f"<div><b>{esc(record.patient_id)}</b> ({esc(record.center)}) liver {meta['liver_ml']:.0f} mL, "
            f"tumor {meta['tumor_ml']:.1f} mL</div>"
            + (f'<div class="note mask-mapping">{esc(how)}</div>' if how else "")
            + (f'<div class="flag-text">{esc("; ".join(flags))}</div>' if flags else "") + "</div>")
        rows.append({"patient_id": record.patient_id, "liver_ml": meta["liver_ml"], "tumor_ml": meta["tumor_ml"],
                     "flags": "; ".join(flags), "mask_mapping": how})
    return "".join(cards), pd.DataFrame(rows)


# --- assembly ------------------------------------------------------------------------------------------
def _nri_for_readers(nri: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per comparison, set and horizon, with the censoring-aware and the complete-case NRI and IDI (95% CI)
    as labelled columns (the CSV keeps one row per estimate and its ``censoring``)."""
    from hccrad.report.formatting import format_estimate

    if nri is None or nri.empty or "censoring" not in nri:
        return nri
    keys = ["comparison", "dataset", "horizon"]
    rows = []
    for key, group in nri.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True))
        for prefix, label in (("censoring-aware", "censoring-aware"), ("complete case", "complete case")):
            match = group[group["censoring"].astype(str).str.startswith(prefix)]
            for measure in ("nri", "idi"):
                name = f"{measure.upper()} (95% CI), {label}"
                if match.empty:
                    row[name] = "not computed"
                else:
                    m = match.iloc[0]
                    row[name] = (format_estimate(m[measure], m[f"{measure}_ci_low"], m[f"{measure}_ci_high"], 3)
                                 if pd.notna(m[measure]) else "not estimable (no event or no non-event)")
        for column in ("event_at_horizon", "inference"):
            if column in group:
                row[column] = group[column].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def _lr_for_readers(lr: pd.DataFrame | None) -> pd.DataFrame | None:
    """The likelihood-ratio tests, with the reason in a note where a pair is not nested (no test)."""
    if lr is None or lr.empty or "nested" not in lr:
        return lr
    lr = lr.copy()
    lr["note"] = ["" if bool(nested) else "not nested: the first model's covariates are not all in the second, so "
                                          "no likelihood-ratio test applies" for nested in lr["nested"]]
    return lr.drop(columns=["nested"])


def _center_shift_for_readers(shift: pd.DataFrame) -> pd.DataFrame:
    """The center-shift table with readers' headers: the share outside the domain as a percentage, |SMD| to two
    decimals, "not recorded" for models without a domain."""
    return pd.DataFrame({
        "Model": shift["model"], "Validation center": shift["center"], "Patients": shift["patients"].astype(int),
        "Outside the applicability domain": [f"{100 * v:.0f}%" if pd.notna(v) else "not recorded"
                                             for v in shift["share_outside_domain"]],
        "Largest |SMD|": [f"{v:.2f}" if pd.notna(v) else "" for v in shift["max_abs_smd"]],
        "Input with the largest shift": shift["largest_shift_input"].fillna("")})


def _figure_block(figures_dir: Path, names: list[tuple[str, str]]) -> str:
    parts = [image_html(figures_dir / f"{name}.png", caption) for name, caption in names
             if (figures_dir / f"{name}.png").is_file()]
    return "".join(parts) or '<p class="note">not available</p>'


def _paper_listing(paper: Path) -> str:
    """The paper folder as a table: one row per table, figure or text (caption from the folder's README), with a
    link to each of its formats."""
    captions = dict(re.findall(r"^\* `([^`]+)`: (.*)$", (paper / "README.md").read_text(), flags=re.MULTILINE))
    formats: dict[str, list[str]] = {}
    for path in sorted(paper.iterdir()):
        if path.is_file() and path.name != "report_pdf.txt":
            formats.setdefault(path.stem, []).append(path.name)
    rows = "".join(
        f"<tr><td>{esc(captions.get(stem, stem.replace('_', ' ')))}</td><td>"
        + " ".join(f'<a href="paper/{esc(name)}">{esc(name.rsplit(".", 1)[-1].upper())}</a>' for name in names)
        + "</td></tr>" for stem, names in formats.items())
    return f"<table><thead><tr><th>Item</th><th>Files</th></tr></thead><tbody>{rows}</tbody></table>"


def build_report(study: Study, manifest: Path, stages: list | None = None, failed_cases: list | None = None) -> Path:
    """Write ``<output_dir>/report/report.html`` (self-contained) with ``tables/`` and ``figures/`` beside it."""
    from hccrad.io.provenance import file_sha256, software_versions

    paths = study.config.layout
    report_dir = paths.report_dir
    figures_dir = paths.evaluation_figures_dir
    tables_dir = paths.evaluation_tables_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    table = study.table()
    horizons = study.config.horizons_months
    sections = []

    # 1. Cohort
    counts = pd.crosstab(table["center"], table["dataset"], margins=True, margins_name="total")
    cohort_rows = table.reset_index()[["patient_id", "center", "dataset", "afp", "child_pugh", "bclc", "treatment",
                                       "pfs_months", "pfs_event"]]
    table_one = _read_csv(paths.evaluation_table("table1"))
    if table_one is None:
        table_one = pd.DataFrame({"note": ["Table 1 is written by the evaluation: run `hccrad evaluate`"]})
    understood = ""
    if paths.validation_summary.is_file():
        understood = ("<details><summary>What hccrad understood of the clinical table (mapping, units, events, "
                      "categories; validation/summary.md)</summary>"
                      f"{summary_markdown_html(paths.validation_summary.read_text())}</details>")
    sections.append(("cohort", "1. Cohort",
                     f"<p>{len(table)} valid patients of {study.n_rows} rows; {len(study.errors)} manifest errors "
                     f"(see manifest_issues.csv).</p>{understood}<h3>Patients per center</h3>"
                     f"{table_html(counts, index=True)}"
                     f"<h3>Baseline characteristics (Table 1)</h3>{table_html(table_one)}"
                     f"<details><summary>Every patient (click an id for its QC image)</summary><div class='scroll'>"
                     f"{table_html(cohort_rows, 2, link_column='patient_id' if study.config.require_images else None)}"
                     "</div></details>"))

    # 2. Acquisition
    if study.config.require_images:
        summary = _read_csv(paths.acquisition_summary)
        if summary is None:
            body = '<p class="note">no acquisition table: it is written by `hccrad validate`.</p>'
        else:
            write_atomic(paths.report_tables_dir / "acquisition.csv", summary.to_csv(index=False))
            body = table_html(summary)
    else:
        body = '<p class="note">clinical-only study: no CT headers.</p>'
    sections.append(("acquisition", "2. CT acquisition (Supplementary Table 1)", body))

    # 3. Segmentation
    if study.config.require_images:
        seg_eval = _read_csv(paths.segmentation_evaluation_summary)
        metrics = table_html(seg_eval) if seg_eval is not None else (
            '<p class="note">no segmentation evaluation: reference masks were used as given '
            "(run <code>hccrad segment evaluate</code> to compare predicted with reference masks).</p>")
        volumes = None
        if paths.feature_table.is_file():
            volumes = pd.read_parquet(paths.feature_table, columns=["Tumor_volume_mL", "Rliver_volume_mL"])
        gallery, qc_table = qc_gallery(study, paths.qc_dir, volumes)
        flagged = int((qc_table["flags"].fillna("") != "").sum()) if len(qc_table) else 0
        write_atomic(paths.report_tables_dir / "qc.csv", qc_table.to_csv(index=False))
        body = (f"<h3>DSC and HD95</h3>{metrics}<h3>Quality control</h3><p>Liver (green) and tumor (red) contours "
                f"at the tumor's largest slice; {flagged} case(s) flagged (red frame).</p>{gallery}")
    else:
        body = '<p class="note">clinical-only study: no images.</p>'
    sections.append(("segmentation", "3. Segmentation", body))

    # 4. Features
    features_path = paths.feature_table
    body = ""
    if features_path.is_file():
        features = pd.read_parquet(features_path)
        from hccrad.features.morphology import PAPER_MORPHOLOGY_NAMES

        candidates = [(paper, column) for paper, column in PAPER_MORPHOLOGY_NAMES.items() if column in features]
        rows = []
        for paper, column in candidates:
            row = {"factor (Supplementary Table 2)": paper, "column": column}
            for dataset in ("training", "validation"):
                values = features.loc[features["dataset"] == dataset, column].dropna()
                row[dataset] = (f"{values.median():.2f} [{values.quantile(.25):.2f}-{values.quantile(.75):.2f}]"
                                if len(values) else "")
            rows.append(row)
        issues = _read_csv(paths.feature_failures)
        if issues is not None and "severity" not in issues:
            issues["severity"] = "error"  # a failures table written before QC warnings existed
        failures = None if issues is None else issues[issues["severity"] == "error"]
        qc_warnings = None if issues is None else issues[issues["severity"] == "warning"]
        body += (f"<p>{len(features)} patients with features ({features.shape[1]} columns); "
                 f"{0 if failures is None else len(failures)} failed.</p><h3>Candidate morphological factors, median "
                 f"[IQR]</h3>{table_html(pd.DataFrame(rows))}")
        if failures is not None and len(failures):
            body += f"<h3>Cases without features</h3>{table_html(failures)}"
        if qc_warnings is not None and len(qc_warnings):
            body += f"<h3>QC warnings (features computed)</h3>{table_html(qc_warnings)}"
    else:
        body += '<p class="note">no image features (clinical-only study or features not computed).</p>'
    selected = _read_csv(paths.selected_factors)
    if selected is not None:
        body += f"<h3>Factors of every model (Supplementary Table 3)</h3>{table_html(selected)}"
        for log_path in sorted(paths.models_dir.glob("*_selection_log.csv")):
            log = pd.read_csv(log_path)
            counts = log.groupby(["step", "action"]).size().rename("features").reset_index()
            body += (f"<details><summary>Selection log: {esc(log_path.stem.replace('_selection_log', ''))}"
                     f"</summary>{table_html(counts)}<div class='scroll'>"
                     f"{table_html(log[log['action'] != 'removed'])}</div></details>")
    body += robustness_section(study) if study.config.require_images else ""
    sections.append(("features", "4. Features", body))

    # 5. Models
    body = ""
    if (paths.evaluation_table("hazard_ratios")).is_file():
        body += "<h3>Hazard ratios (Supplementary Figure 1)</h3>" + _figure_block(figures_dir, [("hazard_ratios", "")])
        body += table_html(pd.read_csv(paths.evaluation_table("hazard_ratios")))
        body += "<h3>Discrimination</h3>" + _horizon_table(_read_csv(paths.evaluation_table("discrimination")))
        body += table_html(_read_csv(paths.evaluation_table("concordance")))
        body += "<h3>ROC and calibration, T vs T&amp;L (Supplementary Figure 2) and all models</h3>"
        for horizon in horizons:
            names = []
            for dataset in ("training", "validation"):
                tag = f"{dataset}_{horizon:g}m"
                names += [(f"roc_T_vs_TL_{tag}", f"ROC {dataset} {horizon:g} m"),
                          (f"calibration_T_vs_TL_{tag}", f"calibration {dataset} {horizon:g} m")]
            body += _figure_block(figures_dir, names)
        body += "<details><summary>All four models</summary>" + _figure_block(
            figures_dir, [(f"{kind}_all_{d}_{h:g}m", f"{kind} {d} {h:g} m") for h in horizons
                          for d in ("training", "validation") for kind in ("roc", "calibration")]) + "</details>"
        body += _horizon_table(_read_csv(paths.evaluation_table("calibration")))
        body += ("<h3>Model comparison: IPCW time-dependent AUCs (censoring-aware, primary)</h3>"
                 + _horizon_table(_read_csv(paths.evaluation_table("auc_comparison"))))
        body += ("<h3>DeLong tests, complete case at t as in the paper (Supplementary Table 4)</h3>"
                 + _horizon_table(_read_csv(paths.evaluation_table("delong"))))
        body += "<h3>Likelihood-ratio tests</h3>" + table_html(
            _lr_for_readers(_read_csv(paths.evaluation_table("likelihood_ratio"))))
        body += "<h3>NRI and IDI of the second model over the first</h3>" + _horizon_table(
            _nri_for_readers(_read_csv(paths.evaluation_table("nri_idi"))))
        per_set = [(h, d) for h in horizons for d in ("training", "validation")]
        body += "<h3>Risk scores by outcome (Supplementary Figure 3)</h3>" + _figure_block(
            figures_dir, [(f"risk_boxes_{d}_{h:g}m", f"{d} {h:g} m") for h, d in per_set])
        body += _horizon_table(_read_csv(paths.evaluation_table("risk_score_boxes")))
        body += "<h3>Subgroups of C-T&amp;L (Supplementary Figure 4)</h3>" + _figure_block(
            figures_dir, [(f"subgroups_{d}_{h:g}m", f"{d} {h:g} m") for h, d in per_set])
        body += _horizon_table(_read_csv(paths.evaluation_table("subgroups")))
        body += _horizon_table(_read_csv(paths.evaluation_table("subgroup_tests")))
        body += "<h3>Kaplan-Meier risk groups</h3>" + _figure_block(
            figures_dir, [(f"km_{model_slug(m)}_{d}", f"{m} {d}") for m in MODEL_NAMES
                          for d in ("training", "validation")])
        body += table_html(_read_csv(paths.evaluation_table("risk_groups")))
        internal = _read_csv(paths.evaluation_table("internal_validation"))
        if internal is not None:
            body += ("<h3>Internal validation (bootstrap optimism, every fitted step repeated per resample)</h3>"
                     + _horizon_table(internal))
        body += ("<h3>Brier score and decision curves</h3>"
                 + _horizon_table(_read_csv(paths.evaluation_table("brier"))))
        body += _figure_block(figures_dir, [(f"decision_{d}_{h:g}m", f"{d} {h:g} m") for h in horizons
                                            for d in ("training", "validation")])
        shift = _read_csv(paths.evaluation_table("center_shift"))
        if shift is not None and len(shift):
            body += ("<h3>Center shift: how far each validation center lies from the training centers</h3><p>Per "
                     "model and validation center: the share of patients outside the model's applicability domain "
                     "(docs/external-validation.md) and the largest standardized mean difference (SMD) of a model "
                     "input against the training centers (|SMD| above 0.1 is a notable shift, above 0.25 a large one)."
                     " Every input's SMD, and before ComBat where the study harmonizes, is in "
                     "center_shift_inputs.csv.</p>" + table_html(_center_shift_for_readers(shift)))
    else:
        body = '<p class="note">models not evaluated.</p>'
    sections.append(("models", "5. Models", body))

    # 6. Reproducibility
    checksums = {"manifest (sha256)": file_sha256(manifest),
                 "clinical table (sha256)": file_sha256(study.config.clinical_table_path)}
    params = ""
    if study.config.require_images:
        from hccrad.features import FeatureConfig

        feature_config = FeatureConfig.model_validate(study.config.features)
        params = (f"<h3>PyRadiomics parameters ({esc(feature_config.params)})</h3><pre>"
                  f"{esc(feature_config.params_path(study.config.base_dir).read_text())}</pre>")
    from hccrad.survival import ModelConfig

    model_config = ModelConfig.for_study(study.config)
    stage_rows = pd.DataFrame([s.__dict__ for s in stages or []])
    body = (table_html(pd.DataFrame(list(checksums.items()), columns=["file", "checksum"]))
            + "<h3>Software</h3>" + table_html(pd.DataFrame(list(software_versions().items()),
                                                            columns=["package", "version"]))
            + f"<h3>Settings and seeds</h3><pre>{esc(json.dumps(model_config.model_dump(mode='json'), indent=1))}</pre>"
            + f"<p>Split: {esc(study.config.split.model_dump())}</p>" + params
            + "<h3>This run</h3>" + table_html(stage_rows, 1)
            + "<h3>Cases that failed</h3>" + table_html(pd.DataFrame(failed_cases or [])))
    sections.append(("reproducibility", "6. Reproducibility", body))

    from hccrad.report.paper import build_paper

    paper = build_paper(study)
    sections.append(("paper", "7. Paper folder", "<p>The study's tables and figures in the paper's numbering, as a "
                     "journal takes them (tables as CSV, Word and LaTeX, all in <code>tables.docx</code>; figures as "
                     "vector PDF, SVG and PNG at 300 dpi), the methods written from this run and the TRIPOD+AI "
                     f"checklist, in <code>paper/</code> beside this report:</p>{_paper_listing(paper)}"))
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    content = "".join(f'<section id="{key}"><h2>{esc(title)}</h2>{body}</section>' for key, title, body in sections)
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(study.config.name)}</title>"
            f"<style>{CSS}@page {{ size: {report_config(study.config.report).paper_size}; margin: 12mm; }}</style>"
            f"<script>{SCRIPT}</script></head><body><header><h1>{esc(study.config.name)}</h1>"
            f"<div>hccrad study report: 3D synergistic tumor-liver analysis of PFS</div></header><nav>{nav}</nav>"
            f"<main>{content}</main></body></html>")
    path = paths.report_html
    write_atomic(path, page)
    from hccrad.report.pdf import print_pdf

    note = print_pdf(path, path.with_suffix(".pdf"))
    write_atomic(paper / "report_pdf.txt", f"report.pdf: {note}\n")
    for source, target in ((tables_dir, paths.report_tables_dir), (figures_dir, paths.report_figures_dir)):
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            for file in source.iterdir():
                shutil.copy2(file, target / file.name)
    return path


