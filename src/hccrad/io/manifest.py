"""Study manifest: the clinical table read through the YAML's column map, validated row by row.

Every problem is collected (never the first one only), each with the table row, the patient, the field
and what was expected. A row with an error is kept out of the analysis but always listed, so nothing is
dropped silently; a missing clinical factor is a warning (later stages impute it or say why they cannot).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from hccrad.io.config import MONTHS_PER_UNIT, OPTIONAL_COLUMNS, STRUCTURES, MaskConvention, StudyConfig, load_config
from hccrad.io.ids import patient_id_problem

Severity = Literal["error", "warning"]
BCLC_STAGES = ("0", "A", "B", "C", "D")
CHILD_PUGH_GRADES = ("A", "B", "C")


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


@dataclass
class PatientRecord:
    """One valid patient of the study, with canonical fields and units."""

    patient_id: str
    center: str
    row: int
    ct: Path | None = None
    mask: Path | None = None
    portal_vein_diameter_mm: float | None = None
    afp: float | None = None
    child_pugh: str | None = None
    child_pugh_score: int | None = None
    bclc: str | None = None
    treatment: str | None = None
    pfs_months: float = math.nan
    pfs_event: int = 0
    dataset: str = "training"
    #: Per-structure mask files (the ``mask_liver``, ``mask_tumor``, ``mask_portal_vein`` columns).
    mask_structures: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    #: What the mask's values mean (the manifest's ``masks:``, for this row's center or named convention).
    mask_convention: MaskConvention = field(default_factory=MaskConvention)

    @property
    def has_mask(self) -> bool:
        """Whether the manifest (or the segmentation stage) gave this patient a mask of any form."""
        return self.mask is not None or bool(self.mask_structures)

    @property
    def mask_source(self):
        """The patient's :class:`hccrad.io.mask_sources.MaskSource`, or None without a mask."""
        from hccrad.io.mask_sources import MaskSource

        if not self.has_mask:
            return None
        return MaskSource(self.mask, dict(self.mask_structures), self.mask_convention)


@dataclass
class Study:
    """A loaded study: its configuration, the valid patients and every issue found."""

    config: StudyConfig
    patients: list[PatientRecord]
    issues: list[ValidationIssue] = field(default_factory=list)
    n_rows: int = 0

    @property
    def errors(self) -> list[ValidationIssue]:
        """The issues that keep a row (or the study) out."""
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[ValidationIssue]:
        """The issues that keep the row in."""
        return [issue for issue in self.issues if issue.severity == "warning"]

    @property
    def ok(self) -> bool:
        """Whether the study has no error."""
        return not self.errors

    def patient(self, patient_id: str) -> PatientRecord:
        """The valid patient with this id; KeyError naming the study otherwise."""
        for record in self.patients:
            if record.patient_id == patient_id:
                return record
        raise KeyError(f"no valid patient {patient_id!r} in study {self.config.name!r}")

    def table(self) -> pd.DataFrame:
        """The valid patients as a DataFrame indexed by ``patient_id`` (paths as strings)."""
        rows = []
        columns = [name for name in PatientRecord.__dataclass_fields__ if name not in _NOT_TABLED]
        for record in self.patients:
            row = {name: getattr(record, name) for name in columns}
            row["ct"] = str(record.ct) if record.ct else None
            row["mask"] = str(record.mask) if record.mask else None
            for structure in STRUCTURES:
                paths = record.mask_structures.get(structure)
                row[f"mask_{structure}"] = ";".join(map(str, paths)) if paths else None
            rows.append(row)
        columns += [f"mask_{structure}" for structure in STRUCTURES]
        return pd.DataFrame(rows, columns=columns).set_index("patient_id")

    def issues_table(self) -> pd.DataFrame:
        """Every issue as a table (row, patient_id, field, message, severity)."""
        return pd.DataFrame(
            [asdict(issue) for issue in self.issues],
            columns=["row", "patient_id", "field", "message", "severity"],
        )


#: PatientRecord fields that are not columns of :meth:`Study.table` (the per-structure files are, as text).
_NOT_TABLED = ("mask_structures", "mask_convention")


class ClinicalTableError(ValueError):
    """A clinical table that cannot be read as one column per field (its message names the file and columns)."""


