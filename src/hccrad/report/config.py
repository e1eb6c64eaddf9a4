"""The ``report:`` section of the study YAML: how the paper folder numbers its items and the PDF's page size."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

#: The paper's numbering: its supplement holds Supplementary Tables 1-4 and Supplementary Figures 1-4.
PAPER_ITEM_FORMAT = "Supplementary {kind} {number}"


class ReportConfig(BaseModel):
    """``report:`` settings (unknown keys refused); defaults as the paper's."""

    model_config = ConfigDict(extra="forbid")

    #: How an item the paper numbers is labelled: ``{kind}`` is Table or Figure, ``{number}`` its number
    #: (``"{kind} S{number}"`` gives "Table S2" for a journal that numbers so).
    item_format: str = PAPER_ITEM_FORMAT
    #: report.pdf's page size.
    paper_size: Literal["A4", "Letter"] = "A4"

    @field_validator("item_format")
    @classmethod
    def _has_fields(cls, value: str) -> str:
        if "{kind}" not in value or "{number}" not in value:
            raise ValueError("item_format must hold {kind} and {number}, as 'Supplementary {kind} {number}'")
        return value

    def label(self, kind: str, number: int) -> str:
        """``Supplementary Table 2`` (by :attr:`item_format`)."""
        return self.item_format.format(kind=kind, number=number)


def report_config(section: dict | None) -> ReportConfig:
    """The study's ``report:`` section, validated."""
    return ReportConfig.model_validate(section or {})
