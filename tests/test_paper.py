"""The paper folder: every table and figure a journal takes, in the paper's numbering and formats, the methods
written from the run, the TRIPOD+AI checklist, and the report's PDF."""

from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hccrad.report.formatting import format_estimate, format_horizon, format_p

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TABLES = ("table1", "supplementary_table1", "table2", "table3", "table4", "summary_c_index_auc")
FIGURES = ("figure1_hazard_ratios", "figure2_roc_calibration", "figure3_risk_scores", "figure4_subgroups")


@pytest.fixture(scope="module")
def paper_run(demo_cohort_features, tmp_path_factory):
    """The demo study run to its report (its features already computed), on a copy."""
    from hccrad.pipeline import run_study

    study, _ = demo_cohort_features
    target = tmp_path_factory.mktemp("paper") / "study"
    shutil.copytree(study.config.base_dir, target)
    result = run_study(target / "study.yaml", n_bootstrap=20)
    assert result.status == "done", result.stopped
    return target / "study.yaml", result, result.report.parent / "paper"


def test_the_formatting_rules():
    assert [format_p(p) for p in (0.0, 0.0004, 0.001, 0.0123, 0.35, float("nan"))] == [
        "< 0.001", "< 0.001", "0.001", "0.012", "0.350", "-"]
    assert format_estimate(1.6543, 1.18, 2.312) == "1.65 (1.18-2.31)"
    assert format_estimate(-0.12, -0.3, 0.05) == "-0.12 (-0.30 to 0.05)"
    assert format_horizon(6.0) == "6 months" and format_horizon(1) == "1 month"


def test_an_auc_the_evaluation_could_not_estimate_says_why_from_its_counts(paper_run, tmp_path):
    """The summary table's empty AUC cell names the count that is short, read from the evaluation's row."""
    from hccrad.io import load_study
    from hccrad.report.paper import summary_table

    manifest, _, _ = paper_run
    target = tmp_path / "study"
    shutil.copytree(manifest.parent, target)
    study = load_study(target / "study.yaml")
    path = study.config.layout.evaluation_table("discrimination")
    discrimination = pd.read_csv(path)
    chosen = discrimination.index[(discrimination["model"] == "T") & (discrimination["dataset"] == "validation")]
    short = {chosen[0]: (1, 30), chosen[1]: (12, 0)}
    for index, (cases, controls) in short.items():
        discrimination.loc[index, ["auc_ipcw", "n_cases", "n_controls"]] = [float("nan"), cases, controls]
    discrimination.to_csv(path, index=False)
    horizons = sorted(discrimination["horizon"].unique())
    table = summary_table(study, horizons).frame
    row = table[(table["Model"] == "T") & (table["Set"] == "Validation")].iloc[0]
    for index, (cases, controls) in short.items():
        cell = row[f"AUC at {format_horizon(discrimination.loc[index, 'horizon'])} (95% CI)"]
        assert cell == (f"too few progressions ({cases})" if cases < 2 else f"too few progression-free ({controls})")


def test_every_table_in_every_format_with_caption_and_footnote(paper_run):
    import docx

    _, _, paper = paper_run
    combined = docx.Document(str(paper / "tables.docx"))
    combined_text = "\n".join(p.text for p in combined.paragraphs)
    for name in TABLES:
        frame = pd.read_csv(paper / f"{name}.csv", dtype=str, keep_default_na=False)
        assert len(frame), name
        document = docx.Document(str(paper / f"{name}.docx"))
        [grid] = document.tables
        assert len(grid.rows) == len(frame) + 1  # the header and every row
        assert [cell.text for cell in grid.rows[1].cells] == list(frame.iloc[0])
        caption, *footnotes = [p.text for p in document.paragraphs if p.text]
        assert caption.split(".")[0] in combined_text and footnotes, name
        tex = (paper / f"{name}.tex").read_text()
        assert r"\begin{tabular}" in tex and r"\caption{" in tex
        assert "inference" not in frame.columns and "censoring" not in frame.columns
        for column in frame.columns:
            if column.startswith("p"):
                assert not frame[column].isin(["0.000", "0.0"]).any(), (name, column)
    assert len(combined.tables) == len(TABLES)