def read_clinical_table(path: Path, sheet: str | int | None = None) -> pd.DataFrame:
    """Read a CSV/TSV or XLSX clinical table with every cell as text (types are checked per field).

    A UTF-8 byte-order mark is removed and header names are trimmed. Two columns with the same name (after
    trimming) are a :class:`ClinicalTableError` naming both, since either could hold the field: pandas would
    otherwise use the first without a word.
    """
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm", ".xls"):
        sheets = pd.ExcelFile(path).sheet_names
        if isinstance(sheet, str) and sheet not in sheets:
            close = [name for name in sheets if name.casefold() == sheet.casefold()] or difflib.get_close_matches(
                sheet, sheets, n=1, cutoff=0.5)
            hint = f"; did you mean `sheet: {close[0]}`?" if close else ""
            raise ClinicalTableError(f"clinical table {path} has no sheet {sheet!r}; its sheets are "
                                     f"{', '.join(map(repr, sheets))}{hint}")
        if isinstance(sheet, int) and not 0 <= sheet < len(sheets):
            raise ClinicalTableError(f"clinical table {path} has no sheet number {sheet} (counted from 0); its "
                                     f"{len(sheets)} sheets are {', '.join(map(repr, sheets))}")
        raw = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=object, header=None)
    elif suffix in (".csv", ".tsv", ".txt"):
        raw = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False, header=None,
                          encoding="utf-8-sig")
    else:
        raise ValueError(f"clinical table {path} must be .csv, .tsv or .xlsx, not {suffix!r}")
    if raw.empty:
        raise ClinicalTableError(f"clinical table {path} is empty: expected a header row and one row per patient")
    header = [_header_name(value, position) for position, value in enumerate(raw.iloc[0].tolist(), start=1)]
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(header, start=1):
        positions.setdefault(name, []).append(position)
    duplicated = {name: where for name, where in positions.items() if len(where) > 1}
    if duplicated:
        described = "; ".join(f"{name!r} is the name of columns {', '.join(map(str, where))}"
                              for name, where in duplicated.items())
        raise ClinicalTableError(f"clinical table {path}: {described}; rename or delete all but one of them "
                                 "(a duplicated header makes it ambiguous which column holds the field)")
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = header
    return frame


