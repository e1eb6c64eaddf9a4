"""Reading CT images and masks (NIfTI, NRRD, DICOM series) and checking that their geometries agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hccrad.io.config import SeriesRule
from hccrad.io.errors import InputError


class ImageReadError(InputError, RuntimeError):
    """An image or mask could not be read; the message names the file and the reason."""


class GeometryMismatchError(InputError, ValueError):
    """Image and mask do not share size, spacing, origin and direction."""


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found in a folder."""

    series_uid: str
    description: str
    files: tuple[str, ...]
    modality: str = ""
    series_number: int | None = None

    @property
    def n_slices(self) -> int:
        """Number of files (slices) of the series."""
        return len(self.files)


def list_dicom_series(folder: Path) -> list[DicomSeries]:
    """List the DICOM series in ``folder`` (not recursive), with their SeriesDescription."""
    import pydicom  # here, not at the top: a worker reading NIfTI files need not load it (about 40 MB)

    reader = sitk.ImageSeriesReader()
    series = []
    for uid in reader.GetGDCMSeriesIDs(str(folder)) or ():
        files = tuple(reader.GetGDCMSeriesFileNames(str(folder), uid))
        try:
            header = pydicom.dcmread(files[0], stop_before_pixels=True)
            description = str(header.get("SeriesDescription", ""))
            modality = str(header.get("Modality", ""))
            number = header.get("SeriesNumber")
            series_number = int(number) if number not in (None, "") else None
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, TypeError):
            description, modality, series_number = "", "", None
        series.append(DicomSeries(uid, description, files, modality, series_number))
    return series


def choose_series(series: list[DicomSeries], rule: SeriesRule, folder: Path | None = None) -> DicomSeries:
    """Choose one series by the manifest's rule (see :class:`SeriesRule`).

    Raises
    ------
    ImageReadError
        When no series is left, or none matches and the rule requires a match.
    """
    where = f" in {folder}" if folder else ""
    # Segmentations, structure sets and reports share folders with CTs; only image series qualify.
    series = [s for s in series if s.modality in ("", "CT")]
    if not series:
        raise ImageReadError(f"no DICOM CT series found{where}")
    if len(series) == 1:
        return series[0]

    def described(candidate: DicomSeries, words: list[str]) -> bool:
        text = candidate.description.lower()
        return any(word.lower() in text for word in words)

    kept = [s for s in series if not described(s, rule.exclude)]
    listing = "; ".join(f"{s.description or '(no description)'}: {s.n_slices} slices" for s in series)
    if not kept:
        raise ImageReadError(f"every DICOM series{where} is excluded by the series rule ({listing})")
    for word in rule.prefer:
        matches = [s for s in kept if word.lower() in s.description.lower()]
        if matches:
            return _break_tie(matches, rule, where)
    if rule.require_match:
        raise ImageReadError(f"no DICOM series{where} matches {rule.prefer} ({listing})")
    return _break_tie(kept, rule, where)


def _break_tie(candidates: list[DicomSeries], rule: SeriesRule, where: str) -> DicomSeries:
    """The candidate with the most slices; several with as many are a tie, settled by ``rule.tie_break``."""
    most = max(s.n_slices for s in candidates)
    tied = sorted((s for s in candidates if s.n_slices == most),
                  key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid))
    if len(tied) == 1:
        return tied[0]
    numbered = [s for s in tied if s.series_number is not None]
    if rule.tie_break != "error" and len(numbered) == len(tied):
        pick = min if rule.tie_break == "lowest_series_number" else max
        return pick(tied, key=lambda s: s.series_number)
    raise ImageReadError(f"{len(tied)} DICOM series{where} fit the series rule equally: {_tie_listing(tied)}; "
                         + _tie_remedy(tied, rule))


def _tie_listing(tied: list[DicomSeries]) -> str:
    return "; ".join(f"series {s.series_number if s.series_number is not None else '?'} "
                     f"'{s.description or '(no description)'}' ({s.n_slices} slices, UID {s.series_uid})" for s in tied)


