"""A case's mask from what hospitals and public datasets ship: label maps, binary per-structure files or DICOM
series, DICOM SEG and RTSTRUCT, read onto the CT's grid and turned into hccrad's labels (0 background, 1 liver,
2 tumor, 3 portal vein) by the case's :class:`~hccrad.io.config.MaskConvention`.

Every reader places the mask exactly on the CT's voxels or raises :class:`MaskSourceError` naming the file, what
was found and the fix. What was read, and how each structure was found, comes back as a plain ``mapping`` that
hccrad records with the case's features and shows in the QC gallery.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad.io.config import STRUCTURES, MaskConvention, SeriesRule
from hccrad.io.images import (
    ImageReadError,
    align_mask,
    choose_series,
    instance_uid,
    list_dicom_series,
    read_image,
    value_counts,
)
from hccrad.io.masks import LABEL_LIVER, LABEL_PORTAL_VEIN, LABEL_TUMOR

#: hccrad's label of each structure, painted in this order (the tumor last, over the liver and the portal vein).
STRUCTURE_LABELS = {"liver": LABEL_LIVER, "portal_vein": LABEL_PORTAL_VEIN, "tumor": LABEL_TUMOR}

#: DICOM SEG segmented-property-type codes of each structure: SNOMED CT (SCT) and the older SNOMED RT (SRT) forms
#: that dcmqi and 3D Slicer wrote for years.
STRUCTURE_CODES = {
    "liver": {("SCT", "10200004"), ("SRT", "T-62000")},
    "tumor": {("SCT", "108369006"), ("SRT", "M-80003"), ("SCT", "25370001"), ("SCT", "86049000")},
    "portal_vein": {("SCT", "32764006"), ("SRT", "T-48810")},
}

#: A fractional DICOM SEG voxel belongs to its segment from this fraction of the maximum value on.
FRACTIONAL_THRESHOLD = 0.5
#: A contour's points may lie this far (in slices) from the CT slice they are drawn on.
CONTOUR_SLICE_TOLERANCE = 0.25
#: A SEG frame's origin may lie this far (in voxels) from a CT voxel centre.
FRAME_POSITION_TOLERANCE = 0.05


class MaskSourceError(ImageReadError):
    """A mask cannot be read onto the CT's grid, or its values do not fit the case's convention."""


@dataclass(frozen=True, eq=False)
class MaskSource:
    """Where a case's mask comes from.

    Parameters
    ----------
    mask
        A label map (NIfTI, NRRD, MHA, a DICOM series folder), a DICOM SEG or RTSTRUCT file, or a folder holding one.
    structures
        Per-structure files or folders (``liver``, ``tumor``, ``portal_vein``); any non-zero voxel belongs to the
        structure. A structure given here replaces that structure of ``mask``.
    convention
        What ``mask``'s values, segments or ROIs mean.
    """

    mask: Path | None = None
    structures: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    convention: MaskConvention = field(default_factory=MaskConvention)

    def __post_init__(self) -> None:
        unknown = set(self.structures) - set(STRUCTURES)
        if unknown:
            raise ValueError(f"unknown structures {sorted(unknown)}; expected {STRUCTURES}")
        if self.mask is None and not self.structures:
            raise ValueError("a mask source needs a mask or per-structure files")

    @classmethod
    def of(cls, mask: MaskSource | Path | str) -> MaskSource:
        """``mask`` itself, or a single label map with the default convention."""
        return mask if isinstance(mask, MaskSource) else cls(Path(mask))

    @property
    def files(self) -> list[Path]:
        """Every file or folder of the source, ``mask`` first."""
        return ([self.mask] if self.mask else []) + [p for s in STRUCTURES for p in self.structures.get(s, ())]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a worker, and for the case's fingerprint)."""
        return {"mask": str(self.mask) if self.mask else None,
                "structures": {s: [str(p) for p in paths] for s, paths in self.structures.items()},
                "convention": self.convention.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskSource:
        """The inverse of :meth:`to_dict`."""
        return cls(Path(data["mask"]) if data.get("mask") else None,
                   {s: tuple(Path(p) for p in paths) for s, paths in (data.get("structures") or {}).items()},
                   MaskConvention.model_validate(data.get("convention") or {}))


@dataclass(frozen=True)
class CTReference:
    """The DICOM identity of a CT read from a series: what a SEG or RTSTRUCT must reference."""

    series_uid: str
    frame_of_reference_uid: str
    #: SOPInstanceUID -> slice index (z) of the CT image.
    slice_of_instance: dict[str, int]


def ct_reference(ct: Path | str, image: sitk.Image, rule: SeriesRule | None = None) -> CTReference | None:
    """The CT's DICOM identity when ``ct`` is a DICOM folder (the series :func:`read_image` chose), else None."""
    import pydicom

    ct = Path(ct)
    if not ct.is_dir():
        return None
    chosen = choose_series(list_dicom_series(ct), rule or SeriesRule(), ct)
    slice_of_instance, frame_of_reference, series_uid = {}, "", ""
    for file in chosen.files:
        header = pydicom.dcmread(file, stop_before_pixels=True)
        frame_of_reference = frame_of_reference or str(header.get("FrameOfReferenceUID", ""))
        series_uid = series_uid or str(header.get("SeriesInstanceUID", ""))
        position, uid = header.get("ImagePositionPatient"), instance_uid(header)
        if position is not None and uid:
            index = image.TransformPhysicalPointToContinuousIndex([float(v) for v in position])[2]
            slice_of_instance[uid] = int(round(index))
    return CTReference(series_uid, frame_of_reference, slice_of_instance)


def normalized_name(name: str) -> str:
    """A segment or ROI name as it is compared: lower case, letters only (``Liver_Tumor 01`` -> ``livertumor``)."""
    return re.sub(r"[^a-z]", "", name.lower())


@dataclass
class _Part:
    """One segment, ROI or label value of a mask file: its voxels on the CT grid and how it is named."""

    number: int
    name: str
    voxels: np.ndarray  # bool (z, y, x)
    codes: frozenset[tuple[str, str]] = frozenset()

    def describe(self) -> str:
        return f"{self.number} '{self.name}'" if self.name else str(self.number)

    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.voxels))