def _header_name(value: Any, position: int) -> str:
    """A header cell as a column name: trimmed, without a byte-order mark; an empty cell is ``unnamed_<k>``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"unnamed_{position}"
    text = str(value).replace("\ufeff", "").strip()
    return text or f"unnamed_{position}"


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "na", "nan", "n/a", "none", "null", "-")


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class CensoredValue(ValueError):
    """A lab value given as a bound (``<20``, ``>1000``) rather than a number."""

    def __init__(self, text: str, limit: float):
        super().__init__(text)
        self.limit = limit


_GROUPED = re.compile(r"^\d{1,3}(?:[,. \u00a0\u202f]\d{3})+$")
_CENSORED = re.compile(r"^(<=|>=|<|>|\u2264|\u2265)\s*(.+)$")
#: Follow-up longer than this (months) is implausible and refused; longer than the warning limit is flagged.
MAX_PFS_MONTHS = 1200.0
#: The largest plausible serum AFP (ng/mL); HCC values above 1e6 are rare, above 1e7 a unit or typing error.
MAX_AFP_NG_ML = 1e7
WARN_PFS_MONTHS = 240.0


#: Words Python's float() reads as numbers that no measurement is.
_NOT_NUMBERS = ("nan", "inf", "infinity")


def _refuse_unusual_number_text(text: str) -> None:
    """A ValueError for text that Python's ``float()`` would read but that is no typed measurement: NaN or
    infinity, digits other than ASCII 0-9 (full-width ``５２０``, Arabic-Indic), or ``_`` between digits."""
    if text.lstrip("+-").strip().lower() in _NOT_NUMBERS:
        raise ValueError(f"{text!r} is not a number")
    if not text.isascii():
        raise ValueError(f"{text!r} holds characters other than the digits 0-9, a sign and separators; type the "
                         "number with the digits 0-9")
    if "_" in text:
        raise ValueError(f"{text!r}: '_' is not a digit separator; write {text.replace('_', '')!r}")


def parse_number(value: Any) -> float:
    """A finite number from a table cell (see :func:`_parse_number` for the rules); a text whose number is too
    large for a float (a hundred thousand digits) is refused, not read as infinity."""
    number = _parse_number(value)
    if not math.isfinite(number):
        raise ValueError(f"{_shown(str(value).strip())} is too large to be a measurement")
    return number


def _shown(text: str, limit: int = 24) -> str:
    """A typed text for a message, quoted; a long one cut, with its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _parse_number(value: Any) -> float:
    """A number from a table cell, by a stated rule for separators (docs/manifest.md, "Numbers").

    - A cell the spreadsheet already holds as a number is taken as it is.
    - Spaces between digit groups are thousands separators: ``1 234`` is 1234.
    - With both ``.`` and ``,``, the last one is the decimal mark and the other must group thousands:
      ``1,234.5`` and ``1.234,5`` are both 1234.5.
    - A separator that appears more than once groups thousands: ``1,234,567`` and ``1.234.567``.
    - A single ``.`` is a decimal point: ``1.234`` is 1.234.
    - A single ``,`` is a decimal comma (``12,5`` is 12.5), except when exactly three digits follow it and one
      to three digits (not a lone 0) precede it: ``1,234`` could be 1234 or 1.234 and is refused as ambiguous.
    - A bound such as ``<20`` raises :class:`CensoredValue`.
    - NaN, infinity, a value too large for a float, digits other than ASCII 0-9 and ``_`` are refused, though
      Python's ``float()`` reads them.

    Raises
    ------
    ValueError
        With a message saying why, when the text is not a number by these rules.
    """
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    _refuse_unusual_number_text(text)
    censored = _CENSORED.match(text)
    if censored:
        raise CensoredValue(text, _parse_number(censored.group(2)))
    if not text:
        raise ValueError("empty text is not a number")
    sign = ""
    if text[0] in "+-":
        sign, text = text[0], text[1:].strip()
    digits_only = re.sub(r"[.,\s\u00a0\u202f]", "", text)
    if not digits_only.isdigit():
        number = float(sign + text)  # scientific notation, or a ValueError naming the text
        if not math.isfinite(number):
            raise ValueError(f"{_shown(text)} is too large to be a measurement")
        return number
    spaces = re.findall(r"[\s\u00a0\u202f]", text)
    commas, dots = text.count(","), text.count(".")
    if spaces:
        whole, fraction = (re.split(r"[.,]", text) if commas + dots == 1 else (text, ""))
        if commas + dots > 1 or not _GROUPED.match(whole):
            raise ValueError(f"{text!r}: spaces must group thousands in threes")
        return float(sign + re.sub(r"[\s\u00a0\u202f]", "", whole) + ("." + fraction if fraction else ""))
    if commas and dots:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        grouping = "." if decimal == "," else ","
        whole, fraction = text.rsplit(decimal, 1)
        if text.count(decimal) > 1 or not _GROUPED.match(whole) or grouping not in whole:
            raise ValueError(f"{text!r}: mixes '.' and ',' without grouping thousands in threes")
        return float(sign + whole.replace(grouping, "") + "." + fraction)
    separator = "," if commas else "." if dots else None
    count = commas or dots
    if separator is None:
        return float(sign + text)
    if count > 1:
        if not _GROUPED.match(text):
            raise ValueError(f"{text!r}: repeated {separator!r} must group thousands in threes")
        return float(sign + text.replace(separator, ""))
    if separator == ".":
        return float(sign + text)
    whole, fraction = text.split(",")
    if len(fraction) == 3 and 1 <= len(whole) <= 3 and whole != "0":
        raise ValueError(f"{text!r} is ambiguous: {whole}{fraction} with a thousands separator, or "
                         f"{whole}.{fraction} with a decimal comma; write it without the comma or with a point")
    return float(sign + whole + "." + fraction)


def normalize_bclc(value: str) -> str | None:
    """Map spellings such as ``Stage-A``, ``bclc b`` or ``0`` onto the stages 0/A/B/C/D."""
    token = re.sub(r"(?i)bclc|stage|[\s\-_:]", "", value).upper()
    if token in ("O", "ZERO"):
        token = "0"
    return token if token in BCLC_STAGES else None