def _tie_remedy(tied: list[DicomSeries], rule: SeriesRule) -> str:
    """Only the rules that tell the tied series apart: SeriesNumber when each has its own, description words when
    the descriptions differ; else the series must be separated by hand."""
    remedies = []
    numbers = [s.series_number for s in tied]
    if rule.tie_break == "error" and None not in numbers and len(set(numbers)) == len(numbers):
        remedies.append("say which to take with dicom_series: {tie_break: lowest_series_number | "
                        "highest_series_number}")
    descriptions = [s.description.strip() for s in tied]
    if all(descriptions) and len({d.lower() for d in descriptions}) == len(descriptions):
        remedies.append("add a word of the wanted series' description to dicom_series: prefer (or of the others "
                        "to exclude)")
    modalities = {s.modality for s in tied}
    remedies.append("move the other series out of the folder"
                    + ("" if remedies else " (they differ neither in SeriesNumber nor in SeriesDescription"
                       + (", and a mask series mixed into the CT's folder looks like this" if modalities <= {"", "CT"}
                          else "") + ")"))
    return "; or ".join(remedies)


#: Slice gaps may differ from the series' median gap by this fraction before the spacing counts as uneven.
SLICE_GAP_TOLERANCE = 0.1


def check_dicom_slices(files: tuple[str, ...], folder: Path) -> None:
    """Refuse a series with unreadable or truncated slices, or uneven slice positions (a missing slice).

    Each file is read in full with pydicom: it must parse, and (uncompressed) hold the pixel bytes its Rows,
    Columns, BitsAllocated and SamplesPerPixel describe. The slice positions along the slice normal must be
    evenly spaced within :data:`SLICE_GAP_TOLERANCE` of the median gap.

    Raises
    ------
    ImageReadError
        Naming the folder, the file or the gap.
    """
    import pydicom

    positions = []
    files_of_instance: dict[str, list[str]] = {}
    files_at_position: dict[float, list[str]] = {}
    for file in files:
        try:
            slice_ = pydicom.dcmread(file)
            pixel_bytes = len(slice_.PixelData)
        except Exception as exc:  # pydicom raises many types for damaged files
            raise ImageReadError(f"DICOM slice {file} in {folder} cannot be read ({type(exc).__name__}: {exc}); "
                                 "copy the series again") from exc
        if not slice_.file_meta.TransferSyntaxUID.is_compressed:
            expected = (int(slice_.Rows) * int(slice_.Columns) * int(slice_.get("SamplesPerPixel", 1))
                        * int(slice_.BitsAllocated) // 8 * int(slice_.get("NumberOfFrames", 1) or 1))
            if pixel_bytes < expected:
                raise ImageReadError(f"DICOM slice {file} in {folder} is truncated: {pixel_bytes} bytes of pixel data "
                                     f"where its header describes {expected}; copy the series again")
        orientation = slice_.get("ImageOrientationPatient")
        position = slice_.get("ImagePositionPatient")
        files_of_instance.setdefault(instance_uid(slice_) or file, []).append(file)
        if orientation is not None and position is not None:
            normal = np.cross(np.array(orientation[:3], float), np.array(orientation[3:], float))
            positions.append(float(np.dot(normal, np.array(position, float))))
            files_at_position.setdefault(round(positions[-1], 3), []).append(file)
    _refuse_duplicates(files_of_instance, "the same SOPInstanceUID", folder)
    _refuse_duplicates(files_at_position, "the same slice position", folder)
    if len(positions) >= 3:
        gaps = np.diff(np.sort(positions))
        median = float(np.median(gaps))
        uneven = np.flatnonzero(np.abs(gaps - median) > SLICE_GAP_TOLERANCE * median)
        if median > 0 and uneven.size:
            worst = uneven[np.argmax(np.abs(gaps[uneven] - median))]
            raise ImageReadError(f"DICOM series in {folder} has uneven slice spacing: a gap of {gaps[worst]:.2f} mm "
                                 f"after slice {worst + 1} of {len(positions)} where the others are {median:.2f} mm "
                                 "(a missing or duplicated slice?)")


def instance_uid(dataset) -> str:
    """A slice's SOPInstanceUID, from its file meta when an anonymiser blanked it in the dataset ('' if neither)."""
    meta = getattr(dataset, "file_meta", None)
    return str(dataset.get("SOPInstanceUID") or (meta.get("MediaStorageSOPInstanceUID") if meta is not None else "")
               or "")


def _refuse_duplicates(groups: dict, what: str, folder: Path) -> None:
    """An :class:`ImageReadError` naming the files when two or more slices of a series share ``what``."""
    duplicated = [names for names in groups.values() if len(names) > 1]
    if duplicated:
        example = ", ".join(Path(name).name for name in duplicated[0][:3])
        raise ImageReadError(f"DICOM series in {folder} has {sum(len(n) for n in duplicated)} slices in "
                             f"{len(duplicated)} groups with {what} (for example {example}): the folder holds "
                             "copies of the same slices (copied twice?) or two series of one UID; keep one copy of "
                             "each slice")


def _check_unlisted_files(folder: Path, found: list[DicomSeries], chosen: DicomSeries) -> None:
    """GDCM leaves damaged files out of a series without a word; refuse the series when a file that GDCM did
    not list is a damaged DICOM file, or belongs to the chosen series."""
    import pydicom

    listed = {str(Path(file).resolve()) for series in found for file in series.files}
    for file in sorted(Path(folder).iterdir()):
        if not file.is_file() or str(file.resolve()) in listed:
            continue
        with open(file, "rb") as handle:
            looks_dicom = handle.read(132)[128:132] == b"DICM"
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types for damaged files
            if looks_dicom:
                raise ImageReadError(f"DICOM file {file} cannot be read ({type(exc).__name__}: {exc}); copy the series "
                                     "again") from exc
            continue
        if str(header.get("SeriesInstanceUID", "")) == chosen.series_uid:
            raise ImageReadError(f"DICOM slice {file} of the chosen series in {folder} is damaged (truncated?): the "
                                 "DICOM reader leaves it out; copy the series again")


def read_dicom_series(folder: Path, rule: SeriesRule | None = None) -> sitk.Image:
    """Read the chosen series of a DICOM folder as a SimpleITK image in HU (rescale applied), after
    :func:`check_dicom_slices`."""
    found = list_dicom_series(folder)
    chosen = choose_series(found, rule or SeriesRule(), folder)
    _check_unlisted_files(folder, found, chosen)
    check_dicom_slices(chosen.files, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen.files))
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(f"cannot read DICOM series {chosen.description!r} in {folder}: {exc}") from exc