class _LabelPart(_Part):
    """One value of a label map, its voxels made on demand (``array == value``), so that a label map's parts do not
    each hold a full-size array."""

    def __init__(self, number: int, array: np.ndarray, image: sitk.Image, count: int | None = None) -> None:
        self.number, self.name, self.codes = number, "", frozenset()
        self._array, self._image = array, image  # the image owns the array's memory
        self._count = count

    @property
    def voxels(self) -> np.ndarray:
        return self._array == self.number

    def voxel_count(self) -> int:
        if self._count is None:
            self._count = int(np.count_nonzero(self._array == self.number))
        return self._count


@dataclass
class _MaskFile:
    """A mask file read onto the CT grid: its format and parts."""

    path: Path
    kind: str  # "label map", "DICOM SEG", "RTSTRUCT"
    parts: list[_Part]
    notes: list[str] = field(default_factory=list)

    def found(self) -> str:
        if not self.parts:
            return f"{self.kind} {self.path} holds no structure (every voxel is background)"
        what = "labels" if self.kind == "label map" else "segments" if self.kind == "DICOM SEG" else "ROIs"
        listing = ", ".join(f"{part.describe()} ({part.voxel_count()} voxels)" for part in self.parts)
        return f"{self.kind} {self.path} holds {what} {listing}"


def _dicom_modality(path: Path) -> str:
    """The Modality of a DICOM file ('' for a file that is not DICOM)."""
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality", ""))
    except Exception:  # not DICOM, or damaged: read as an image later, which names the problem
        return ""