def normalize_child_pugh(value: Any) -> tuple[str | None, int | None]:
    """Return (grade, score) from a grade letter (``A``, ``Child-Pugh B``) or a score 5-15."""
    text = _as_text(value)
    try:
        number = float(text)
    except ValueError:
        token = re.sub(r"(?i)child|pugh|grade|class|[\s\-_:]", "", text).upper()
        return (token, None) if token in CHILD_PUGH_GRADES else (None, None)
    if not number.is_integer() or not 5 <= number <= 15:
        return None, None
    score = int(number)
    grade = "A" if score <= 6 else "B" if score <= 9 else "C"
    return grade, score


def _typing_problem(value: Any) -> str | None:
    """Why typed text is no number (NaN, infinity, other digits than 0-9, ``_``), or None. A typed "NaN" is
    refused rather than read as blank: it would be imputed and scored like a typical value without a word."""
    if not isinstance(value, str):
        return None
    try:
        _refuse_unusual_number_text(value.strip())
    except ValueError as exc:
        return str(exc)
    return None


def parse_clinical_inputs(values: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """One new patient's clinical factors read by the manifest's rules, for ``hccrad predict``.

    Parameters
    ----------
    values
        Raw ``afp`` (ng/mL), ``child_pugh`` (grade or score 5-15), ``bclc`` and ``treatment``; blanks are missing.

    Returns
    -------
    (clean, errors, unreadable)
        ``clean`` has canonical values (None where missing or not readable). ``errors`` are refused whatever the
        options (a negative AFP, a bound such as ``<20``); ``unreadable`` are values that could not be read,
        which ``--allow-impute`` turns into missing values.
    """
    clean: dict[str, Any] = {name: None for name in ("afp", "child_pugh", "child_pugh_score", "bclc", "treatment")}
    errors: list[str] = []
    unreadable: list[str] = []
    afp = values.get("afp")
    typed = _typing_problem(afp)
    if typed:  # a typo, not an unknown value: refused whatever the options, never imputed
        errors.append(f"afp {typed}; give the value in ng/mL with the digits 0-9, or leave it empty if it is "
                      "unknown")
    elif not _blank(afp):
        try:
            number = parse_number(afp)
        except CensoredValue:
            errors.append(f"afp {_shown(_as_text(afp))} is a bound, not a value; give a number in ng/mL")
        except ValueError as exc:
            unreadable.append(f"afp {_shown(_as_text(afp))} is not a number in ng/mL ({exc})")
        else:
            if not math.isfinite(number) or number < 0:
                errors.append(f"afp {number:g} is not a concentration; expected a number >= 0 (ng/mL)")
            elif number > MAX_AFP_NG_ML:
                errors.append(f"afp {number:g} ng/mL is above the plausible maximum of {MAX_AFP_NG_ML:g} ng/mL; "
                              "check the value and its unit")
            else:
                clean["afp"] = number + 0.0  # -0 is 0
    child_pugh = values.get("child_pugh")
    if not _blank(child_pugh):
        grade, score = normalize_child_pugh(child_pugh)
        if grade is None:
            unreadable.append(f"child_pugh {_as_text(child_pugh)!r} is not a grade A, B, C or a score 5-15")
        clean["child_pugh"], clean["child_pugh_score"] = grade, score
    bclc = values.get("bclc")
    if not _blank(bclc):
        stage = normalize_bclc(_as_text(bclc))
        if stage is None:
            unreadable.append(f"bclc {_as_text(bclc)!r} is not one of 0, A, B, C, D")
        clean["bclc"] = stage
    treatment = values.get("treatment")
    if not _blank(treatment):
        clean["treatment"] = _as_text(treatment)
    return clean, errors, unreadable


class _RowChecker:
    """Validates one table row into a PatientRecord, collecting issues instead of stopping."""

    def __init__(self, config: StudyConfig, row_number: int, raw: dict[str, Any]):
        self.config = config
        self.row = row_number
        self.raw = raw
        self.issues: list[ValidationIssue] = []
        self.patient_id: str | None = None

    def value(self, canonical: str) -> Any:
        """The raw cell of a canonical field in this row (after ``value_maps``), None when blank or unmapped."""
        column = getattr(self.config.columns, canonical)
        if column is None:
            return None
        value = self.raw.get(column)
        if _blank(value):
            return None
        mapping = self.config.value_maps.get(canonical)
        if mapping is not None:
            key = _as_text(value)
            value = mapping.get(key, value)
        return value

    def add(self, field_name: str, message: str, severity: Severity = "error") -> None:
        """Record an issue of this row's ``field_name``."""
        self.issues.append(ValidationIssue(self.row, self.patient_id, field_name, message, severity))

    def number(self, canonical: str, *, required: bool, minimum: float | None = None,
               maximum: float | None = None) -> float | None:
        """A numeric field read by :func:`parse_number`; None (with an issue) when missing, unreadable, below
        ``minimum`` or above the plausible ``maximum``."""
        value = self.value(canonical)
        if value is None:
            if required:
                self.add(canonical, "missing; expected a number")
            else:
                self.add(canonical, "missing value", "warning")
            return None
        try:
            number = parse_number(value)
        except CensoredValue as censored:
            if self.config.censored_values == "refuse":
                self.add(canonical, f"{censored} is a bound, not a value; give a number, or set "
                                    "censored_values: limit in the manifest to use the bound itself")
                return None
            self.add(canonical, f"{censored} is a bound; its limit {censored.limit:g} is used", "warning")
            number = censored.limit
        except ValueError as exc:
            reason = str(exc)
            if reason.startswith("could not convert"):
                reason = f"{_as_text(value)!r} is not a number"
            self.add(canonical, reason)
            return None
        if not math.isfinite(number):
            self.add(canonical, f"{number} is not a finite number")
            return None
        if minimum is not None and number < minimum:
            self.add(canonical, f"{number:g} is negative; expected a value >= {minimum:g}")
            return None
        if maximum is not None and number > maximum:
            self.add(canonical, f"{number:g} is above the plausible maximum of {maximum:g}; check the value and its "
                                "unit")
            return None
        return number + 0.0  # -0 is 0

    def path(self, canonical: str, *, required: bool) -> Path | None:
        """An image path field, resolved from the manifest's folder; None (with an issue) when missing or absent."""
        value = self.value(canonical)
        if value is None:
            if required:
                self.add(canonical, "missing; expected the path of an image file or DICOM folder")
            return None
        path = self.config.resolve(_as_text(value))
        if not path.exists():
            self.add(canonical, f"file not found: {path}")
            return None
        if path.is_dir() and not any(child.is_file() for child in path.iterdir()):
            self.add(canonical, f"DICOM folder is empty: {path}")
            return None
        return path

    def check(self) -> PatientRecord | None:
        """Validate the row into a :class:`PatientRecord`, or None when it has an error (see ``issues``)."""
        config = self.config
        patient_value = self.value("patient_id")
        if patient_value is None:
            self.add("patient_id", "missing patient identifier")
        else:
            text = str(patient_value) if isinstance(patient_value, str) else _as_text(patient_value)
            problem = patient_id_problem(text)
            if problem is None:
                self.patient_id = text
            else:
                self.add("patient_id", f"{text!r} {problem}; an id becomes a file name in the output folder")

        center_value = self.value("center")
        center = _as_text(center_value) if center_value is not None else config.default_center
        if center is None:
            self.add("center", "missing; give a center or set default_center in the manifest")

        ct = self.path("ct", required=config.require_images)
        mask = self.path("mask", required=False)
        structures = self._mask_structures()
        convention = self._mask_convention(center)
        has_portal = self.value("portal_vein_diameter_mm") is not None
        portal_mm = self.number("portal_vein_diameter_mm", required=False, minimum=0) if has_portal else None

        afp = self.number("afp", required=False, minimum=0, maximum=MAX_AFP_NG_ML)
        grade, score = self._child_pugh()
        bclc = self._bclc()
        treatment = self._treatment()

        time_raw = self.number("pfs_months", required=True, minimum=0)
        pfs_months = time_raw * MONTHS_PER_UNIT[config.time_unit] if time_raw is not None else None
        if pfs_months is not None and pfs_months > MAX_PFS_MONTHS:
            self.add("pfs_months", f"{time_raw:g} {config.time_unit} is {pfs_months:.0f} months, above the plausible "
                                   f"limit of {MAX_PFS_MONTHS:.0f}; check the value and time_unit")
            pfs_months = None
        elif pfs_months is not None and pfs_months > WARN_PFS_MONTHS:
            self.add("pfs_months", f"{pfs_months:.0f} months of follow-up is unusually long (over "
                                   f"{WARN_PFS_MONTHS:.0f}); check the value and time_unit", "warning")
        event = self._event()

        if any(issue.severity == "error" for issue in self.issues):
            return None
        assert self.patient_id is not None and center is not None and pfs_months is not None
        return PatientRecord(
            patient_id=self.patient_id,
            center=center,
            row=self.row,
            ct=ct,
            mask=mask,
            mask_structures=structures,
            mask_convention=convention,
            portal_vein_diameter_mm=portal_mm,
            afp=afp,
            child_pugh=grade,
            child_pugh_score=score,
            bclc=bclc,
            treatment=treatment,
            pfs_months=pfs_months,
            pfs_event=int(event),
        )

    def _mask_structures(self) -> dict[str, tuple[Path, ...]]:
        """The per-structure mask files of the row (``mask_tumor`` may list several, separated by ``;``)."""
        structures = {}
        for structure in STRUCTURES:
            canonical = f"mask_{structure}"
            value = self.value(canonical)
            if value is None:
                continue
            paths = []
            for text in (part.strip() for part in _as_text(value).split(";")):
                if not text:
                    continue
                path = self.config.resolve(text)
                if not path.exists():
                    self.add(canonical, f"file not found: {path}")
                elif path.is_dir() and not any(child.is_file() for child in path.iterdir()):
                    self.add(canonical, f"folder is empty: {path}")
                else:
                    paths.append(path)
            if len(paths) > 1 and structure != "tumor":
                self.add(canonical, f"{len(paths)} files given; only mask_tumor may list several (separated by ;)")
            elif paths:
                structures[structure] = tuple(paths)
        return structures

    def _mask_convention(self, center: str | None) -> MaskConvention:
        """The row's mask convention: its ``mask_convention`` column, else its center's, else the study's."""
        masks = self.config.masks
        value = self.value("mask_convention")
        name = _as_text(value) if value is not None else None
        if name is not None and name not in masks.conventions:
            known = ", ".join(sorted(masks.conventions)) or "none are defined"
            self.add("mask_convention", f"unknown convention {name!r}; define it under masks: conventions: in the "
                                        f"manifest (known: {known})")
            name = None
        return masks.convention_for(center, name)

    def _child_pugh(self) -> tuple[str | None, int | None]:
        value = self.value("child_pugh")
        if value is None:
            if self.config.columns.child_pugh is not None:
                self.add("child_pugh", "missing value", "warning")
            return None, None
        grade, score = normalize_child_pugh(value)
        if grade is None:
            self.add("child_pugh", f"unknown category {_as_text(value)!r}; expected A, B, C or a score 5-15")
        return grade, score

    def _bclc(self) -> str | None:
        value = self.value("bclc")
        if value is None:
            if self.config.columns.bclc is not None:
                self.add("bclc", "missing value", "warning")
            return None
        stage = normalize_bclc(_as_text(value))
        if stage is None:
            self.add("bclc", f"unknown category {_as_text(value)!r}; expected one of 0, A, B, C, D")
        return stage

    def _treatment(self) -> str | None:
        value = self.value("treatment")
        if value is None:
            if self.config.columns.treatment is not None:
                self.add("treatment", "missing value", "warning")
            return None
        text = _as_text(value)
        allowed = self.config.treatment_categories
        if allowed is not None and text not in allowed:
            self.add("treatment", f"unknown category {text!r}; expected one of {allowed}")
            return None
        return text

    def _event(self) -> int | None:
        value = self.value("pfs_event")
        if value is None:
            self.add("pfs_event", "missing; expected 0 (censored) or 1 (progression)")
            return None
        try:
            number = parse_number(value)
        except ValueError:
            number = math.nan
        if number not in (0.0, 1.0):
            self.add("pfs_event", f"{_as_text(value)!r} is not 0 or 1")
            return None
        event = int(number)
        return 1 - event if self.config.event_coding == "censored=1" else event


def closest_columns(name: str, columns: list[str], n: int = 3) -> list[str]:
    """The table's column names closest to ``name`` (same name in another case first, then difflib's ratio)."""
    same_case = [column for column in columns if column.casefold() == name.casefold()]
    folded = {column.casefold(): column for column in columns}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=n, cutoff=0.5)
    return list(dict.fromkeys(same_case + [folded[c] for c in close]))[:n]


