"""Report: one self-contained HTML file with every table and figure of the study.

``build_report`` is imported on first use, so that reading the report's settings (``hccrad.report.config``, which
every stage command validates) does not import matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hccrad.report.html import build_report

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from hccrad.report.html import build_report

        return build_report
    raise AttributeError(f"module 'hccrad.report' has no attribute {name!r}")
