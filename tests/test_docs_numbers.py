"""Every demo table quoted in docs/ is rendered from the demo's own output (docs/demo/*.csv, copied from a run of
`hccrad demo` by `python -m hccrad.report.excerpts`), never typed by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hccrad.report.excerpts import excerpts, read_table, render_excerpt, rewrite

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def test_the_docs_quote_demo_tables_through_excerpts():
    quoted = [name for page in PAGES for name, _, _ in excerpts(page.read_text())]
    assert {"table1", "table4", "summary_c_index_auc"} <= set(quoted)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_each_excerpt_equals_the_demo_table_it_quotes(page):
    for name, rows, body in excerpts(page.read_text()):
        table = read_table(DOCS / "demo" / f"{name}.csv")
        assert body == render_excerpt(name, table, rows), f"{page.name}: {name} differs from docs/demo/{name}.csv"


def test_rewrite_renders_an_excerpt_from_its_table(tmp_path):
    pd.DataFrame({"Model": ["T", "T&L"], "C-index": ["0.765 (0.70-0.82)", "0.80 (0.75-0.85)"]}).to_csv(
        tmp_path / "summary.csv", index=False)
    text = "before\n<!-- demo-table: summary rows=1 -->\nstale 0.720\n<!-- /demo-table -->\nafter\n"
    updated = rewrite(text, tmp_path)
    assert "stale" not in updated and "| T | 0.765 (0.70-0.82) |" in updated and "T&L" not in updated
    assert "`summary` (the first 1 of its 2 rows):" in updated and updated.endswith("after\n")


def test_a_local_demo_output_agrees_with_the_stored_tables():
    paper = Path(__file__).resolve().parents[1] / "hccrad-demo" / "output" / "report" / "paper"
    if not paper.is_dir():
        pytest.skip("no local demo output (hccrad-demo/output from the README's command) to compare with")
    for stored in sorted((DOCS / "demo").glob("*.csv")):
        assert read_table(paper / stored.name).equals(read_table(stored)), stored.name