def _check_columns(config: StudyConfig, frame: pd.DataFrame) -> list[ValidationIssue]:
    """A column that the manifest names under ``columns:`` but the table lacks is an error, with the closest
    column names; a default column name the table lacks is an error for the fields every study needs and a
    warning for the others (the field is then missing for every patient)."""
    issues = []
    named = config.columns.model_fields_set
    available = [str(column) for column in frame.columns]
    for canonical, column in config.columns.model_dump().items():
        if canonical in OPTIONAL_COLUMNS and canonical not in named:
            continue  # optional columns (per-structure masks) may be absent unless the manifest names them
        if column is not None and column not in frame.columns:
            required = canonical in ("patient_id", "pfs_months", "pfs_event") or (
                canonical == "ct" and config.require_images)
            severity: Severity = "error" if required or canonical in named else "warning"
            close = closest_columns(column, available)
            remedy = (f"; did you mean {' or '.join(repr(c) for c in close)}? set `columns: {{{canonical}: NAME}}`"
                      if close else f"; its columns are {', '.join(map(repr, available[:30]))}")
            if severity == "warning":
                remedy += f" (or `{canonical}: null` if the table has no such column)"
            issues.append(ValidationIssue(
                None, None, canonical,
                f"column {column!r} (for {canonical}) is not in the clinical table {config.clinical_table_path.name}"
                f"{remedy}", severity))
    return issues


