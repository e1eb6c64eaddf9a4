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

    @property
    def n_slices(self) -> int:
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
        except (pydicom.errors.InvalidDicomError, OSError):
            description, modality = "", ""
        series.append(DicomSeries(uid, description, files, modality))
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
            return max(matches, key=lambda s: s.n_slices)
    if rule.require_match:
        raise ImageReadError(f"no DICOM series{where} matches {rule.prefer} ({listing})")
    return max(kept, key=lambda s: s.n_slices)


def read_dicom_series(folder: Path, rule: SeriesRule | None = None) -> sitk.Image:
    """Read the chosen series of a DICOM folder as a SimpleITK image in HU (rescale applied)."""
    chosen = choose_series(list_dicom_series(folder), rule or SeriesRule(), folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen.files))
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(f"cannot read DICOM series {chosen.description!r} in {folder}: {exc}") from exc


#: NIfTI-1 header fields used to check a file's length: (offset, numpy type) of sizeof_hdr, dim, bitpix, vox_offset.
_NIFTI1 = {"sizeof_hdr": (0, "i4"), "dim": (40, ("i2", 8)), "bitpix": (72, "i2"), "vox_offset": (108, "f4")}


def _nifti1_data_end(header: bytes) -> int | None:
    """The byte count a NIfTI-1 file must hold (header, extensions and voxels), or None if not NIfTI-1."""
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
            return int(fields["vox_offset"]) + voxels * int(fields["bitpix"]) // 8
    return None


def check_image_file(path: Path) -> None:
    """Refuse a truncated or corrupt image file before SimpleITK reads it.

    SimpleITK reads a truncated ``.nii.gz`` without complaint and fills the missing voxels with whatever memory
    held. This check decompresses a gzip file to its end (the stream's CRC and length are verified), and for a
    NIfTI-1 file compares the bytes present with the header's dimensions and bits per voxel.

    Raises
    ------
    ImageReadError
        Naming the file and what is wrong.
    """
    import gzip
    import zlib

    name = path.name.lower()
    if name.endswith(".gz"):
        size = 0
        header = b""
        try:
            with gzip.open(path, "rb") as stream:
                while block := stream.read(1 << 22):
                    if len(header) < 348:
                        header += block[:348]
                    size += len(block)
        except (EOFError, OSError, zlib.error) as exc:
            raise ImageReadError(f"image {path} is truncated or corrupt: its gzip stream is broken ({exc}); "
                                 "copy the file again") from exc
    elif name.endswith(".nii"):
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(348)
    else:
        return
    if name.endswith((".nii", ".nii.gz")):
        expected = _nifti1_data_end(header)
        if expected is not None and size < expected:
            raise ImageReadError(f"image {path} is truncated: its header describes {expected} bytes of data but "
                                 f"the file holds {size}; copy the file again")


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
    check_image_file(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise ImageReadError(f"cannot read image {path}: {first_line}") from exc


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
        problems.append(f"spacing {tuple(np.round(spacing_mask, 4))} != image {tuple(np.round(spacing_image, 4))}")
    origin_image, origin_mask = np.array(image.GetOrigin()), np.array(mask.GetOrigin())
    if origin_image.shape != origin_mask.shape or np.abs(origin_mask - origin_image).max() > origin_tol_mm:
        problems.append(f"origin {tuple(np.round(origin_mask, 3))} != image {tuple(np.round(origin_image, 3))}")
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
    return errors, warnings


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
    labels, counts = np.unique(array, return_counts=True)
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


def array_with_spacing(image: sitk.Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The voxel array in (z, y, x) order with the spacing in the same order, in mm."""
    spacing_xyz = image.GetSpacing()
    return sitk.GetArrayFromImage(image), (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])