def test_table_numbers_match_the_evaluation(paper_run):
    manifest, _, paper = paper_run
    concordance = pd.read_csv(manifest.parent / "output" / "evaluation" / "tables" / "concordance.csv")
    summary = pd.read_csv(paper / "summary_c_index_auc.csv", dtype=str)
    row = concordance[(concordance["model"] == "C-T&L") & (concordance["dataset"] == "validation")].iloc[0]
    shown = summary[(summary["Model"] == "C-T&L") & (summary["Set"] == "Validation")].iloc[0]
    assert shown["C-index (95% CI)"] == format_estimate(row["harrell_c"], row["harrell_ci_low"], row["harrell_ci_high"],
                                                        3)
    delong = pd.read_csv(manifest.parent / "output" / "evaluation" / "tables" / "delong.csv")
    table4 = pd.read_csv(paper / "table4.csv", dtype=str)
    assert len(table4) == len(delong) and table4["p, DeLong"].iloc[0] == format_p(delong["p"].iloc[0])


def _pdf_is_vector(path: Path) -> bool:
    """A page drawn with paths (stroke or fill operators in a content stream), and no embedded raster image."""
    data = path.read_bytes()
    if b"/Subtype /Image" in data:
        return False
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            content = zlib.decompress(stream)
        except zlib.error:
            content = stream
        if re.search(rb"\b(re|l|c)\s*\n?[^\n]*\b[SfB]\b", content):
            return True
    return False