def center_key(name: str) -> str:
    """How center names are compared: spaces collapsed and case folded (``'Center  d'`` and ``'center D'``)."""
    return " ".join(name.split()).casefold()


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:8]))
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}" + (f" and {len(rows) - 8} more" if len(rows) > 8
                                                                    else "")


def center_spelling_issues(patients: list[PatientRecord]) -> list[ValidationIssue]:
    """An error for each row whose center is another spelling of a center (:func:`center_key`): ``d`` beside
    ``D`` would be a separate center, and could put a validation patient in the training set. The most frequent
    spelling keeps its rows; the others are left out, with the remedy (one spelling, or ``value_maps``)."""
    spellings: dict[str, dict[str, list[PatientRecord]]] = {}
    for record in patients:
        spellings.setdefault(center_key(record.center), {}).setdefault(record.center, []).append(record)
    issues = []
    for variants in spellings.values():
        if len(variants) < 2:
            continue
        ranked = sorted(variants, key=lambda name: (-len(variants[name]), name))
        kept = ranked[0]
        listing = "; ".join(f"{name!r} on {_rows_text(sorted(r.row for r in variants[name]))}" for name in ranked)
        for name in ranked[1:]:
            for record in variants[name]:
                issues.append(ValidationIssue(
                    record.row, record.patient_id, "center",
                    f"center {name!r} is another spelling of {kept!r} (centers are compared without case and "
                    f"extra spaces: {listing}); the row is left out: write {kept!r}, or map it in the manifest "
                    f"with value_maps: {{center: {{{name!r}: {kept!r}}}}}"))
    return issues