#: NIfTI-1 header fields read by the file checks: (offset, numpy type).
_NIFTI1 = {"sizeof_hdr": (0, "i4"), "dim": (40, ("i2", 8)), "datatype": (70, "i2"), "bitpix": (72, "i2"),
           "vox_offset": (108, "f4")}
#: NIfTI-1 floating-point datatype codes and their numpy types.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


@dataclass(frozen=True)
class _NiftiLayout:
    data_start: int
    data_end: int
    float_type: np.dtype | None  # the voxels' type when they are floating point, else None


def _nifti1_layout(header: bytes) -> _NiftiLayout | None:
    """Where a NIfTI-1 file's voxels lie and whether they are floats; None if ``header`` is not NIfTI-1."""
    if len(header) < 348:
        return None
    for order in ("<", ">"):
        fields = {name: np.frombuffer(header, dtype=np.dtype((order + kind[0], kind[1])) if isinstance(kind, tuple)
                                      else np.dtype(order + kind), count=1, offset=offset)[0]
                  for name, (offset, kind) in _NIFTI1.items()}
        if int(fields["sizeof_hdr"]) == 348:
            dim = [int(d) for d in fields["dim"]]
            if not 1 <= dim[0] <= 7 or any(d < 0 for d in dim[1:dim[0] + 1]):
                return None
            voxels = int(np.prod(dim[1:dim[0] + 1], dtype=np.int64))
            start = int(fields["vox_offset"])
            kind = _NIFTI_FLOATS.get(int(fields["datatype"]))
            return _NiftiLayout(start, start + voxels * int(fields["bitpix"]) // 8,
                                np.dtype(order + kind) if kind else None)
    return None


