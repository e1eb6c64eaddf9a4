"""Report: one self-contained HTML file with every table and figure of the study."""

from hccrad.report.html import build_report

__all__ = ["build_report"]