def _split_center_issues(named: list[str], centers: set[str], field: str) -> list[ValidationIssue]:
    """Issues for centers named in the split: one with no patient, or one that matches only without case."""
    by_key = {center_key(center): center for center in centers}
    issues = []
    for name in named:
        if name in centers:
            continue
        match = by_key.get(center_key(name))
        hint = (f"; the table spells it {match!r}: write that in the manifest" if match is not None
                else f"; the table's centers are {', '.join(sorted(centers))}")
        issues.append(ValidationIssue(None, None, "split", f"{field} center {name!r} has no patient{hint}"))
    return issues


def assign_split(patients: list[PatientRecord], config: StudyConfig) -> list[ValidationIssue]:
    """Set each patient's ``dataset`` to training or validation, by center or seeded stratified draw.

    By centers, a center not named in ``validation_centers`` is a training center, unless ``training_centers``
    is given too: then a center in neither list is an error for each of its rows (left out), since the split
    does not say where it belongs.
    """
    split = config.split
    issues: list[ValidationIssue] = []
    if split.validation_centers:
        centers = {record.center for record in patients}
        issues += _split_center_issues(split.validation_centers, centers, "validation")
        if split.training_centers is not None:
            issues += _split_center_issues(split.training_centers, centers, "training")
            known = set(split.training_centers) | set(split.validation_centers)
            for record in patients:
                if record.center not in known:
                    issues.append(ValidationIssue(
                        record.row, record.patient_id, "center",
                        f"center {record.center!r} is in neither split.training_centers nor "
                        "split.validation_centers; add it to one of them (the row is left out)"))
        for record in patients:
            record.dataset = "validation" if record.center in split.validation_centers else "training"
        return issues
    rng = np.random.default_rng(split.seed)
    strata: dict[tuple[str, int], list[PatientRecord]] = {}
    for record in sorted(patients, key=lambda r: r.patient_id):
        strata.setdefault((record.center, record.pfs_event), []).append(record)
    keys = sorted(strata)
    # Largest-remainder allocation: each stratum gets its share, the total is round(fraction * n).
    quotas = np.array([split.validation_fraction * len(strata[key]) for key in keys])
    counts = np.floor(quotas).astype(int)
    total = int(np.floor(split.validation_fraction * len(patients) + 0.5))
    remainders = quotas - counts + rng.uniform(0, 1e-6, size=len(keys))
    for index in np.argsort(-remainders)[: max(0, total - counts.sum())]:
        counts[index] += 1
    for key, n_validation in zip(keys, counts, strict=True):
        members = strata[key]
        order = rng.permutation(len(members))
        for rank, index in enumerate(order):
            members[index].dataset = "validation" if rank < n_validation else "training"
    return issues