class _NonFiniteCounter:
    """Counts NaN and infinite voxels in a NIfTI file's float data as its bytes stream past."""

    def __init__(self, layout: _NiftiLayout):
        self.layout = layout
        self.position = 0
        self.carry = b""
        self.count = 0

    def feed(self, block: bytes) -> None:
        """Count the non-finite values in the next ``block`` of the file's bytes."""
        start = max(0, self.layout.data_start - self.position)
        stop = max(0, min(len(block), self.layout.data_end - self.position))
        self.position += len(block)
        if start >= stop:
            return
        chunk = self.carry + block[start:stop]
        size = self.layout.float_type.itemsize
        usable = len(chunk) // size * size
        values = np.frombuffer(chunk[:usable], dtype=self.layout.float_type)
        self.count += int(values.size - np.count_nonzero(np.isfinite(values)))
        self.carry = chunk[usable:]


#: The most voxel data (bytes, as the header declares it) an image file may hold: 4 GiB, a 1024 x 1024 x 2048
#: int16 volume. A larger declaration is refused before any decompression or allocation.
MAX_IMAGE_BYTES = 4 * 2**30


def check_declared_size(path: Path, limit_bytes: int = MAX_IMAGE_BYTES) -> None:
    """Refuse an image file whose header declares more than ``limit_bytes`` of voxel data, from the header alone
    (SimpleITK's ``ReadImageInformation``: a gzip-compressed NIfTI is not unpacked past its header), so that a
    small file declaring a huge volume (a decompression bomb) never allocates it.

    Raises
    ------
    ImageReadError
        Naming the file, the declared size and the limit.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:  # an unreadable header: the reading itself says what is wrong (truncated, not an image)
        return
    size = reader.GetSize()
    voxels = int(np.prod(size, dtype=np.int64))
    bytes_per_voxel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    per_component = np.dtype(_SITK_COMPONENT_BYTES.get(reader.GetPixelIDValue(), "float64")).itemsize
    declared = voxels * per_component * max(1, reader.GetNumberOfComponents())
    if declared > limit_bytes:
        raise ImageReadError(f"image {path} declares {' x '.join(map(str, size))} voxels of {bytes_per_voxel} "
                             f"({declared / 2**30:.1f} GiB), more than the {limit_bytes / 2**30:.1f} GiB an image may "
                             "hold here; it is not read (a damaged header, or not a CT)")


_SITK_COMPONENT_BYTES = {sitk.sitkUInt8: "uint8", sitk.sitkInt8: "int8", sitk.sitkUInt16: "uint16",
                         sitk.sitkInt16: "int16", sitk.sitkUInt32: "uint32", sitk.sitkInt32: "int32",
                         sitk.sitkUInt64: "uint64", sitk.sitkInt64: "int64", sitk.sitkFloat32: "float32",
                         sitk.sitkFloat64: "float64"}


def check_image_file(path: Path) -> None:
    """Refuse a truncated, corrupt or non-finite image file before SimpleITK reads it.

    SimpleITK reads a truncated ``.nii.gz`` without complaint, filling the missing voxels with whatever memory
    held, and reads NaN voxels as 0. This check decompresses a gzip file to its end (the stream's CRC and
    length are verified); for a NIfTI-1 file it compares the bytes present with the header's dimensions and
    bits per voxel, and counts NaN and infinite values in floating-point data.

    Raises
    ------
    ImageReadError
        Naming the file and what is wrong.
    """
    import gzip
    import zlib

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz", ".gz")):
        return
    opener = gzip.open if name.endswith(".gz") else open
    size = 0
    header = b""
    layout = None
    counter = None
    try:
        with opener(path, "rb") as stream:
            while block := stream.read(1 << 22):
                if len(header) < 348:
                    header += block[:348 - len(header)]
                    if len(header) >= 348 and name.endswith((".nii", ".nii.gz")):
                        layout = _nifti1_layout(header)
                        counter = _NonFiniteCounter(layout) if layout and layout.float_type is not None else None
                if counter is not None:
                    counter.feed(block)
                size += len(block)
                if size > (layout.data_end if layout is not None else MAX_IMAGE_BYTES) + (1 << 24):
                    raise ImageReadError(f"image {path} holds more data than its header describes "
                                         f"({layout.data_end if layout else MAX_IMAGE_BYTES} bytes); it is not read")
    except (EOFError, OSError, zlib.error) as exc:
        raise ImageReadError(f"image {path} is truncated or corrupt: its gzip stream is broken ({exc}); "
                             "copy the file again") from exc
    if layout is not None and size < layout.data_end:
        raise ImageReadError(f"image {path} is truncated: its header describes {layout.data_end} bytes of data but "
                             f"the file holds {size}; copy the file again")
    if counter is not None and counter.count:
        raise ImageReadError(f"image {path} holds {counter.count} NaN or infinite voxels (SimpleITK would read them "
                             "as 0)")


def read_image(path: Path | str, rule: SeriesRule | None = None) -> sitk.Image:
    """Read a NIfTI/NRRD/MHA file or a DICOM series folder.

    Raises
    ------
    ImageReadError
        When the path is missing, unreadable or not an image.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"image not found: {path}")
    if path.is_dir():
        return read_dicom_series(path, rule)
    check_declared_size(path)
    verify_after = path.name.lower().endswith(".nii.gz")
    if not verify_after:
        check_image_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        if verify_after:
            check_image_file(path)  # names what is wrong with the file, where it can
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise ImageReadError(f"cannot read image {path}: {first_line}") from exc
    if verify_after and not gzip_nifti_read_intact(path, image):
        check_image_file(path)
    return image


