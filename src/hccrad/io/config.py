"""Study configuration: the YAML half of a study manifest.

The YAML names the clinical table, maps its columns onto hccrad's canonical fields, and holds the
study-level settings (validation split, horizons, output folder, DICOM series rule). Every default is
the paper's value.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hccrad.io.errors import InputError
from hccrad.io.layout import StudyLayout

CANONICAL_FIELDS = (
    "patient_id",
    "center",
    "ct",
    "mask",
    "portal_vein_diameter_mm",
    "afp",
    "child_pugh",
    "bclc",
    "treatment",
    "pfs_months",
    "pfs_event",
    "mask_liver",
    "mask_tumor",
    "mask_portal_vein",
    "mask_convention",
)

#: Columns that may be absent from the clinical table without a warning (unless the manifest names them).
OPTIONAL_COLUMNS = ("mask_liver", "mask_tumor", "mask_portal_vein", "mask_convention")

#: The paper's AFP cut-off (ng/mL): the default wherever a cut-off is not set.
PAPER_AFP_CUTOFF_NG_ML = 400.0

#: Months per unit, for reading a follow-up time given in another unit (1 month = 365.25 / 12 days).
MONTHS_PER_UNIT = {
    "months": 1.0,
    "weeks": 7.0 / 30.4375,
    "days": 1.0 / 30.4375,
    "years": 12.0,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnMap(_Strict):
    """Name of the clinical-table column that holds each canonical field.

    A field mapped to ``None`` is absent from the table (for instance ``ct`` in a clinical-only study).
    """

    patient_id: str = "patient_id"
    center: str | None = "center"
    ct: str | None = "ct"
    mask: str | None = "mask"
    portal_vein_diameter_mm: str | None = "portal_vein_diameter_mm"
    afp: str | None = "afp"
    child_pugh: str | None = "child_pugh"
    bclc: str | None = "bclc"
    treatment: str | None = "treatment"
    pfs_months: str = "pfs_months"
    pfs_event: str = "pfs_event"
    #: One file or DICOM folder per structure (any non-zero voxel belongs to it); ``mask_tumor`` may list several,
    #: separated by ``;``. A structure given this way replaces that structure of ``mask``.
    mask_liver: str | None = "mask_liver"
    mask_tumor: str | None = "mask_tumor"
    mask_portal_vein: str | None = "mask_portal_vein"
    #: The name of one of ``masks: conventions:`` for this row.
    mask_convention: str | None = "mask_convention"


class SplitConfig(_Strict):
    """Training / validation split: by named centers, or a seeded random fraction.

    The random split is stratified by center and event, so both sets keep the cohort's mix.
    """

    validation_centers: list[str] | None = None
    #: Optional with ``validation_centers``: the training centers; a center in neither list is then an error.
    training_centers: list[str] | None = None
    validation_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    seed: int = 20240601
    #: Every patient is external: the cohort of ``hccrad external-validate`` (no model is fitted on it).
    external: bool = False

    @model_validator(mode="after")
    def _one_rule(self) -> SplitConfig:
        if self.external:
            if self.validation_centers or self.validation_fraction is not None or self.training_centers:
                raise ValueError("external: true takes no validation_centers, training_centers or "
                                 "validation_fraction (every patient is external)")
            return self
        if self.validation_centers and self.validation_fraction is not None:
            raise ValueError("give either validation_centers or validation_fraction, not both")
        if not self.validation_centers and self.validation_fraction is None:
            raise ValueError("give validation_centers (a list) or validation_fraction (between 0 and 1), or "
                             "external: true for a cohort of external-validate")
        if self.training_centers is not None and not self.validation_centers:
            raise ValueError("training_centers goes with validation_centers")
        if self.training_centers and self.validation_centers:
            both = sorted(set(self.training_centers) & set(self.validation_centers))
            if both:
                raise ValueError(f"centers {both} are in both training_centers and validation_centers")
        return self


class SeriesRule(_Strict):
    """How to choose one DICOM series when a patient's folder holds several.

    Series whose SeriesDescription contains an ``exclude`` word are dropped; among the rest, the first
    ``prefer`` word found (in order) wins; several matches and folders with no match take the series with the
    most slices, unless ``require_match`` is set, in which case an unmatched folder is an error. Series left
    with as many slices are a tie, settled by ``tie_break``.
    """

    prefer: list[str] = ["venous", "portal", "pv", "delay"]
    exclude: list[str] = ["scout", "localizer", "topogram", "dose", "arterial", "plain", "non-contrast"]
    require_match: bool = False
    #: Two or more series left with as many slices: an error naming them (default), or the lowest or highest
    #: SeriesNumber.
    tie_break: Literal["error", "lowest_series_number", "highest_series_number"] = "error"


STRUCTURES = ("liver", "tumor", "portal_vein")

#: Segment and ROI names (lower case, letters only: ``Liver_Tumor 01`` reads ``livertumor``) taken as each structure.
DEFAULT_STRUCTURE_NAMES = {
    "liver": ["liver"],
    "tumor": ["tumor", "tumour", "tumors", "tumours", "livertumor", "livertumour", "livertumors", "lesion",
              "lesions", "hcc", "gtv", "neoplasm", "mass", "hepatocellularcarcinoma"],
    "portal_vein": ["portalvein", "portalveins", "pv", "venaporta"],
}


class MaskConvention(_Strict):
    """What the values of a case's mask mean (see docs/manifest.md, "Masks").

    ``labels`` maps each structure to the label values (of a label map), segment numbers (DICOM SEG) or ROI
    numbers (RTSTRUCT) that hold it. DICOM SEG segments and RTSTRUCT ROIs are matched by ``match``: ``auto``
    takes a segment by its SNOMED code (liver 10200004, neoplasm 108369006, portal vein 32764006, or their SRT
    forms) or its name in ``names``, and an ROI by its name; ``number`` uses ``labels``.
    """

    labels: dict[Literal["liver", "tumor", "portal_vein"], list[int]] = {"liver": [1], "tumor": [2],
                                                                          "portal_vein": [3]}
    #: Whether the liver structure covers the tumor (a warning when most of the tumor lies outside it), leaves it
    #: out as a hole (a warning when most lies inside), or either (None: not checked). The remnant liver is the
    #: liver without the tumor in every case.
    liver_includes_tumor: bool | None = None
    names: dict[Literal["liver", "tumor", "portal_vein"], list[str]] = DEFAULT_STRUCTURE_NAMES
    match: Literal["auto", "number"] = "auto"

    @field_validator("labels")
    @classmethod
    def _labels_distinct(cls, labels: dict[str, list[int]]) -> dict[str, list[int]]:
        merged = {"liver": [], "tumor": [], "portal_vein": []} | labels
        seen: dict[int, str] = {}
        for structure, values in merged.items():
            for value in values:
                if not 1 <= value <= 65535:
                    raise ValueError(f"masks labels: {structure} label {value} is not between 1 and 65535 (0 is the "
                                     "background)")
                if value in seen and seen[value] != structure:
                    raise ValueError(f"masks labels: label {value} is given for both {seen[value]} and {structure}")
                seen[value] = structure
        return merged

    @field_validator("names")
    @classmethod
    def _names_complete(cls, names: dict[str, list[str]]) -> dict[str, list[str]]:
        return DEFAULT_STRUCTURE_NAMES | names


class MasksConfig(MaskConvention):
    """The manifest's ``masks:`` section: the study's convention, each center's, named ones for the
    ``mask_convention`` column, and the checks' limits."""

    centers: dict[str, MaskConvention] = {}
    conventions: dict[str, MaskConvention] = {}
    #: A portal vein wider than this (largest inscribed diameter, mm) is refused as a wrong convention.
    portal_vein_max_diameter_mm: float = Field(default=25.0, gt=0)

    def convention_for(self, center: str | None, name: str | None = None) -> MaskConvention:
        """The convention of a row: its named one, else its center's, else the study's.

        Raises
        ------
        KeyError
            When ``name`` is not one of ``conventions``.
        """
        if name is not None:
            return self.conventions[name]
        if center is not None:
            for key, convention in self.centers.items():
                if " ".join(key.split()).casefold() == " ".join(center.split()).casefold():
                    return convention
        return MaskConvention.model_validate(self.model_dump(include=set(MaskConvention.model_fields)))