def use_predicted_masks(study: Study) -> list[str]:
    """Give each patient without a mask in the manifest the mask predicted for it earlier, when there is one
    (``<output_dir>/segmentation/masks/<id>.nii.gz``); returns the ids that got one."""
    layout = study.config.layout
    used = []
    for record in study.patients:
        if record.ct is not None and not record.has_mask:
            predicted = layout.predicted_mask(record.patient_id)
            if predicted.is_file():
                record.mask = predicted
                record.mask_convention = MaskConvention()  # hccrad's own labels, whatever the study's masks are
                used.append(record.patient_id)
    return used


def load_study(manifest: Path | str) -> Study:
    """Load and validate a study manifest and its clinical table.

    Parameters
    ----------
    manifest
        Path of the study YAML.

    Returns
    -------
    Study
        The valid patients (with their training/validation assignment) and every issue found. Rows with
        errors are not among ``patients`` but each has at least one issue naming its row.
    """
    config = load_config(manifest)
    table_path = config.clinical_table_path
    if not table_path.is_file():
        issue = ValidationIssue(None, None, "clinical_table", f"file not found: {table_path}")
        return Study(config, [], [issue])
    try:
        frame = read_clinical_table(table_path, config.sheet)
    except ClinicalTableError as exc:
        return Study(config, [], [ValidationIssue(None, None, "clinical_table", str(exc))])
    issues = _check_columns(config, frame)
    if any(issue.severity == "error" for issue in issues):
        return Study(config, [], issues, n_rows=len(frame))

    patients: list[PatientRecord] = []
    rows_by_key: dict[str, list[tuple[int, str]]] = {}
    for offset, raw in enumerate(frame.to_dict(orient="records")):
        checker = _RowChecker(config, offset + 2, raw)
        record = checker.check()
        issues.extend(checker.issues)
        if checker.patient_id is not None:
            # ids that differ only in case would share a file on Windows and macOS file systems
            rows_by_key.setdefault(checker.patient_id.casefold(), []).append((checker.row, checker.patient_id))
        if record is not None:
            patients.append(record)
    duplicated: set[str] = set()
    for rows in rows_by_key.values():
        if len(rows) < 2:
            continue
        for row, patient_id in rows:
            others = ", ".join(f"row {other} ({other_id!r})" for other, other_id in rows if other != row)
            same = all(other_id == patient_id for _, other_id in rows)
            kind = "duplicate identifier" if same else "identifier that differs only in case from another"
            issues.append(ValidationIssue(row, patient_id, "patient_id",
                                          f"{kind}, also on {others}; all these rows are left out until it is fixed"))
            duplicated.add(patient_id)
    patients = [record for record in patients if record.patient_id not in duplicated]
    spelling_issues = center_spelling_issues(patients)
    issues.extend(spelling_issues)
    left_out = {issue.patient_id for issue in spelling_issues}
    patients = [record for record in patients if record.patient_id not in left_out]
    split_issues = assign_split(patients, config)
    issues.extend(split_issues)
    unassigned = {issue.patient_id for issue in split_issues if issue.row is not None}
    patients = [record for record in patients if record.patient_id not in unassigned]
    return Study(config, patients, issues, n_rows=len(frame))