def gzip_nifti_read_intact(path: Path, image: sitk.Image) -> bool:
    """Whether ``image``, as SimpleITK read it from the gzip-compressed NIfTI-1 file ``path``, holds exactly the
    file's bytes: the CRC-32 and length in the gzip stream's trailer equal those of the file's header bytes followed
    by the image's voxel buffer, and a floating-point image is finite.

    This proves the same as :func:`check_image_file` (the stream is whole, the voxels are those the file holds)
    without decompressing the file a second time. False where it cannot prove it: a truncated or corrupt file, but
    also data that SimpleITK converted (a scale slope, another voxel type or byte order), bytes after the voxels or
    several gzip members; the caller then runs :func:`check_image_file`, which names the problem if there is one.
    """
    import gzip
    import zlib

    with open(path, "rb") as raw:
        raw.seek(0, 2)
        if raw.tell() < 18:
            return False
        raw.seek(-8, 2)
        trailer = raw.read(8)
    expected_crc = int.from_bytes(trailer[:4], "little")
    expected_size = int.from_bytes(trailer[4:], "little")
    try:
        with gzip.open(path, "rb") as stream:
            header = stream.read(348)
            layout = _nifti1_layout(header)
            if layout is None or layout.data_start < 348:
                return False
            header += stream.read(layout.data_start - 348)
    except (EOFError, OSError, zlib.error):
        return False
    voxels = sitk.GetArrayViewFromImage(image)
    if (len(header) != layout.data_start or layout.data_end % (1 << 32) != expected_size
            or layout.data_start + voxels.nbytes != layout.data_end or not voxels.flags.c_contiguous):
        return False
    if zlib.crc32(memoryview(voxels).cast("B"), zlib.crc32(header)) != expected_crc:
        return False
    return voxels.dtype.kind != "f" or bool(np.isfinite(voxels).all())


def _numbers(values: np.ndarray, decimals: int) -> str:
    """``(0.7, 0.7, 5)``: plain numbers for messages (a tuple of numpy floats prints as ``np.float64(0.7)``)."""
    return "(" + ", ".join(f"{round(float(v), decimals):g}" for v in values) + ")"