def _object_file(path: Path) -> tuple[Path, str]:
    """(file, 'SEG' | 'RTSTRUCT' | '') for a mask path: a DICOM SEG or RTSTRUCT file, or a folder holding one."""
    if path.is_file():
        with open(path, "rb") as handle:
            looks_dicom = handle.read(132)[128:132] == b"DICM" or path.suffix.lower() == ".dcm"
        modality = _dicom_modality(path) if looks_dicom else ""
        return path, modality if modality in ("SEG", "RTSTRUCT") else ""
    objects = [(file, _dicom_modality(file)) for file in sorted(path.iterdir()) if file.is_file()]
    objects = [(file, modality) for file, modality in objects if modality in ("SEG", "RTSTRUCT")]
    if len(objects) > 1:
        raise MaskSourceError(f"mask folder {path} holds {len(objects)} DICOM SEG/RTSTRUCT objects "
                              f"({', '.join(f.name for f, _ in objects)}); give the file itself in the manifest")
    return objects[0] if objects else (path, "")


def read_mask_file(path: Path | str, image: sitk.Image, reference: CTReference | None,
                   convention: MaskConvention) -> _MaskFile:
    """Read any supported mask onto ``image``'s grid as its parts (label values, segments or ROIs)."""
    path = Path(path)
    if not path.exists():
        raise MaskSourceError(f"mask not found: {path}")
    file, modality = _object_file(path)
    if modality == "SEG":
        return _read_seg(file, image, reference)
    if modality == "RTSTRUCT":
        return _read_rtstruct(file, image, reference)
    return _read_label_map(path, image)


#: The most distinct non-zero labels a label-map mask may hold (a multi-organ map such as TotalSegmentator's has 117).
MAX_MASK_LABELS = 255


def _read_label_map(path: Path, image: sitk.Image) -> _MaskFile:
    mask = align_mask(image, read_image(path), what=f"mask {path}")
    array = sitk.GetArrayViewFromImage(mask)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.equal(np.mod(array, 1), 0)):
        raise MaskSourceError(f"mask {path} holds non-integer values; a mask holds whole-number labels")
    values, counts = value_counts(array)
    if values.min() < 0:
        raise MaskSourceError(f"mask {path} holds negative values (down to {values.min():g}); a mask holds labels >= 0")
    labels = values[values != 0]
    if len(labels) > MAX_MASK_LABELS:  # counted before any per-label array is made
        shown = ", ".join(f"{v:g}" for v in labels[:8])
        raise MaskSourceError(f"mask {path} holds {len(labels)} distinct labels ({shown}, ...); a label map holds at "
                              f"most {MAX_MASK_LABELS} (hccrad's are 1 liver, 2 tumor, 3 portal vein): is it an image "
                              "rather than a mask?")
    return _MaskFile(path, "label map", [_LabelPart(int(value), array, mask, int(count))
                                         for value, count in zip(values, counts, strict=True) if value != 0])


def _code_of(item) -> frozenset[tuple[str, str]]:
    codes = item.get("SegmentedPropertyTypeCodeSequence") or []
    return frozenset((str(c.get("CodingSchemeDesignator", "")), str(c.get("CodeValue", ""))) for c in codes)


def _frame_groups(seg, index: int):
    """(plane position, orientation, pixel spacing, segment number, referenced SOP UIDs) of frame ``index``."""
    per_frame = seg.PerFrameFunctionalGroupsSequence[index]
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None

    def group(keyword: str):
        for source in (per_frame, shared):
            if source is not None and keyword in source:
                return source.get(keyword)[0]
        return None

    position = group("PlanePositionSequence")
    orientation = group("PlaneOrientationSequence")
    measures = group("PixelMeasuresSequence")
    segment = group("SegmentIdentificationSequence")
    references = []
    for derivation in per_frame.get("DerivationImageSequence") or []:
        references += [str(s.ReferencedSOPInstanceUID) for s in derivation.get("SourceImageSequence") or []]
    return (None if position is None else [float(v) for v in position.ImagePositionPatient],
            None if orientation is None else [float(v) for v in orientation.ImageOrientationPatient],
            None if measures is None else [float(v) for v in measures.PixelSpacing],
            None if segment is None else int(segment.ReferencedSegmentNumber), references)