class StudyConfig(_Strict):
    """The study-level half of the manifest (the YAML file)."""

    name: str
    clinical_table: Path
    sheet: str | int | None = None
    columns: ColumnMap = ColumnMap()
    time_unit: Literal["months", "weeks", "days", "years"] = "months"
    event_coding: Literal["event=1", "censored=1"] = "event=1"
    value_maps: dict[str, dict[str, str]] = {}
    default_center: str | None = None
    require_images: bool = True
    treatment_categories: list[str] | None = None
    #: Lab values given as bounds (``<20``): refused (default), or their limit used with a warning.
    censored_values: Literal["refuse", "limit"] = "refuse"
    split: SplitConfig
    horizons_months: list[float] = [6.0, 12.0]
    afp_cutoff_ng_ml: float = PAPER_AFP_CUTOFF_NG_ML
    output_dir: Path = Path("hccrad-output")
    dicom_series: SeriesRule = SeriesRule()
    masks: MasksConfig = MasksConfig()
    # Each stage validates its own section with its own model (hccrad.features.FeatureConfig, ...), so
    # that this input layer does not depend on the stages above it.
    segmentation: dict[str, Any] = {}
    features: dict[str, Any] = {}
    models: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    report: dict[str, Any] = {}
    base_dir: Path = Path(".")

    @field_validator("horizons_months")
    @classmethod
    def _positive_sorted(cls, horizons: list[float]) -> list[float]:
        if not horizons or any(h <= 0 for h in horizons):
            raise ValueError("horizons_months must be a non-empty list of positive numbers")
        return sorted(horizons)

    @field_validator("value_maps")
    @classmethod
    def _known_fields(cls, maps: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unknown = set(maps) - set(CANONICAL_FIELDS)
        if unknown:
            raise ValueError(f"value_maps names unknown fields {sorted(unknown)}; known: {CANONICAL_FIELDS}")
        return maps

    def resolve(self, relative: Path | str) -> Path:
        """Return ``relative`` as an absolute path, read relative to the manifest's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def clinical_table_path(self) -> Path:
        """The clinical table's absolute path."""
        return self.resolve(self.clinical_table)

    @property
    def output_path(self) -> Path:
        """The output folder's absolute path."""
        return self.resolve(self.output_dir)

    @property
    def layout(self) -> StudyLayout:
        """Every path of the study's output folder (:class:`hccrad.io.layout.StudyLayout`)."""
        return StudyLayout(self.output_path)


class ManifestError(InputError, ValueError):
    """The YAML manifest itself cannot be read or is invalid."""


def load_config(path: Path | str) -> StudyConfig:
    """Read and validate a study YAML; relative paths inside it are taken from its folder.

    Raises
    ------
    ManifestError
        When the file is missing, is not YAML, or breaks the schema (every problem is listed).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} must hold a mapping of settings, found {type(raw).__name__}")
    raw.setdefault("base_dir", str(path.resolve().parent))
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(f"{path}: invalid manifest\n" + "\n".join(
            f"{path}: {line}" for line in describe_validation_error(exc, StudyConfig))) from exc


#: What to write for a required key that is missing, beyond its name.
MISSING_KEY_HINTS = {
    "split": "add `split: {validation_centers: [names]}` or `split: {validation_fraction: 0.3}` (or `split: "
             "{external: true}` for a cohort of external-validate)",
    "name": "add `name: <the study's name>`",
    "clinical_table": "add `clinical_table: <path of the CSV or XLSX, relative to this YAML>`",
}


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``path`` inside ``model`` (None where the path leaves models)."""
    for part in path:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _key_path(loc: tuple[Any, ...], prefix: str) -> str:
    parts = [str(part) for part in loc if not (isinstance(part, str) and part.startswith("function-"))]
    return ".".join([prefix, *parts] if prefix else parts) or "(top level)"


def describe_validation_error(error: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per problem of a pydantic ``error`` for ``model``, in the manifest's words: the key path, what was
    found and what to write, with "did you mean" for a mistyped key; no pydantic boilerplate or links.

    Parameters
    ----------
    prefix
        The section the model validates (``features``), written before each key path.
    """
    lines = []
    for problem in error.errors(include_url=False):
        loc = tuple(problem.get("loc", ()))
        kind = problem.get("type", "")
        where = _key_path(loc, prefix)
        if kind == "extra_forbidden":
            holder = _model_at(model, loc[:-1])
            known = sorted(holder.model_fields) if holder is not None else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"; did you mean `{_key_path((*loc[:-1], close[0]), prefix)}`?" if close else (
                f"; known keys here: {', '.join(known)}" if known else "")
            lines.append(f"unknown key `{where}`{hint}")
        elif kind == "missing":
            hint = MISSING_KEY_HINTS.get(str(loc[-1])) if len(loc) == 1 else None
            lines.append(f"required key `{where}` is missing" + (f": {hint}" if hint else ""))
        else:
            message = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
            found = problem.get("input")
            shown = "" if isinstance(found, (dict, list)) or found is None else f" (found {found!r})"
            lines.append(f"`{where}`: {message}{shown}")
    return lines