def geometry_differences(
    image: sitk.Image, mask: sitk.Image, spacing_tol: float = 1e-4, origin_tol_mm: float = 1e-2
) -> list[str]:
    """Describe every way ``mask`` does not share ``image``'s grid; an empty list means they match.

    Spacing is compared relatively, origin in mm, direction cosines absolutely (1e-4), so the rounding
    of DICOM's decimal strings does not count as a mismatch.
    """
    problems = []
    if image.GetSize() != mask.GetSize():
        problems.append(f"size {mask.GetSize()} != image {image.GetSize()}")
    spacing_image, spacing_mask = np.array(image.GetSpacing()), np.array(mask.GetSpacing())
    if spacing_image.shape != spacing_mask.shape or not np.allclose(
        spacing_mask, spacing_image, rtol=spacing_tol, atol=0
    ):
        problems.append(f"spacing {_numbers(spacing_mask, 4)} != image {_numbers(spacing_image, 4)}")
    origin_image, origin_mask = np.array(image.GetOrigin()), np.array(mask.GetOrigin())
    if origin_image.shape != origin_mask.shape or np.abs(origin_mask - origin_image).max() > origin_tol_mm:
        problems.append(f"origin {_numbers(origin_mask, 3)} != image {_numbers(origin_image, 3)}")
    direction_image, direction_mask = np.array(image.GetDirection()), np.array(mask.GetDirection())
    if direction_image.shape != direction_mask.shape or np.abs(direction_mask - direction_image).max() > 1e-4:
        problems.append("direction cosines differ")
    return problems


def check_geometry(image: sitk.Image, mask: sitk.Image, what: str = "mask") -> None:
    """Raise :class:`GeometryMismatchError` naming every difference between image and mask grids."""
    problems = geometry_differences(image, mask)
    if problems:
        raise GeometryMismatchError(f"{what} does not match the CT geometry: " + "; ".join(problems))