def _check_plane(path: Path, image: sitk.Image, orientation: list[float] | None, spacing: list[float] | None,
                 what: str) -> None:
    """A frame's orientation and pixel spacing must be the CT's."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if orientation is None or spacing is None:
        raise MaskSourceError(f"{what} of {path} has no plane orientation or pixel spacing; it cannot be placed")
    if (np.abs(np.array(orientation[:3]) - direction[:, 0]).max() > 1e-3
            or np.abs(np.array(orientation[3:]) - direction[:, 1]).max() > 1e-3):
        raise MaskSourceError(f"{what} of {path} is oriented {orientation}, the CT's slices "
                              f"{[round(v, 4) for v in direction[:, :2].T.ravel()]}: a mask drawn on another "
                              "reconstruction; draw it on (or resample it to) this CT")
    ct_spacing = image.GetSpacing()
    if not np.allclose([spacing[1], spacing[0]], ct_spacing[:2], rtol=1e-3):
        raise MaskSourceError(f"{what} of {path} has pixel spacing {spacing} mm, the CT "
                              f"{[ct_spacing[1], ct_spacing[0]]}: a mask of another reconstruction")


def _check_references(path: Path, kind: str, series_uids: set[str], frame_of_reference: str,
                      reference: CTReference | None) -> list[str]:
    """The object must reference the CT's series and frame of reference; returns notes of what was not checked."""
    if reference is None:
        return [f"the CT is not a DICOM series: the {kind}'s references to its series were not checked, only its "
                "geometry"]
    notes = []
    if frame_of_reference and reference.frame_of_reference_uid:
        if frame_of_reference != reference.frame_of_reference_uid:
            raise MaskSourceError(f"{kind} {path} is in frame of reference {frame_of_reference}, the CT in "
                                  f"{reference.frame_of_reference_uid}: it belongs to another scan")
    elif not reference.frame_of_reference_uid:
        notes.append("the CT has no FrameOfReferenceUID: placed by the referenced series and slice positions")
    series_uids.discard("")
    if not series_uids or not reference.series_uid:
        return notes + [f"the CT or the {kind} has no series UID (anonymised?): placed by the slices it references "
                        "and their positions"]
    if reference.series_uid not in series_uids:
        raise MaskSourceError(f"{kind} {path} references series {', '.join(sorted(series_uids))}, but the CT is "
                              f"series {reference.series_uid}: it was drawn on another series (another phase or "
                              "reconstruction); give the mask of this CT, or the CT it was drawn on")
    return notes


