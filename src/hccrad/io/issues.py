"""One problem found in a study manifest, with its row, patient, field and severity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in the manifest; ``row`` is the spreadsheet row (header = row 1)."""

    row: int | None
    patient_id: str | None
    field: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "study"
        who = f" (patient {self.patient_id})" if self.patient_id else ""
        return f"{self.severity}: {where}{who}, field '{self.field}': {self.message}"
