"""A PDF of the whole report: printed by a headless Chromium when one is installed (the same engine the report's
tests read it with), else by WeasyPrint when it is installed (``pip install weasyprint``), else not made, with a
note saying how to get one."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

#: The browsers tried, in order.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    return next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)


def print_pdf(html_path: Path, pdf_path: Path, timeout_s: float = 120.0) -> str:
    """Print ``html_path`` to ``pdf_path`` (written atomically); returns what printed it, or why nothing did. A
    PDF of an earlier report is removed first, so that a failed print never leaves it beside the new report."""
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    pdf_path.unlink(missing_ok=True)
    browser = chromium_path()
    if browser is not None:
        with tempfile.TemporaryDirectory(prefix="hccrad-pdf-") as scratch:
            target = Path(scratch) / "report.pdf"
            command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                       f"--user-data-dir={scratch}/profile", "--no-pdf-header-footer", f"--print-to-pdf={target}",
                       html_path.as_uri()]
            try:
                subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"not made: {Path(browser).name} failed ({type(exc).__name__})"
            if target.is_file() and target.read_bytes().startswith(b"%PDF"):
                shutil.move(str(target), str(pdf_path.with_suffix(".pdf.tmp")))
                pdf_path.with_suffix(".pdf.tmp").replace(pdf_path)
                return f"printed by {Path(browser).name}"
            return f"not made: {Path(browser).name} printed nothing"
    try:
        import weasyprint
    except ImportError:
        return ("not made: no Chromium and no WeasyPrint; install one (apt-get install chromium, or pip install "
                "weasyprint) and run `hccrad run` again")
    try:
        weasyprint.HTML(filename=str(html_path)).write_pdf(str(pdf_path.with_suffix(".pdf.tmp")))
    except Exception as exc:  # the report stands without its PDF; the note says why
        pdf_path.with_suffix(".pdf.tmp").unlink(missing_ok=True)
        return f"not made: WeasyPrint failed ({type(exc).__name__}: {exc})"
    pdf_path.with_suffix(".pdf.tmp").replace(pdf_path)
    return "printed by WeasyPrint"
