"""Masks as DICOM Segmentation objects (highdicom), referencing the source CT series, for PACS, OHIF and 3D Slicer.

The liver (1), tumor (2) and portal vein (3) labels become three segments of a binary DICOM SEG whose frames are
aligned one to one with the CT's slices (each frame references its slice's SOP Instance UID). A CT given as NIfTI
has no DICOM identity to reference: :func:`export_mask` then writes NIfTI and says why.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hccrad.io.errors import InputError
from hccrad.io.files import write_atomic

#: hccrad's labels as DICOM segments: (label, label text, category, type), SNOMED CT codes.
SEGMENTS = (
    (1, "Liver", ("85756007", "Tissue"), ("10200004", "Liver")),
    (2, "Tumor", ("49755003", "Morphologically Abnormal Structure"), ("108369006", "Neoplasm")),
    (3, "Portal vein", ("91723000", "Anatomical Structure"), ("32764006", "Portal vein")),
)


#: Patient and study attributes of DICOM type 2 that a SEG copies from its source; absent ones are set empty.
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")


class DicomSegError(InputError, ValueError):
    """The mask cannot be written as a DICOM SEG of this CT (another grid, unreadable series)."""


@dataclass
class ExportResult:
    """What :func:`export_mask` wrote and, for NIfTI, why not DICOM SEG."""
    path: Path
    format: str  # "dicom-seg" or "nifti"
    note: str = ""


def _repair_identity(dataset) -> None:
    """Fill, in memory only (the CT is never rewritten), what some writers leave out of a slice: blank SOP Class
    and Instance UIDs from the file meta, absent type-2 patient and study attributes as empty, and an empty
    SpecificCharacterSet removed (the default repertoire, which is what absent means)."""
    meta = getattr(dataset, "file_meta", None)
    if not dataset.get("SOPClassUID") and meta is not None and meta.get("MediaStorageSOPClassUID"):
        dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    if not dataset.get("SOPInstanceUID") and meta is not None and meta.get("MediaStorageSOPInstanceUID"):
        dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
        del dataset.SpecificCharacterSet


def _derive_frame_of_reference(series_uid: str, datasets: list) -> None:
    """Give the slices of a series without FrameOfReferenceUID (in memory) one derived from the series UID, or from
    its slices' instance UIDs when that is blank too: the same for every slice and every export of the series. A SEG
    must name a frame of reference; viewers place it by the slices it references."""
    from pydicom.uid import generate_uid

    if all(dataset.get("FrameOfReferenceUID") for dataset in datasets):
        return
    sources = [series_uid] if series_uid else sorted(str(dataset.get("SOPInstanceUID", "")) for dataset in datasets)
    derived = generate_uid(entropy_srcs=["hccrad frame of reference", *sources])
    for dataset in datasets:
        if not dataset.get("FrameOfReferenceUID"):
            dataset.FrameOfReferenceUID = derived


def _slices_by_index(datasets: list, image: sitk.Image) -> dict[int, list]:
    """The datasets whose position and matrix fall on each slice of ``image``, by slice index."""
    normal = np.array(image.GetDirection()).reshape(3, 3)[:, 2]
    origin = np.array(image.GetOrigin())
    columns, rows, slices = image.GetSize()
    by_index: dict[int, list] = {}
    for dataset in datasets:
        offset = float((np.array(dataset.ImagePositionPatient, float) - origin) @ normal) / image.GetSpacing()[2]
        index = int(round(offset))
        if (abs(offset - index) < 0.01 and 0 <= index < slices and int(dataset.get("Rows", 0)) == rows
                and int(dataset.get("Columns", 0)) == columns):
            by_index.setdefault(index, []).append(dataset)
    return by_index


def _series_datasets(folder: Path, image: sitk.Image) -> list:
    """The CT's DICOM datasets in the order of the image's slices (by position along the slice normal).

    The slices come from one series: the one whose slices fall exactly once on every slice of ``image``. A
    folder where no series does, or where several do, is refused naming them, rather than mixing series.
    """
    import pydicom

    series: dict[str, list] = {}
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        try:
            dataset = pydicom.dcmread(path)
        except Exception:  # not a DICOM file (a README, a thumbnail)
            continue
        if "ImagePositionPatient" in dataset and "PixelData" in dataset:
            _repair_identity(dataset)
            series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append(dataset)
    if not series:
        raise DicomSegError(f"{folder}: no DICOM image slices found")
    for uid, datasets in series.items():
        _derive_frame_of_reference(uid, datasets)
    slices = image.GetSize()[2]
    matching = {}
    for uid, datasets in series.items():
        by_index = _slices_by_index(datasets, image)
        if len(by_index) == slices and all(len(found) == 1 for found in by_index.values()):
            matching[uid] = [by_index[k][0] for k in range(slices)]
    if len(matching) == 1:
        return next(iter(matching.values()))
    if not matching:
        raise DicomSegError(f"{folder}: no DICOM series has exactly one slice at each of the CT's {slices} slice "
                            "positions; the mask must be on the grid of the series read from this folder")
    raise DicomSegError(f"{folder}: several DICOM series fit the CT's grid ({', '.join(sorted(matching))}); put "
                        "the CT's series in a folder of its own")


def mask_to_dicom_seg(mask: sitk.Image, ct_folder: Path, image: sitk.Image, algorithm: str | None = None,
                      series_description: str = "hccrad liver, tumor, portal vein"):
    """A highdicom Segmentation of ``mask`` (labels 1-3, on ``image``'s grid) referencing ``ct_folder``'s series.

    Parameters
    ----------
    mask
        Label image on the CT's grid (size, origin, spacing and direction equal to ``image``'s).
    ct_folder
        The DICOM series folder ``image`` was read from.
    algorithm
        Name of the model that drew the mask (segments typed AUTOMATIC), or None for a manual mask.
    """
    import highdicom as hd
    from pydicom.sr.coding import Code

    from hccrad import __version__

    same_grid = (mask.GetSize() == image.GetSize() and np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-3)
                 and np.allclose(mask.GetSpacing(), image.GetSpacing(), rtol=1e-5)
                 and np.allclose(mask.GetDirection(), image.GetDirection(), atol=1e-5))
    if not same_grid:
        raise DicomSegError("the mask is not on the CT's grid (size, origin, spacing or direction differ)")
    datasets = _series_datasets(ct_folder, image)
    labels = sitk.GetArrayFromImage(mask).astype(np.uint8)  # (slices, rows, columns), the datasets' order
    algorithm_id = (hd.AlgorithmIdentificationSequence(name=algorithm, version=__version__,
                                                       family=Code("123109", "DCM", "Artificial Intelligence"))
                    if algorithm else None)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=label, segment_label=text,
            segmented_property_category=Code(category[0], "SCT", category[1]),
            segmented_property_type=Code(kind[0], "SCT", kind[1]),
            algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if algorithm
                            else hd.seg.SegmentAlgorithmTypeValues.MANUAL),
            algorithm_identification=algorithm_id)
        for label, text, category, kind in SEGMENTS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's notes on the source's patient-name format
        try:
            return _segmentation(hd, datasets, labels, descriptions, __version__, series_description)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise DicomSegError(f"{ct_folder}: its DICOM slices cannot be referenced by a DICOM SEG "
                                f"({type(exc).__name__}: {exc})") from exc


def _segmentation(hd, datasets, labels, descriptions, version: str, series_description: str):
    """highdicom's binary Segmentation of ``labels`` over ``datasets`` (a new series, number 9001)."""
    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9001,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="hccrad",
        manufacturer_model_name="hccrad", software_versions=version, device_serial_number="none",
        series_description=series_description, omit_empty_frames=False)