def _is_reindexing(image: sitk.Image, mask: sitk.Image, tol: float = 1e-3) -> bool:
    """True when every voxel centre of ``image`` is a voxel centre of ``mask`` (same grid, other axis order)."""
    if sorted(image.GetSize()) != sorted(mask.GetSize()):
        return False
    size = image.GetSize()
    corners = [(0, 0, 0), (size[0] - 1, 0, 0), (0, size[1] - 1, 0), (0, 0, size[2] - 1),
               (size[0] - 1, size[1] - 1, size[2] - 1), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    for corner in corners:
        point = image.TransformIndexToPhysicalPoint(tuple(min(c, s - 1) for c, s in zip(corner, size, strict=True)))
        index = np.array(mask.TransformPhysicalPointToContinuousIndex(point))
        if np.abs(index - np.rint(index)).max() > tol:
            return False
        if (np.rint(index) < 0).any() or (np.rint(index) > np.array(mask.GetSize()) - 1).any():
            return False
    return True


def align_mask(image: sitk.Image, mask: sitk.Image, what: str = "mask") -> sitk.Image:
    """Return ``mask`` on ``image``'s grid.

    A mask stored with another axis order or orientation of the same voxel grid (a NIfTI written with a
    flipped y axis beside a DICOM series, say) is re-indexed exactly, by nearest-neighbour resampling
    whose sample points all fall on voxel centres. Any other difference is a
    :class:`GeometryMismatchError`.
    """
    problems = geometry_differences(image, mask)
    if not problems:
        return mask
    if _is_reindexing(image, mask):
        return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
    raise GeometryMismatchError(f"{what} does not match the CT geometry: " + "; ".join(problems))


#: A CT in HU has air at about -1000; an image whose lowest value lies above this is not a CT in HU.
HU_LOWEST_AT_MOST = -500.0
#: Values above this (HU) are unusual outside metal; a warning asks to check the rescale.
HU_HIGHEST_WARNING = 4000.0


def ct_intensity_problems(values: np.ndarray, path: Path | str) -> tuple[list[str], list[str]]:
    """(errors, warnings) about a CT's voxel values, by the rules in docs/manifest.md ("Image checks").

    Errors: NaN or infinite voxels; no voxel below :data:`HU_LOWEST_AT_MOST` (an image without its rescale to HU,
    or not a CT). Warning: voxels above :data:`HU_HIGHEST_WARNING`.

    Parameters
    ----------
    values
        The CT's voxels (z, y, x), any numeric type.
    """
    errors, warnings = [], []
    if np.issubdtype(values.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            errors.append(f"CT {path} has {bad} NaN or infinite voxels of {values.size}")
            return errors, warnings
    lowest, highest = float(values.min()), float(values.max())
    if lowest > HU_LOWEST_AT_MOST:
        errors.append(f"CT {path} is not in HU: its lowest value is {lowest:g}, but a CT in HU has air at about "
                      f"-1000 (below {HU_LOWEST_AT_MOST:g}); is the rescale slope/intercept missing?")
    elif highest > HU_HIGHEST_WARNING:
        warnings.append(f"CT {path} reaches {highest:g} HU, above {HU_HIGHEST_WARNING:g}: metal, or a wrong "
                        "rescale; check the image")
    warnings += clipped_intensity_warnings(values, path)
    return errors, warnings


#: Ceilings of clipped CT exports (HU): 10-, 12- and 12-bit-unsigned ranges (1023 = 2^10 - 1, 3071 = 4095 - 1024).
CLIP_CEILINGS_HU = (1023.0, 3071.0, 4095.0)
#: A pile at the ceiling above this share of the body's voxels (above -500 HU) is a clipping spike.
CLIP_BODY_SHARE = 0.001
#: ... as is one at least this many times the median count of the 50 values below the ceiling (and >= 100 voxels).
CLIP_SPIKE_RATIO = 20.0


def clipped_intensity_warnings(values: np.ndarray, path: Path | str) -> list[str]:
    """A warning when the CT's maximum is a clipping ceiling (:data:`CLIP_CEILINGS_HU`) with a spike of voxels on
    it: more than :data:`CLIP_BODY_SHARE` of the body's voxels, or :data:`CLIP_SPIKE_RATIO` times the values just
    below (see docs/manifest.md, "Image checks")."""
    highest = float(values.max())
    if highest not in CLIP_CEILINGS_HU:
        return []
    at_ceiling = int(np.count_nonzero(values == highest))
    body = int(np.count_nonzero(values > HU_LOWEST_AT_MOST))
    near = values[(values >= highest - 50) & (values < highest)]
    counts = np.bincount(np.rint(near - (highest - 50)).astype(np.int64), minlength=50) if near.size else np.zeros(50)
    below = float(np.median(counts))
    share = at_ceiling / max(1, body)
    if share > CLIP_BODY_SHARE or (at_ceiling >= 100 and at_ceiling >= CLIP_SPIKE_RATIO * max(below, 1.0)):
        return [f"CT {path}: {at_ceiling} voxels ({share:.3%} of the body) sit at exactly {highest:g} HU, its maximum, "
                f"against a median of {below:.0f} per HU just below: a clipped export; bone and contrast above "
                f"{highest:g} HU are lost and the maximum-based features are biased; export the full range if you can"]
    return []


#: Voxels counted at a time by :func:`value_counts` (its temporary index array is 8 bytes per voxel).
VALUE_COUNT_CHUNK_VOXELS = 1 << 19


def value_counts(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``array`` and how many voxels hold each, as ``np.unique(array, return_counts=True)``.

    A boolean or an 8- or 16-bit integer array (a mask) is counted with ``np.bincount`` a chunk of
    :data:`VALUE_COUNT_CHUNK_VOXELS` at a time, several times faster than sorting or hashing it (0.19 s for a
    512 x 512 x 150 uint8 label map), with at most 4 MB of temporary memory; other types go to ``np.unique``.
    The chunks stay small because glibc raises its mmap threshold to the size of a freed mapped block and keeps
    that much more freed memory afterwards (16 MB chunks left 23 MB more resident once a small DICOM case's
    features were done, bench/memory_bench.py --phases).
    """
    if not (array.dtype == np.bool_ or (array.dtype.kind in "iu" and array.dtype.itemsize <= 2)):
        return np.unique(array, return_counts=True)
    offset = int(np.iinfo(array.dtype).min) if array.dtype.kind == "i" else 0
    flat = array.reshape(-1)
    counts = np.zeros(1 << (8 * array.dtype.itemsize), dtype=np.int64)
    for start in range(0, flat.size, VALUE_COUNT_CHUNK_VOXELS):
        chunk = flat[start:start + VALUE_COUNT_CHUNK_VOXELS].astype(np.intp)
        if offset:
            chunk -= offset
        part = np.bincount(chunk)
        counts[:part.size] += part
    present = np.flatnonzero(counts)
    return (present + offset).astype(array.dtype), counts[present]


#: The labels of an hccrad mask: background, liver, tumor, portal vein.
HCCRAD_LABELS = (0, 1, 2, 3)


def read_mask(path: Path | str, image: sitk.Image, allowed_labels: tuple[int, ...] | None = HCCRAD_LABELS
              ) -> sitk.Image:
    """Read a label mask onto ``image``'s grid (see :func:`align_mask`) as UInt8 labels.

    Parameters
    ----------
    allowed_labels
        The label values the mask may hold (hccrad's 0-3 by default); ``None`` accepts any of 0-255 (a
        TotalSegmentator output, for instance).

    Raises
    ------
    ImageReadError
        When the mask holds non-integer values, or labels outside ``allowed_labels`` (with their voxel counts):
        a tumor partly labelled 7 would otherwise lose those voxels without a word.
    """
    mask = align_mask(image, read_image(path), what=f"mask {Path(path).name}")
    array = sitk.GetArrayViewFromImage(mask)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.equal(np.mod(array, 1), 0)):
        raise ImageReadError(f"mask {path} holds non-integer values; expected labels "
                             f"{', '.join(map(str, allowed_labels or range(256)))}")
    labels, counts = value_counts(array)
    allowed = set(allowed_labels) if allowed_labels is not None else set(range(256))
    unexpected = [(int(label), int(count)) for label, count in zip(labels, counts, strict=True)
                  if int(label) not in allowed]
    if unexpected:
        listing = ", ".join(f"{label} ({count} voxels)" for label, count in unexpected[:10])
        expected = ("0 background, 1 liver, 2 tumor, 3 portal vein" if allowed_labels == HCCRAD_LABELS
                    else "0-255" if allowed_labels is None else ", ".join(map(str, allowed_labels)))
        raise ImageReadError(f"mask {path} holds unexpected labels {listing}; expected {expected}")
    mask = sitk.Cast(mask, sitk.sitkUInt8)
    mask.CopyInformation(image)
    return mask


def write_image_atomic(image: sitk.Image, path: Path) -> None:
    """Write an image (compressed) through a temporary file in the same folder, then rename it into place."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix="".join(path.suffixes), dir=path.parent)
    os.close(handle)
    try:
        sitk.WriteImage(image, temporary, useCompression=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_labels_like(labels: np.ndarray, reference: sitk.Image, path: Path) -> Path:
    """Write a (z, y, x) label array on ``reference``'s grid as UInt8, atomically."""
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.CopyInformation(reference)
    write_image_atomic(image, Path(path))
    return Path(path)


def spacing_zyx(image: sitk.Image) -> tuple[float, float, float]:
    """The image's voxel spacing in mm, in the (z, y, x) order of its arrays (SimpleITK gives x, y, z)."""
    return tuple(float(s) for s in image.GetSpacing()[::-1])


def array_with_spacing(image: sitk.Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The voxel array in (z, y, x) order with the spacing in the same order, in mm."""
    return sitk.GetArrayFromImage(image), spacing_zyx(image)