def test_every_figure_as_vector_pdf_with_embedded_fonts_svg_and_300_dpi_png(paper_run):
    _, _, paper = paper_run
    for name in FIGURES:
        pdf = paper / f"{name}.pdf"
        assert _pdf_is_vector(pdf), name
        assert b"/FontFile2" in pdf.read_bytes()  # TrueType fonts embedded
        assert (paper / f"{name}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
        png = (paper / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        import struct

        width = struct.unpack(">I", png[16:20])[0]
        assert width >= 7.0 * 300 * 0.9  # a two-column figure at 300 dpi


@pytest.mark.parametrize("figure_of", ["paper", "report"])
def test_the_forest_plots_tick_labels_do_not_overlap(paper_run, figure_of):
    """Measured from the rendered text extents of every panel's tick labels, in the paper's Figure 1 and in the
    report's Supplementary Figure 1 (whose feature names are also whole)."""
    from hccrad.evaluate.figures import forest_figure
    from hccrad.report.paper import figure_codes, hazard_ratio_figure

    manifest, _, _ = paper_run
    out = manifest.parent / "output"
    hazards = pd.read_csv(out / "evaluation" / "tables" / "hazard_ratios.csv")
    wide = pd.concat([hazards, hazards.assign(model="wide", ci_low=0.003, ci_high=900.0)])  # a very wide CI too
    if figure_of == "paper":
        figure = hazard_ratio_figure(wide, figure_codes(pd.read_csv(out / "models" / "selected_factors.csv")))
    else:
        figure = forest_figure(wide)
        names = {label.get_text() for axis in figure.axes for label in axis.get_yticklabels()}
        assert set(wide["covariate"]) <= names  # no name cut short
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes:
        boxes = [label.get_window_extent(renderer) for label in axis.get_xticklabels() if label.get_text()]
        assert len(boxes) >= 2 or not axis.get_xticks().size
        for first, second in zip(boxes, boxes[1:], strict=False):
            assert first.x1 < second.x0, [label.get_text() for label in axis.get_xticklabels()]
        texts = [label.get_text() for label in axis.get_xticklabels()]
        assert not any("10^" in text or "times" in text for text in texts)


def test_the_methods_count_what_the_run_wrote_and_follow_a_changed_setting(paper_run):
    from hccrad.io import load_study
    from hccrad.report.methods import methods_sections, selection_counts

    manifest, _, paper = paper_run
    text = (paper / "methods.md").read_text()
    out = manifest.parent / "output"
    table = load_study(manifest).table()
    training = table[table["dataset"] == "training"]
    events = int(training["pfs_event"].sum())
    assert f"The training set held {len(training)} patients with {events} progressions" in text
    counts = selection_counts(pd.read_csv(out / "models" / "T_L_selection_log.csv"))
    selected = pd.read_csv(out / "models" / "selected_factors.csv")
    assert counts["final"] == int((selected["model"] == "T&L").sum())
    assert f"T&L: {counts['candidates']} candidate features" in text and f"{counts['lasso']} kept by the LASSO" in text
    assert "Wald p < 0.05" in text and "bin width of 25 HU" in text
    # a changed setting changes the text
    settings = yaml.safe_load(manifest.read_text())
    settings["models"] = {**(settings.get("models") or {}), "univariate_p": 0.01}
    changed = manifest.parent / "changed.yaml"  # beside the study, so its relative paths still resolve
    changed.write_text(yaml.safe_dump(settings))
    assert "Wald p < 0.01" in dict(methods_sections(load_study(changed)))["Model development"]
    import docx

    assert "Wald p < 0.05" in "\n".join(p.text for p in docx.Document(str(paper / "methods.docx")).paragraphs)


def test_the_tripod_ai_checklist_lists_its_27_items(paper_run):
    import docx

    from hccrad.report.methods import TRIPOD_AI_ITEMS

    _, _, paper = paper_run
    numbers = {re.match(r"\d+", number).group() for number, _, _ in TRIPOD_AI_ITEMS}
    assert numbers == {str(k) for k in range(1, 28)}
    text = (paper / "tripod_ai.md").read_text()
    assert text.count("\n| ") >= len(TRIPOD_AI_ITEMS) and "to be completed by the authors" in text
    assert "table1" in text and "methods.md" in text
    assert len(docx.Document(str(paper / "tripod_ai.docx")).tables[0].rows) == len(TRIPOD_AI_ITEMS) + 1


def test_the_latex_tables_compile_where_a_tex_engine_is_installed(paper_run, tmp_path):
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no TeX engine (pdflatex) installed: the LaTeX tables are checked for structure only")
    _, _, paper = paper_run
    for name in TABLES:
        shutil.copy(paper / f"{name}.tex", tmp_path)
        result = subprocess.run([engine, "-interaction=nonstopmode", f"{name}.tex"], cwd=tmp_path,
                                capture_output=True, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:]


def test_the_report_links_the_paper_folder_uses_its_formatting_and_has_a_pdf(paper_run):
    _, result, paper = paper_run
    text = result.report.read_text()
    assert "7. Paper folder" in text and 'href="paper/tables.docx"' in text
    assert "<td>0.000</td>" not in text.split('id="models"')[1]  # no p-value of 0.000 in the models' tables
    assert "apparent: the models were fitted on these patients" in text  # the per-row note, once, as a footnote
    assert text.count("apparent: the models were fitted on these patients; not for inference</td>") == 0
    pdf = result.report.with_suffix(".pdf")
    note = (paper / "report_pdf.txt").read_text()
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        assert pdf.read_bytes().startswith(b"%PDF") and "printed by" in note
        import re

        # A4 (595 x 842 pt), the default `report: {paper_size}`, not Chromium's US Letter (612 x 792)
        found = re.findall(rb"/MediaBox\s*\[\s*([\d.\s]+)\]", pdf.read_bytes())[:3]
        boxes = {tuple(round(float(v)) for v in box.decode().split()[2:4]) for box in found}
        assert boxes == {(595, 842)}, boxes
    else:
        assert "not made" in note


def test_the_report_in_chromium_links_every_paper_file_and_footnotes_its_tables(paper_run, chromium_webdriver):
    from selenium.webdriver.common.by import By

    _, result, paper = paper_run
    browser = chromium_webdriver()
    try:
        browser.get(result.report.resolve().as_uri())
        section = browser.find_element(By.ID, "paper")
        links = {a.get_attribute("href").rsplit("/", 1)[-1] for a in section.find_elements(By.TAG_NAME, "a")}
        expected = {f"{name}.{suffix}" for name in TABLES for suffix in ("csv", "docx", "tex")} | {
            f"{name}.{suffix}" for name in FIGURES for suffix in ("pdf", "svg", "png")} | {
            "tables.docx", "methods.md", "methods.docx", "tripod_ai.md", "tripod_ai.docx"}
        assert expected <= links, expected - links
        browser.execute_script("arguments[0].scrollIntoView();", section)
        assert section.is_displayed()
        models = browser.find_element(By.ID, "models")
        footnotes = [p.text for p in models.find_elements(By.CSS_SELECTOR, "p.footnote")]
        assert any("apparent:" in text for text in footnotes)
        for table in models.find_elements(By.TAG_NAME, "table"):
            headers = [th.text for th in table.find_elements(By.TAG_NAME, "th")]
            for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
                for header, cell in zip(headers, row.find_elements(By.TAG_NAME, "td"), strict=False):
                    is_p = header in ("p", "pval", "p_value") or header.startswith("p_") or header.endswith("_p")
                    assert not (is_p and cell.text == "0.000"), header
                    assert not (header == "horizon" and re.fullmatch(r"\d+\.\d+", cell.text)), cell.text
        ARTIFACTS.mkdir(exist_ok=True)
        section.screenshot(str(ARTIFACTS / "report-paper-section.png"))
        browser.execute_script("arguments[0].scrollIntoView();", models)
        models.screenshot(str(ARTIFACTS / "report-models-section.png"))
        assert (ARTIFACTS / "report-paper-section.png").stat().st_size > 5_000
    finally:
        browser.quit()


def test_a_failed_print_leaves_no_pdf_of_an_earlier_report(tmp_path, monkeypatch):
    """Without Chromium and WeasyPrint the PDF is not made, and the earlier report's PDF is gone with it."""
    import builtins

    from hccrad.report import pdf as pdf_module

    page = tmp_path / "report.html"
    page.write_text("<html><body>new report</body></html>")
    earlier = tmp_path / "report.pdf"
    earlier.write_bytes(b"%PDF-1.4 the earlier report")
    monkeypatch.setattr(pdf_module, "chromium_path", lambda: None)
    real_import = builtins.__import__

    def no_weasyprint(name, *args, **kwargs):
        if name == "weasyprint":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weasyprint)
    note = pdf_module.print_pdf(page, earlier)
    assert note.startswith("not made") and "install" in note
    assert not earlier.exists()


def test_feature_descriptions_read_as_words_and_clinical_rows_say_their_coding():
    import re

    from hccrad.features.names import PAPER_TABLE3, _words, describe_feature

    assert _words("Maximum2DDiameterSlice") == "maximum 2D diameter slice"
    assert _words("10Percentile") == "10th percentile" and _words("Idmn") == "inverse difference moment normalized"
    for column in PAPER_TABLE3.values():
        text = describe_feature(column)
        assert not re.search(r"\b(DD|iameter)\b|\d [A-Z]{2}\b", text), text  # no word cut ("2 DD iameter")
        if "Maximum2D" in column:
            assert "maximum 2D diameter" in text


def test_every_tripod_pointer_to_methods_names_a_section_that_says_it(paper_run):
    """Each TRIPOD+AI answer that cites "methods.md, 'Section'" cites a heading methods.md has; items 11 (missing
    data) and 12b (coding of the clinical factors) point at text that states them."""
    import re

    from hccrad.report.methods import tripod_answers

    _, result, paper = paper_run
    methods = (paper / "methods.md").read_text()
    sections = dict(re.findall(r"^## ([^\n]+)\n\n(.*?)(?=\n## |\Z)", methods, flags=re.MULTILINE | re.DOTALL))
    answers = tripod_answers(result.study)
    for item, answer in answers.items():
        for cited in re.findall(r"'([^']+)'", answer) if "methods.md" in answer else []:
            assert cited in sections, (item, cited, list(sections))
    assert "Missing data:" in sections["Model development"] and "imput" in sections["Model development"]
    assert "Coding of the clinical factors: AFP as a binary factor" in sections["Model development"]
    assert "Child-Pugh grade as one ordinal covariate (A = 0, B = 1, C = 2" in sections["Model development"]


def test_captions_follow_the_papers_numbering_and_the_setting_changes_it(paper_run, tmp_path):
    """tables.docx and every caption use the paper's numbering (Supplementary Table 1-4, Supplementary Figure 1-4),
    and the items the paper does not number say so; ``report: {item_format}`` renumbers them."""
    import docx
    import yaml

    from hccrad.io import load_study
    from hccrad.report.paper import paper_figures, paper_tables

    manifest, result, paper = paper_run
    captions = [p.text for p in docx.Document(paper / "tables.docx").paragraphs if p.runs and p.runs[0].bold]
    numbered = [c.split(".")[0] for c in captions if c.startswith("Supplementary")]
    assert numbered == [f"Supplementary Table {k}" for k in (1, 2, 3, 4)], captions
    assert all(c.startswith(("Supplementary Table", "Baseline characteristics (not numbered",
                             "Summary table (not numbered")) for c in captions), captions
    readme = (paper / "README.md").read_text()
    assert all(f"Supplementary Figure {k}." in readme for k in (1, 2, 3, 4)) and "Figure 1." not in readme.replace(
        "Supplementary Figure 1.", "")
    settings = yaml.safe_load(manifest.read_text())
    settings["report"] = {"item_format": "{kind} S{number}"}
    other = manifest.parent / "renumbered.yaml"
    other.write_text(yaml.safe_dump(settings))
    study = load_study(other)
    assert [t.caption.split(".")[0] for t in paper_tables(study) if t.caption.startswith("Table S")] == [
        "Table S1", "Table S2", "Table S3", "Table S4"]
    assert [f.caption.split(".")[0] for f in paper_figures(study)] == ["Figure S1", "Figure S2", "Figure S3",
                                                                       "Figure S4"]


def test_one_colour_per_model_and_per_structure_in_every_output():
    """The report's figures, the paper folder, the QC gallery and the web app's viewer take their colours from one
    definition, and the viewer's colour key (CSS) shows the same."""
    import re
    from pathlib import Path

    import hccrad.serve
    from hccrad.evaluate import figures
    from hccrad.evaluate.style import MODEL_COLORS, STRUCTURE_RGB
    from hccrad.report import paper
    from hccrad.serve import render

    assert figures.MODEL_COLORS is MODEL_COLORS and paper.MODEL_COLORS is MODEL_COLORS
    assert render.CONTOUR_COLORS == {1: STRUCTURE_RGB["liver"], 2: STRUCTURE_RGB["tumor"],
                                     3: STRUCTURE_RGB["portal_vein"]}
    css = "".join(path.read_text() for path in (Path(hccrad.serve.__file__).parent / "static").glob("*.css"))
    for swatch, structure in (("liver", "liver"), ("tumor", "tumor"), ("portal", "portal_vein")):
        found = re.search(rf"\.swatch\.{swatch} {{ background: rgb\((\d+), (\d+), (\d+)\)", css)
        assert tuple(int(v) for v in found.groups()) == STRUCTURE_RGB[structure], swatch


def test_the_reports_tables_read_as_a_reader_reads_them(paper_run):
    """Every table of report.html (pandas.read_html): no header is a snake_case identifier; counts show no
    decimals; an estimate and its CI share one cell; p-values follow the p rule."""
    import io
    import re

    _, result, _ = paper_run
    tables = pd.read_html(io.StringIO(result.report.read_text()))
    assert len(tables) > 20
    for table in tables:
        for header in map(str, table.columns):
            assert not re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", header), header
        for header in ("Patients", "Progressions", "Cases", "Controls"):
            if header in table:
                assert all(re.fullmatch(r"\d+|-", str(v)) for v in table[header]), (header, table[header].tolist())
        for header in (h for h in map(str, table.columns) if h.endswith("(95% CI)")):
            assert all(re.fullmatch(r"-?\d+\.\d+ \(.+\)|-?\d+\.\d+|not estimable|-", str(v)) for v in table[header]), \
                header
        for header in (h for h in map(str, table.columns) if h == "p" or h.endswith(" p")):
            assert all(re.fullmatch(r"< 0\.001|\d\.\d{3}|-", str(v)) for v in table[header]), header


def test_nri_and_likelihood_ratio_tables_one_row_per_comparison_with_labelled_estimates(paper_run):
    import io

    _, result, _ = paper_run
    text = result.report.read_text()
    nri = pd.read_html(io.StringIO(text[text.index("NRI and IDI of the second"):]))[0]
    assert {"NRI (95% CI), censoring-aware", "NRI (95% CI), complete case", "IDI (95% CI), censoring-aware",
            "IDI (95% CI), complete case"} <= set(nri.columns)
    keys = nri[["Comparison", "Set", "Horizon"]].astype(str).agg("|".join, axis=1)
    assert not keys.duplicated().any() and len(nri) == 12  # 3 comparisons x 2 sets x 2 horizons
    lr = pd.read_html(io.StringIO(text[text.index("Likelihood-ratio tests</h3>"):]))[0]
    not_nested = lr[lr["Statistic"].astype(str) == "-"]
    assert len(not_nested) and not_nested["Note"].str.startswith("not nested").all()


def test_figure1_shows_every_hazard_ratio_and_figure3_both_horizons_with_n(paper_run):
    """Supplementary Figure 1's SVG holds each factor's HR (95% CI) and p as the tables round them;
    Supplementary Figure 3's holds PD within 6 and 12 months, the C, T&L and C-T&L models and n under the boxes."""
    import html as html_module

    from hccrad.report.formatting import format_estimate, format_p

    manifest, result, paper = paper_run
    svg = html_module.unescape((paper / "figure1_hazard_ratios.svg").read_text())
    hazards = pd.read_csv(manifest.parent / "output" / "evaluation" / "tables" / "hazard_ratios.csv")
    for row in hazards.itertuples():
        assert format_estimate(row.hr, row.ci_low, row.ci_high, 2) in svg, row.covariate
        assert format_p(row.p) in svg
    boxes = html_module.unescape((paper / "figure3_risk_scores.svg").read_text())
    assert "PD within 6 months" in boxes and "PD within 12 months" in boxes and "n = " in boxes
    assert all(f">{model}, training" in boxes or f"{model}, training" in boxes for model in ("C", "T&L", "C-T&L"))


def test_no_legend_of_figure2_is_crossed_by_its_data(paper_run):
    """By rendered extents: every legend of Supplementary Figure 2 lies outside its axes' data area, where the ROC
    curves, the calibration points and their error bars are drawn."""
    from hccrad.evaluate.config import EvaluationConfig
    from hccrad.report.paper import roc_calibration_figure

    _, result, _ = paper_run
    study = result.study
    figure = roc_calibration_figure(study, list(study.config.horizons_months),
                                    EvaluationConfig.model_validate(study.config.evaluation).event_at_horizon)
    renderer = figure.canvas.get_renderer()
    legends = 0
    for axis in figure.axes:
        legend = axis.get_legend()
        if legend is None:
            continue
        legends += 1
        box, area = legend.get_window_extent(renderer), axis.get_window_extent(renderer)
        assert not box.overlaps(area), axis.get_title()
    assert legends == 8


def test_report_pdf_prints_figures_at_the_page_width():
    """The report's print style: no navigation, figures one per line at the full page width (so a 6.5-inch figure
    with 7-pt text prints at 7 pt or more on A4), tables in 9 px type, folded details printed open."""
    from hccrad.report.html import CSS

    printed = CSS[CSS.index("@media print"):]
    assert "nav{display:none}" in printed and ".fig img{max-width:100%;width:100%" in printed
    assert "main{max-width:none" in printed and ".scroll{max-height:none" in printed
