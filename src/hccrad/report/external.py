"""The external validation's report: ``<output_dir>/external/report/external_validation.html`` (and its PDF), and
its paper tables (CSV, Word, LaTeX) in ``external/report/paper``: saved models on another hospital's patients,
with where the models came from, every statistic of the evaluation on these patients, the applicability domain
per center and, with an update, calibration before and after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.io.files import write_atomic
from hccrad.io.manifest import Study
from hccrad.report.formatting import format_estimate, format_horizon
from hccrad.report.html import CSS, _figure_block, esc, table_html
from hccrad.report.paper import PaperTable, write_table


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def summary_paper_table(concordance: pd.DataFrame, discrimination: pd.DataFrame, horizons) -> PaperTable:
    """C-index and AUC at each horizon with 95% CIs, one row per model, on the external patients."""
    rows = []
    for _, row in concordance.iterrows():
        record = {"Model": row["model"], "Patients (events)": f"{int(row['n'])} ({int(row['events'])})",
                  "Harrell's C (95% CI)": format_estimate(row["harrell_c"], row["harrell_ci_low"],
                                                          row["harrell_ci_high"], 3),
                  "Uno's C (95% CI)": format_estimate(row["uno_c"], row["uno_ci_low"], row["uno_ci_high"], 3)}
        for horizon in horizons:
            match = discrimination[(discrimination["model"] == row["model"]) & (discrimination["horizon"] == horizon)]
            m = match.iloc[0] if len(match) else None
            record[f"AUC at {format_horizon(horizon)} (95% CI)"] = (
                "not estimable" if m is None or pd.isna(m["auc_ipcw"])
                else format_estimate(m["auc_ipcw"], m["auc_ipcw_ci_low"], m["auc_ipcw_ci_high"], 3))
        rows.append(record)
    return PaperTable("external_validation_summary", "External validation. Discrimination of the frozen models on "
                      "the external patients.", pd.DataFrame(rows),
                      ["C-index: bootstrap 95% CI. AUC: inverse-probability-of-censoring weighted cumulative/dynamic "
                       "AUC, bootstrap 95% CI. The models were not refitted: coefficients, coding, preprocessing and "
                       "cut-off are those of their artifacts."])


def calibration_paper_table(calibration: pd.DataFrame) -> PaperTable:
    """ICI, E50, E90, calibration slope and O/E per model and horizon on the external patients."""
    rows = [{"Model": r["model"], "Horizon": format_horizon(r["horizon"]), "ICI": f"{r['ici']:.3f}",
             "E50": f"{r['e50']:.3f}", "E90": f"{r['e90']:.3f}",
             "Calibration slope (95% CI)": format_estimate(r["slope"], r["slope_ci_low"], r["slope_ci_high"], 2),
             "O/E (95% CI)": format_estimate(r["oe_ratio"], r["oe_ci_low"], r["oe_ci_high"], 2)}
            for _, r in calibration.iterrows() if "ici" in r and pd.notna(r.get("ici"))]
    return PaperTable("external_validation_calibration", "External validation. Calibration of the frozen models on "
                      "the external patients.", pd.DataFrame(rows),
                      ["ICI, E50, E90: mean, median and 90th percentile of |predicted - observed| risk, observed by a "
                       "Cox model on a spline of cloglog(predicted risk) (Austin 2020). O/E: Kaplan-Meier risk over "
                       "the mean predicted risk; 1 is ideal."])


def _provenance_html(provenance: pd.DataFrame) -> str:
    shown = provenance.rename(columns={
        "model": "Model", "artifact": "Artifact", "file_sha256": "File SHA-256", "content_sha256": "Content SHA-256",
        "created": "Saved", "development_study": "Development study", "development_date": "Fitted",
        "training_patients": "Training patients", "training_events": "Training events",
        "training_centers": "Training centers"})
    return table_html(shown)


def _update_html(folder: Path) -> str:
    before_after = _read(folder / "update_calibration.csv")
    optimism = _read(folder / "update_optimism.csv")
    if before_after is None:
        return ""
    unchanged = before_after.groupby(["model", "horizon"])["harrell_c"].agg(lambda c: c.max() - c.min())
    same = bool((unchanged.abs() < 1e-12).all())
    shown = before_after.rename(columns={"version": "Model version", "horizon": "Horizon, months",
                                         "harrell_c": "Harrell's C", "ici": "ICI", "e50": "E50", "e90": "E90",
                                         "slope": "Calibration slope", "oe_ratio": "O/E",
                                         "oe_ci_low": "O/E, 95% CI low", "oe_ci_high": "O/E, 95% CI high",
                                         "model": "Model"})
    body = (f"<h2>Model updating</h2><p>Calibration before (frozen) and after updating on these patients. The update "
            "is monotone in the risk score, so the patients' ranking, and every discrimination statistic, is "
            f"unchanged{': Harrell C is equal before and after for every model' if same else ''}. Updated "
            "artifacts: <code>updated_models/</code>, each recording its parent's checksum, the method, this cohort "
            f"and its new parameters.</p>{table_html(shown)}")
    if optimism is not None and len(optimism):
        body += ("<h3>Optimism of the updated calibration (bootstrap)</h3><p>The update refitted on each bootstrap "
                 "resample of these patients and measured on the resample and on all of them; the corrected value is "
                 "the one to report.</p>" + table_html(optimism.rename(columns={
                     "model": "Model", "method": "Method", "measure": "Measure", "apparent": "Apparent",
                     "optimism": "Optimism", "corrected": "Optimism-corrected", "resamples": "Resamples"})))
    return body


def write_external_report(study: Study, result: Any) -> Path:
    """Write the external validation's HTML report, its PDF and paper tables; returns the HTML's path.

    ``result`` is :class:`hccrad.pipeline.external.ExternalValidation` (``out_dir``, ``provenance``,
    ``predictions``, ``domain``)."""
    from hccrad.report.pdf import print_pdf

    folder = Path(result.out_dir)
    tables = folder / "evaluation" / "tables"
    figures = folder / "evaluation" / "figures"
    report_dir = folder / "report"
    paper = report_dir / "paper"
    paper.mkdir(parents=True, exist_ok=True)
    horizons = list(study.config.horizons_months)
    concordance = _read(tables / "concordance.csv")
    discrimination = _read(tables / "discrimination.csv")
    calibration = _read(tables / "calibration.csv")
    def validation(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        return frame[frame["dataset"] == "validation"] if frame is not None and "dataset" in frame else frame

    concordance, discrimination, calibration = (validation(f) for f in (concordance, discrimination, calibration))
    paper_tables = []
    if concordance is not None and len(concordance):
        paper_tables.append(summary_paper_table(concordance, discrimination, horizons))
    if calibration is not None and len(calibration):
        paper_tables.append(calibration_paper_table(calibration))
    for table in paper_tables:
        write_table(table, paper)
    names = ", ".join(result.provenance["model"])
    predictions = result.predictions
    counts = predictions.groupby("center").agg(patients=("pfs_event", "size"), progressions=("pfs_event", "sum")) \
        if "center" in predictions else pd.DataFrame()
    sections = [
        f"<h1>External validation of the models {esc(names)} on {esc(study.config.name)}</h1>",
        "<p>Every patient of this study is external: the saved models were applied as they are (TRIPOD type 4), "
        "with the coding, preprocessing, coefficients, baseline survival and risk cut-off of their artifacts, and "
        "image features computed as the artifacts record.</p>",
        "<h2>Where the models come from</h2>" + _provenance_html(result.provenance),
        "<h2>Patients</h2>" + table_html(counts.reset_index()) if len(counts) else "",
    ]
    domain = getattr(result, "domain", None)
    if domain is not None and len(domain):
        sections.append("<h2>Applicability domain</h2><p>Share of patients outside each model's applicability "
                        "domain (their model inputs farther from the development patients than the threshold "
                        "percentile of the development patients' own leave-one-out distances); the models' "
                        "predictions for them extrapolate.</p>" + table_html(domain))
    for table in paper_tables:
        sections.append(f"<h2>{esc(table.caption)}</h2>{table_html(table.frame)}"
                        + "".join(f'<p class="footnote">{esc(note)}</p>' for note in table.footnotes))
    comparison = validation(_read(tables / "auc_comparison.csv"))
    if comparison is not None and len(comparison):
        sections.append("<h2>Model comparisons (censoring-aware, IPCW AUC difference)</h2>"
                        + table_html(comparison.drop(columns=["dataset"], errors="ignore")))
    risk_groups = validation(_read(tables / "risk_groups.csv"))
    if risk_groups is not None and len(risk_groups):
        sections.append("<h2>Risk groups at the frozen cut-off</h2>"
                        + table_html(risk_groups.drop(columns=["dataset"], errors="ignore")))
    for horizon in horizons:
        h = f"{horizon:g}m"
        sections.append(f"<h2>{format_horizon(horizon)}</h2>" + _figure_block(figures, [
            (f"roc_all_validation_{h}", f"ROC, {format_horizon(horizon)}"),
            (f"calibration_all_validation_{h}", f"Calibration, {format_horizon(horizon)}"),
            (f"decision_validation_{h}", f"Decision curves, {format_horizon(horizon)}"),
            (f"subgroups_validation_{h}", f"C-T&L by subgroup, {format_horizon(horizon)}")]))
    sections.append(_update_html(folder))
    html = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>External validation: "
            f"{esc(study.config.name)}</title><style>{CSS}</style></head><body>{''.join(sections)}</body></html>")
    path = report_dir / "external_validation.html"
    write_atomic(path, html)
    note = print_pdf(path, path.with_suffix(".pdf"))
    write_atomic(report_dir / "external_validation_pdf.txt", f"external_validation.pdf: {note}\n")
    return path