def export_mask(ct: Path, mask, out_path: Path, algorithm: str | None = None, series_rule=None
                ) -> ExportResult:
    """Write ``mask`` (a path of an hccrad label map, or a :class:`~hccrad.io.mask_sources.MaskSource`) as a DICOM
    SEG referencing ``ct`` when ``ct`` is a DICOM folder (``out_path`` with ``.dcm``), else as NIfTI (``.nii.gz``),
    saying why. Written atomically."""
    from hccrad.io.case import CTCase
    from hccrad.io.images import write_labels_like

    ct, out_path = Path(ct), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not ct.is_dir():
        target = out_path.with_name(out_path.name.split(".")[0] + ".nii.gz")
        case = CTCase.read(ct, mask, series_rule)
        write_labels_like(case.labels, case.image, target)
        return ExportResult(target, "nifti", f"{ct} is not a DICOM series: a DICOM SEG must reference the CT's "
                                             "DICOM instances, so the mask is written as NIfTI")
    case = CTCase.read(ct, mask, series_rule)
    image = case.image
    labels = sitk.GetImageFromArray(case.labels)
    labels.CopyInformation(image)
    segmentation = mask_to_dicom_seg(labels, ct, image, algorithm)
    import io

    buffer = io.BytesIO()
    segmentation.save_as(buffer)
    target = out_path.with_name(out_path.name.split(".")[0] + ".dcm")
    write_atomic(target, buffer.getvalue())
    missing = [name for name in ("StudyInstanceUID", "SeriesInstanceUID") if not segmentation.get(name)
               or (name == "SeriesInstanceUID" and not _source_series_uid(segmentation))]
    note = (f"the source CT lacks {' and '.join(missing)} (anonymised?): the SEG references its instances, but a "
            "PACS cannot file it with its study" if missing else "")
    if not _ct_frame_of_reference(ct, series_rule):
        note = "; ".join(filter(None, [note, f"the CT has no FrameOfReferenceUID: the SEG carries one derived from the "
                                             f"CT's series UID ({segmentation.FrameOfReferenceUID}) and references "
                                             "each CT slice by its SOP Instance UID, by which viewers place it"]))
    return ExportResult(target, "dicom-seg", note)


def _ct_frame_of_reference(ct: Path, series_rule) -> str:
    """The FrameOfReferenceUID of the CT's first slice ('' when it has none)."""
    import pydicom

    from hccrad.io.config import SeriesRule
    from hccrad.io.images import choose_series, list_dicom_series

    chosen = choose_series(list_dicom_series(Path(ct)), series_rule or SeriesRule(), Path(ct))
    return str(pydicom.dcmread(chosen.files[0], stop_before_pixels=True).get("FrameOfReferenceUID", ""))


def _source_series_uid(segmentation) -> str:
    references = segmentation.get("ReferencedSeriesSequence") or []
    return str(references[0].get("SeriesInstanceUID", "")) if len(references) else ""
