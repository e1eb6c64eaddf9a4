"""Writing synthetic CTs as NIfTI files or as real DICOM series (pydicom) with acquisition tags."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from hccrad.synth.anatomy import Grid
from hccrad.synth.centers import ScannerProfile


def to_sitk(array: np.ndarray, grid: Grid) -> sitk.Image:
    """A (z, y, x) array on ``grid`` as a SimpleITK image with identity direction (LPS)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((grid.spacing[2], grid.spacing[1], grid.spacing[0]))
    image.SetOrigin(grid.origin)
    return image


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(part) for part in parts])


def write_dicom_series(array: np.ndarray, grid: Grid, folder: Path, profile: ScannerProfile, patient_id: str,
                       series_description: str = "Abdomen venous phase", series_number: int = 3) -> None:
    """Write a (z, y, x) int16 HU array as one CT Image Storage file per slice, with real acquisition tags.

    UIDs derive from the patient id and the series description, so the same cohort seed writes the same
    files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = _uid("study", patient_id)
    series_uid = _uid("series", patient_id, series_description)
    frame_uid = _uid("frame", patient_id)
    nz, ny, nx = array.shape
    sz, sy, sx = grid.spacing
    for index in range(nz):
        sop_uid = _uid("sop", patient_id, series_description, index)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientID = patient_id
        ds.PatientName = f"SYNTHETIC^{patient_id}"
        ds.StudyDate = "20240101"
        ds.SeriesDescription = f"{series_description} {profile.slice_thickness_mm:g} mm"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = index + 1
        ds.Manufacturer = profile.manufacturer
        ds.ManufacturerModelName = profile.model
        ds.InstitutionName = f"Synthetic center {profile.center}"
        ds.KVP = f"{profile.kvp:g}"
        ds.XRayTubeCurrent = int(profile.tube_current_ma)
        ds.RevolutionTime = profile.rotation_time_s
        ds.SingleCollimationWidth = profile.detector_width_mm
        ds.TotalCollimationWidth = profile.detector_width_mm * profile.n_detector_rows
        ds.ReconstructionDiameter = f"{profile.fov_mm:g}"
        ds.ConvolutionKernel = profile.kernel
        ds.SliceThickness = f"{profile.slice_thickness_mm:g}"
        ds.ContrastBolusAgent = "Iodinated contrast, portal venous phase"
        ds.ImagePositionPatient = [f"{grid.origin[0]:.6g}", f"{grid.origin[1]:.6g}",
                                   f"{grid.origin[2] + index * sz:.6g}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [f"{sy:.10g}", f"{sx:.10g}"]
        ds.SliceLocation = f"{grid.origin[2] + index * sz:.6g}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(array[index], dtype=np.int16).tobytes()
        name = f"S{series_number:03d}-IM{index + 1:04d}.dcm"
        target, temporary = folder / name, folder / f".tmp-{name}"
        ds.save_as(temporary, enforce_file_format=True)
        os.replace(temporary, target)
