"""Uploads of the web app: size-limited writes, safe unzipping of DICOM series, and clear messages.

Every problem is an :class:`UploadError` whose message is shown on the page as it is.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from hccrad.io.errors import InputError

#: A zip may expand to at most this multiple of the upload limit, and no entry may compress better than
#: :data:`MAX_COMPRESSION_RATIO` (CT slices compress 2-5x; a zip bomb, a thousand times).
MAX_EXPANSION = 4
MAX_COMPRESSION_RATIO = 100
MAX_ZIP_ENTRIES = 5000
CHUNK = 1 << 20


class UploadError(InputError, ValueError):
    """An upload the app refuses: too large, an unsafe or malformed zip, an unexpected file type."""


def save_limited(stream: BinaryIO, target: Path, limit_bytes: int, what: str) -> int:
    """Copy ``stream`` to ``target`` in chunks, refusing (and deleting) anything over ``limit_bytes``."""
    written = 0
    with open(target, "wb") as handle:
        while chunk := stream.read(CHUNK):
            written += len(chunk)
            if written > limit_bytes:
                handle.close()
                target.unlink(missing_ok=True)
                raise UploadError(f"{what} is larger than the upload limit of {limit_bytes / 2**20:.0f} MB")
            handle.write(chunk)
    if written == 0:
        target.unlink(missing_ok=True)
        raise UploadError(f"{what} is empty")
    return written


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise UploadError(f"the zip holds an unsafe path {name!r} (absolute or with '..'); it was not extracted")
    return path


@dataclass(frozen=True)
class SeriesChoice:
    """The DICOM series a zip upload was read as: its folder, description, number of slices and instance UID."""
    folder: Path
    description: str
    slices: int
    uid: str

    def describe(self) -> str:
        return f"'{self.description or 'no description'}', {self.slices} slices, UID ...{self.uid[-12:]}"


def _series_of(files: list[Path]) -> dict[str, tuple[str, list[Path]]]:
    """The DICOM files among ``files`` grouped by SeriesInstanceUID: uid -> (description, files)."""
    import pydicom

    groups: dict[str, tuple[str, list[Path]]] = {}
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:  # not a DICOM file (a readme, an index): not a slice of any series
            continue
        uid = str(header.get("SeriesInstanceUID", "") or "")
        if not uid:  # no series: not an image slice (a DICOMDIR, a report)
            continue
        description = str(header.get("SeriesDescription", "") or "")
        groups.setdefault(uid, (description, []))[1].append(path)
    return groups


def extract_zip(archive: Path, folder: Path, limit_bytes: int, series: str | None = None) -> Path:
    """Extract a zipped DICOM series into ``folder`` after checking every entry, keeping the zip's folders, and
    return the folder of its one series (:func:`extract_series` says which it was).

    Refused: not a zip; more than :data:`MAX_ZIP_ENTRIES` entries; absolute paths, ``..`` or drive letters;
    symbolic links; a total size over ``MAX_EXPANSION x limit_bytes``; an entry compressed more than
    :data:`MAX_COMPRESSION_RATIO` times (a zip bomb); several series, listed, unless ``series`` names one (the end
    of its SeriesInstanceUID). Sizes are checked again while extracting, since a zip's declared sizes can lie.
    """
    return extract_series(archive, folder, limit_bytes, series).folder


def extract_series(archive: Path, folder: Path, limit_bytes: int, series: str | None = None) -> SeriesChoice:
    """:func:`extract_zip`, with the series chosen: its folder, description, slices and UID."""
    if not zipfile.is_zipfile(archive):
        raise UploadError("the CT upload is neither a NIfTI file nor a zip of a DICOM series")
    files_dir = folder / "files"
    with zipfile.ZipFile(archive) as bundle:
        entries = [e for e in bundle.infolist() if not e.is_dir()]
        if len(entries) > MAX_ZIP_ENTRIES:
            raise UploadError(f"the zip holds {len(entries)} files; at most {MAX_ZIP_ENTRIES} are accepted")
        budget = MAX_EXPANSION * limit_bytes
        if sum(e.file_size for e in entries) > budget:
            raise UploadError(f"the zip expands to more than {budget / 2**20:.0f} MB; refused")
        for entry in entries:
            _safe_member(entry.filename)
            if (entry.external_attr >> 16) & 0o170000 == 0o120000:
                raise UploadError(f"the zip holds a symbolic link {entry.filename!r}; refused")
            if entry.compress_size and entry.file_size / entry.compress_size > MAX_COMPRESSION_RATIO:
                raise UploadError(f"{entry.filename!r} is compressed {entry.file_size // entry.compress_size}x: "
                                  "a zip bomb is refused")
        written: list[Path] = []
        total = 0
        for index, entry in enumerate(entries):
            member = _safe_member(entry.filename)
            target = files_dir.joinpath(*member.parts[:-1], f"{index:05d}_{member.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with bundle.open(entry) as source, open(target, "wb") as handle:
                    while chunk := source.read(CHUNK):
                        total += len(chunk)
                        if total > budget:
                            raise UploadError(f"the zip expands to more than {budget / 2**20:.0f} MB; refused")
                        handle.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:  # bad CRC, truncated
                raise UploadError(f"the zip is damaged: {entry.filename!r} cannot be extracted ({exc}); zip the "
                                  "series again") from exc
            written.append(target)
    if not written:
        raise UploadError("the zip is empty")
    groups = _series_of(written)
    if not groups:
        raise UploadError("the zip holds no DICOM file")
    if series:
        chosen = [uid for uid in groups if uid.endswith(series.strip())]
        if len(chosen) != 1:
            listing = "; ".join(SeriesChoice(folder, d, len(f), u).describe() for u, (d, f) in groups.items())
            raise UploadError(f"the series {series!r} does not name exactly one of the zip's series: {listing}")
        uid = chosen[0]
    elif len(groups) > 1:
        listing = "; ".join(SeriesChoice(folder, d, len(f), u).describe()
                            for u, (d, f) in sorted(groups.items(), key=lambda item: -len(item[1][1])))
        raise UploadError(f"the zip holds {len(groups)} DICOM series ({listing}); upload the venous-phase series "
                          "alone, or give the end of its UID in the form's 'series' field")
    else:
        uid = next(iter(groups))
    description, files = groups[uid]
    series_dir = folder / "series"
    series_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        path.rename(series_dir / path.name)
    return SeriesChoice(series_dir, description, len(files), uid)


def image_suffix(filename: str) -> str:
    """The upload's image type from its name: ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha`` or ``.zip``."""
    name = (filename or "").lower()
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".zip"):
        if name.endswith(suffix):
            return suffix
    raise UploadError(f"{filename or 'the file'}: expected a NIfTI (.nii, .nii.gz), NRRD or MHA image, or a .zip of "
                      "a DICOM series")