def _read_seg(path: Path, image: sitk.Image, reference: CTReference | None) -> _MaskFile:
    """A DICOM SEG's segments on the CT grid, each frame placed by its position (and checked against the slice it
    references)."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # highdicom and pydicom raise many types for damaged or foreign files
        raise MaskSourceError(f"DICOM SEG {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    series_uids = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence") or []}
    notes = _check_references(path, "DICOM SEG", series_uids, str(seg.get("FrameOfReferenceUID", "")), reference)
    fractional = str(seg.SegmentationType) == "FRACTIONAL"
    maximum = float(seg.get("MaximumFractionalValue", 255)) if fractional else 1.0
    segments = {int(item.SegmentNumber): _Part(int(item.SegmentNumber), str(item.get("SegmentLabel", "")),
                                                np.zeros(image.GetSize()[::-1], dtype=bool), _code_of(item))
                for item in seg.SegmentSequence}
    columns, rows, slices = image.GetSize()
    for index in range(int(seg.NumberOfFrames)):
        position, orientation, spacing, number, referenced = _frame_groups(seg, index)
        what = f"frame {index + 1}"
        _check_plane(path, image, orientation, spacing, what)
        if position is None or number not in segments:
            raise MaskSourceError(f"{what} of DICOM SEG {path} has no plane position or segment number")
        x, y, z = image.TransformPhysicalPointToContinuousIndex(position)
        ix, iy, iz = (int(round(v)) for v in (x, y, z))
        frame_rows, frame_columns = int(seg.Rows), int(seg.Columns)
        if (max(abs(x - ix), abs(y - iy), abs(z - iz)) > FRAME_POSITION_TOLERANCE or not 0 <= iz < slices
                or ix < 0 or iy < 0 or ix + frame_columns > columns or iy + frame_rows > rows):
            raise MaskSourceError(f"{what} of DICOM SEG {path} lies at {position} mm, at voxel ({x:.2f}, {y:.2f}, "
                                  f"{z:.2f}) of the CT: not on the CT's slices; the SEG was drawn on another grid")
        if reference is not None:
            for uid in referenced:
                expected = reference.slice_of_instance.get(uid)
                if expected is None:
                    raise MaskSourceError(f"{what} of DICOM SEG {path} references instance {uid}, which is not a "
                                          "slice of the CT series")
                if expected != iz:
                    raise MaskSourceError(f"{what} of DICOM SEG {path} references CT slice {expected + 1} but lies "
                                          f"at slice {iz + 1}: its positions and references disagree")
        stored = np.asarray(seg.get_stored_frame(index + 1))
        voxels = stored >= FRACTIONAL_THRESHOLD * maximum if fractional else stored > 0
        segments[number].voxels[iz, iy:iy + frame_rows, ix:ix + frame_columns] |= voxels
    return _MaskFile(path, "DICOM SEG", list(segments.values()), notes)


def _even_odd_fill(target: np.ndarray, columns_index: np.ndarray, rows_index: np.ndarray) -> None:
    """Flip (XOR) the voxel centres of the 2D ``target`` (rows, columns) inside a polygon given in continuous
    voxel indices, by the even-odd rule with half-open edges: a centre counts as inside when a ray towards +x
    crosses the polygon an odd number of times, an edge crossing counted when one end lies above the centre's row
    and the other at or below it, and only where it lies strictly right of the centre."""
    rows, columns = target.shape
    x0, y0 = columns_index, rows_index
    x1, y1 = np.roll(columns_index, -1), np.roll(rows_index, -1)
    low, high = max(0, int(np.ceil(y0.min()))), min(rows - 1, int(np.floor(y0.max())))
    centres = np.arange(columns, dtype=float)
    for row in range(low, high + 1):
        spans = (y0 > row) != (y1 > row)
        if not spans.any():
            continue
        crossings = np.sort(x0[spans] + (row - y0[spans]) * (x1[spans] - x0[spans]) / (y1[spans] - y0[spans]))
        right_of = crossings.size - np.searchsorted(crossings, centres, side="right")
        target[row] ^= (right_of % 2).astype(bool)


def _read_rtstruct(path: Path, image: sitk.Image, reference: CTReference | None) -> _MaskFile:
    """An RTSTRUCT's ROIs rasterised on the CT grid by :func:`_even_odd_fill`, slice by slice: the contours of one
    ROI on one slice combine by the even-odd rule, so a contour inside another is a hole."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
        names = {int(item.ROINumber): str(item.get("ROIName", "")) for item in dataset.StructureSetROISequence}
    except Exception as exc:  # pydicom raises many types for damaged files
        raise MaskSourceError(f"RTSTRUCT {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    series_uids, frames = set(), set()
    for frame in dataset.get("ReferencedFrameOfReferenceSequence") or []:
        frames.add(str(frame.get("FrameOfReferenceUID", "")))
        for study in frame.get("RTReferencedStudySequence") or []:
            series_uids |= {str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence") or []}
    frames.discard("")
    notes = _check_references(path, "RTSTRUCT", series_uids, next(iter(frames)) if len(frames) == 1 else "",
                              reference)
    size = image.GetSize()
    to_index = np.linalg.inv(np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing()))
    origin = np.array(image.GetOrigin())
    parts = {number: _Part(number, name, np.zeros(size[::-1], dtype=bool)) for number, name in names.items()}
    for roi in dataset.get("ROIContourSequence") or []:
        number = int(roi.ReferencedROINumber)
        if number not in parts:
            raise MaskSourceError(f"RTSTRUCT {path} has contours of ROI {number}, which its structure set does not "
                                  "list")
        part = parts[number]
        for contour in roi.get("ContourSequence") or []:
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind != "CLOSED_PLANAR":  # points and open lines cover no voxel
                continue
            points = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
            index = (points - origin) @ to_index.T
            slice_index = int(round(float(np.median(index[:, 2]))))
            if np.abs(index[:, 2] - slice_index).max() > CONTOUR_SLICE_TOLERANCE:
                raise MaskSourceError(f"RTSTRUCT {path}: a contour of ROI '{part.name}' is not drawn on one of the "
                                      f"CT's slices (slice index {index[:, 2].min():.2f} to {index[:, 2].max():.2f}); "
                                      "was it drawn on another series?")
            if not 0 <= slice_index < size[2]:
                raise MaskSourceError(f"RTSTRUCT {path}: a contour of ROI '{part.name}' lies outside the CT, at "
                                      f"slice {slice_index + 1} of {size[2]}")
            _even_odd_fill(part.voxels[slice_index], index[:, 0], index[:, 1])
    return _MaskFile(path, "RTSTRUCT", list(parts.values()), notes)


def _matches(part: _Part, structure: str, convention: MaskConvention, kind: str) -> bool:
    if kind == "label map" or convention.match == "number":
        return part.number in convention.labels.get(structure, [])
    if part.codes & STRUCTURE_CODES[structure]:
        return True
    return normalized_name(part.name) in {normalized_name(n) for n in convention.names.get(structure, [])}


def _parts_of(mask_file: _MaskFile, convention: MaskConvention) -> dict[str, list[_Part]]:
    """Each structure's parts of a mask file by the convention. Label values the convention does not map refuse a
    label map (a tumor labelled 4 would be lost); unmatched segments and ROIs are ignored, and listed in what the
    file held."""
    owner: dict[int, str] = {}
    assigned: dict[str, list[_Part]] = {}
    for structure in STRUCTURES:
        parts = [part for part in mask_file.parts if _matches(part, structure, convention, mask_file.kind)]
        for part in parts:
            if part.number in owner:
                raise MaskSourceError(f"{mask_file.found()}; {part.describe()} matches both "
                                      f"{owner[part.number].replace('_', ' ')} and {structure.replace('_', ' ')}; "
                                      "say which with masks: {match: number, labels: {...}}")
            owner[part.number] = structure
        assigned[structure] = parts
    unmapped = [part for part in mask_file.parts if part.number not in owner]
    if unmapped and mask_file.kind == "label map":
        raise MaskSourceError(_unmapped_message(mask_file, unmapped, convention))
    return assigned


def _how_found(mask_file: _MaskFile, parts: list[_Part]) -> str:
    return (f"{mask_file.kind} {mask_file.path.name}: "
            + (", ".join(part.describe() for part in parts) if parts else "none"))


def _structures_of(mask_file: _MaskFile, convention: MaskConvention, wanted: tuple[str, ...],
                   shape: tuple[int, ...]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The wanted structures of a mask file by the convention (:func:`_parts_of`), with how each was found."""
    voxels, found = {}, {}
    for structure, parts in _parts_of(mask_file, convention).items():
        if structure not in wanted:
            continue
        union = np.zeros(shape, dtype=bool)
        for part in parts:
            union |= part.voxels
        voxels[structure] = union
        found[structure] = _how_found(mask_file, parts)
    return voxels, found


#: Voxels relabelled at a time by :func:`_painted_by_table` (its temporary index array is 8 bytes per voxel: 4 MB, below
#: what glibc's adaptive mmap threshold has already reached, so that it keeps no more freed memory afterwards).
RELABEL_CHUNK_VOXELS = 1 << 19


def _painted_by_table(mask_file: _MaskFile, assigned: dict[str, list[_Part]], shape: tuple[int, ...]
                      ) -> np.ndarray | None:
    """hccrad's labels of a label map with 8- or 16-bit integer values, through a table from each value to its
    structure's label, a chunk of :data:`RELABEL_CHUNK_VOXELS` at a time: one pass instead of a comparison and a
    masked assignment per value. Every non-zero value is mapped (:func:`_parts_of` refuses the others), so the
    result is the painted one. None for other value types."""
    parts = [part for part in mask_file.parts if isinstance(part, _LabelPart)]
    if not parts or len(parts) != len(mask_file.parts):
        return None
    array = parts[0]._array
    if array.dtype.kind not in "biu" or array.dtype.itemsize > 2 or array.shape != tuple(shape):
        return None
    if array.dtype.kind == "i":  # negative values were refused on reading: the same numbers unsigned
        array = array.view(np.dtype(f"u{array.dtype.itemsize}"))
    table = np.zeros(1 << (8 * array.dtype.itemsize), dtype=np.uint8)
    for structure, label in STRUCTURE_LABELS.items():
        for part in assigned[structure]:
            table[part.number] = label
    numbers = [part.number for part in parts]
    if np.array_equal(table[numbers], numbers):  # hccrad's own labels (or a subset): a plain copy
        return array.astype(np.uint8).reshape(shape)
    flat = array.reshape(-1)
    labels = np.empty(flat.size, dtype=np.uint8)
    for start in range(0, flat.size, RELABEL_CHUNK_VOXELS):
        labels[start:start + RELABEL_CHUNK_VOXELS] = table[flat[start:start + RELABEL_CHUNK_VOXELS]]
    return labels.reshape(shape)


def _label_map_case_mask(mask_file: _MaskFile, convention: MaskConvention, shape: tuple[int, ...]) -> CaseMask:
    """:func:`read_case_mask` of a single label map: hccrad's labels painted value by value, without a full-size
    array per structure (a label map has one value per voxel, so its structures cannot overlap)."""
    assigned = _parts_of(mask_file, convention)
    labels = _painted_by_table(mask_file, assigned, shape)
    if labels is None:
        labels = np.zeros(shape, dtype=np.uint8)
        for structure, label in STRUCTURE_LABELS.items():
            for part in assigned[structure]:
                labels[part.voxels] = label
    counts = {s: sum(part.voxel_count() for part in assigned[s]) for s in STRUCTURES}
    mapping = {
        "format": mask_file.kind,
        "convention": convention_text(convention),
        "structures": {s: _how_found(mask_file, assigned[s]) for s in STRUCTURES},
        "voxels": counts,
        "found": [mask_file.found()],
        "notes": list(mask_file.notes),
        "warnings": _overlap_warning_lines(counts["tumor"], 0, convention),
    }
    return CaseMask(labels, mapping)


def convention_text(convention: MaskConvention) -> str:
    """``liver [1], tumor [2], portal vein [3]``: a convention's labels for messages."""
    return ", ".join(f"{s.replace('_', ' ')} {convention.labels.get(s, [])}" for s in STRUCTURES)


def _unmapped_message(mask_file: _MaskFile, unmapped: list[_Part], convention: MaskConvention) -> str:
    values = [part.number for part in unmapped]
    message = (f"{mask_file.found()}; labels {values} are not in the case's convention ({convention_text(convention)}, "
               "the manifest's masks: labels)")
    if len(mask_file.parts) == 1:
        return (message + f". A binary mask (one value, {values[0]}): give it in the mask_liver or mask_tumor column, "
                f"or map the value, e.g. masks: {{labels: {{liver: [{values[0]}]}}}}")
    return (message + f". Map every value, e.g. masks: {{labels: {{tumor: [{', '.join(map(str, [2] + values))}]}}}} "
            "if they are further tumors")


@dataclass
class CaseMask:
    """A case's labels on the CT grid and how they were found."""

    labels: np.ndarray  # uint8 (z, y, x): 0 background, 1 liver, 2 tumor, 3 portal vein
    #: ``format``, ``structures`` (how each was found), ``voxels`` (count of each), ``found`` (what each file held),
    #: ``notes`` and ``warnings``: plain data for the case's record and the QC gallery.
    mapping: dict[str, Any]


def read_case_mask(source: MaskSource, image: sitk.Image, reference: CTReference | None = None) -> CaseMask:
    """The case's hccrad labels on ``image``'s grid from any supported mask source (see the module docstring).

    Structures are painted liver, portal vein, tumor, so a tumor voxel is a tumor whatever else covers it.

    Raises
    ------
    MaskSourceError
        When a file cannot be placed on the CT grid, or holds values the convention does not map.
    """
    convention = source.convention
    voxels: dict[str, np.ndarray] = {}
    found: dict[str, str] = {}
    described, notes, kinds = [], [], []
    from_mask = tuple(s for s in STRUCTURES if s not in source.structures)
    mask_file = read_mask_file(source.mask, image, reference, convention) if source.mask is not None else None
    if mask_file is not None and mask_file.kind == "label map" and not source.structures:
        return _label_map_case_mask(mask_file, convention, image.GetSize()[::-1])
    if mask_file is not None:
        structures, how = _structures_of(mask_file, convention, from_mask, image.GetSize()[::-1])
        voxels |= {s: structures[s] for s in from_mask}
        found |= {s: how[s] for s in from_mask}
        described.append(mask_file.found())
        notes += mask_file.notes
        kinds.append(mask_file.kind)
    for structure, paths in source.structures.items():
        union = np.zeros(image.GetSize()[::-1], dtype=bool)
        how = []
        for path in paths:
            mask_file = read_mask_file(path, image, reference, convention)
            described.append(mask_file.found())
            notes += mask_file.notes
            kinds.append(f"per-structure {mask_file.kind}")
            parts = mask_file.parts
            if mask_file.kind != "label map" and len(parts) > 1:
                parts = [p for p in parts if _matches(p, structure, convention, mask_file.kind)]
                if not parts:
                    raise MaskSourceError(f"{mask_file.found()}; none of them is a {structure.replace('_', ' ')} "
                                          f"by its code or name; name it in masks: names: {structure}")
            for part in parts:
                union |= part.voxels
            how.append(f"{mask_file.kind} {Path(path).name}: any non-zero" if mask_file.kind == "label map"
                       else f"{mask_file.kind} {Path(path).name}: " + ", ".join(p.describe() for p in parts))
        voxels[structure] = union
        found[structure] = "; ".join(how)
    for structure in STRUCTURES:
        if structure not in voxels:
            voxels[structure] = np.zeros(image.GetSize()[::-1], dtype=bool)
            found[structure] = "not given"
    warnings = _overlap_warnings(voxels, convention)
    labels = np.zeros(image.GetSize()[::-1], dtype=np.uint8)
    for structure, label in STRUCTURE_LABELS.items():
        labels[voxels[structure]] = label
    mapping = {
        "format": " + ".join(dict.fromkeys(kinds)),
        "convention": convention_text(convention),
        "structures": found,
        "voxels": {s: int(np.count_nonzero(labels == STRUCTURE_LABELS[s])) for s in STRUCTURES},
        "found": described,
        "notes": notes,
        "warnings": warnings,
    }
    return CaseMask(labels, mapping)


def _overlap_warnings(voxels: dict[str, np.ndarray], convention: MaskConvention) -> list[str]:
    """Warnings when the liver does or does not cover the tumor against ``liver_includes_tumor``."""
    return _overlap_warning_lines(int(np.count_nonzero(voxels["tumor"])),
                                  int(np.count_nonzero(voxels["tumor"] & voxels["liver"])), convention)


def _overlap_warning_lines(tumor_voxels: int, inside_voxels: int, convention: MaskConvention) -> list[str]:
    """:func:`_overlap_warnings` from the tumor's voxel count and how many of them the liver mask covers."""
    if convention.liver_includes_tumor is None or not tumor_voxels:
        return []
    inside = inside_voxels / tumor_voxels
    if convention.liver_includes_tumor and inside < 0.5:
        return [f"liver_includes_tumor is true, but only {inside:.0%} of the tumor lies inside the liver mask: "
                "a liver with the tumor cut out? Set masks: {liver_includes_tumor: false} if so"]
    if not convention.liver_includes_tumor and inside > 0.5:
        return [f"liver_includes_tumor is false, but {inside:.0%} of the tumor lies inside the liver mask; set "
                "masks: {liver_includes_tumor: true} if the liver mask covers the tumor"]
    return []
