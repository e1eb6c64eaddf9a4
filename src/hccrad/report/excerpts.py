"""The demo's numbers quoted in docs/, rendered from the demo's own tables, never typed by hand.

A quoted table in a docs page sits between ``<!-- demo-table: NAME rows=K -->`` and ``<!-- /demo-table -->``; its
text is :func:`render_excerpt` of ``docs/demo/NAME.csv``, a copy of the paper folder's ``NAME.csv`` from a run of
``hccrad demo``. ``python -m hccrad.report.excerpts DEMO_OUTPUT_FOLDER [DOCS_FOLDER]`` copies the tables and
rewrites every excerpt; ``tests/test_docs_numbers.py`` checks that each excerpt equals its table.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pandas as pd

MARKER = re.compile(r"<!-- demo-table: (?P<name>[\w-]+) rows=(?P<rows>\d+) -->\n(?P<body>.*?)<!-- /demo-table -->",
                    re.DOTALL)


def read_table(path: Path) -> pd.DataFrame:
    """A paper-folder CSV as the text it holds (every cell a string, empty cells empty)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def render_excerpt(name: str, table: pd.DataFrame, rows: int) -> str:
    """The docs text of an excerpt: a line saying which rows are shown, then the first ``rows`` rows as a
    Markdown table."""
    shown = table.head(rows)
    lines = [f"`{name}` (the first {len(shown)} of its {len(table)} rows):", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n\n"


def excerpts(text: str) -> list[tuple[str, int, str]]:
    """Every excerpt of a docs page: (table name, rows, the text between the markers)."""
    return [(match["name"], int(match["rows"]), match["body"]) for match in MARKER.finditer(text)]


def rewrite(text: str, tables_dir: Path) -> str:
    """``text`` with every excerpt rendered again from ``tables_dir/NAME.csv``."""
    def render(match: re.Match) -> str:
        table = read_table(tables_dir / f"{match['name']}.csv")
        return (f"<!-- demo-table: {match['name']} rows={match['rows']} -->\n"
                f"{render_excerpt(match['name'], table, int(match['rows']))}<!-- /demo-table -->")

    return MARKER.sub(render, text)


def update_docs(demo_output: Path, docs_dir: Path) -> list[Path]:
    """Copy the paper tables that docs quote from ``demo_output/report/paper`` into ``docs_dir/demo`` and
    rewrite every excerpt; returns the pages changed."""
    paper = Path(demo_output) / "report" / "paper"
    tables_dir = Path(docs_dir) / "demo"
    tables_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for page in sorted(Path(docs_dir).glob("*.md")):
        text = page.read_text()
        for name, _, _ in excerpts(text):
            shutil.copyfile(paper / f"{name}.csv", tables_dir / f"{name}.csv")
        updated = rewrite(text, tables_dir)
        if updated != text:
            page.write_text(updated)
            changed.append(page)
    return changed


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    output = Path(sys.argv[1])
    docs = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[3] / "docs"
    for page in update_docs(output, docs):
        print(f"updated {page}")
