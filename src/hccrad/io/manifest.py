"""Study manifest: the clinical table read through the YAML's column map, validated row by row.

Every problem is collected (never the first one only), each with the table row, the patient, the field
and what was expected. A row with an error is kept out of the analysis but always listed, so nothing is
dropped silently; a missing clinical factor is a warning (later stages impute it or say why they cannot).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.io.clinical_table import (  # noqa: F401  (re-exported: the manifest's value rules live there)
    BCLC_STAGES,
    CHILD_PUGH_GRADES,
    MAX_AFP_NG_ML,
    MAX_PFS_MONTHS,
    WARN_PFS_MONTHS,
    CensoredValue,
    ClinicalTableError,
    _as_text,
    _blank,
    _parse_number,
    _typing_problem,
    closest_columns,
    normalize_bclc,
    normalize_child_pugh,
    parse_clinical_inputs,
    parse_number,
    read_clinical_table,
)
from hccrad.io.config import MONTHS_PER_UNIT, OPTIONAL_COLUMNS, STRUCTURES, MaskConvention, StudyConfig, load_config
from hccrad.io.ids import patient_id_problem
from hccrad.io.issues import Severity, ValidationIssue
from hccrad.io.split import assign_split, center_key, center_spelling_issues  # noqa: F401  (re-exported)


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
