"""CT acquisition parameters from DICOM headers, per patient and summarised per center.

This is the paper's Supplementary Table 1: scanner, tube voltage and current, rotation time, detector
collimation, field of view, pixel matrix, reconstruction kernel and slice thickness. NIfTI/NRRD cases
carry no such header: only the matrix, the slice thickness (z spacing) and the field of view (spacing x
size) are known, and the rest is left empty, marked by ``source = "image header"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom

from hccrad.io.config import SeriesRule
from hccrad.io.images import choose_series, list_dicom_series, read_image

ACQUISITION_COLUMNS = [
    "patient_id",
    "center",
    "source",
    "manufacturer",
    "model",
    "kvp",
    "tube_current_ma",
    "rotation_time_s",
    "collimation",
    "fov_mm",
    "matrix",
    "kernel",
    "slice_thickness_mm",
    "n_slices",
]


def _number(header: pydicom.Dataset, keyword: str) -> float | None:
    value = header.get(keyword)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _collimation(header: pydicom.Dataset) -> str | None:
    """Detector collimation as 'N x width' (e.g. '64x0.625') from the total and single widths."""
    total = _number(header, "TotalCollimationWidth")
    single = _number(header, "SingleCollimationWidth")
    if total and single:
        return f"{round(total / single)}x{single:g}"
    return None


def _kernel(header: pydicom.Dataset) -> str | None:
    kernel = header.get("ConvolutionKernel")
    if kernel is None:
        return None
    if isinstance(kernel, pydicom.multival.MultiValue):
        return "\\".join(str(k) for k in kernel)
    return str(kernel)


def dicom_acquisition(folder: Path, rule: SeriesRule | None = None) -> dict[str, Any]:
    """Acquisition parameters of the series that :func:`read_image` would choose in ``folder``."""
    chosen = choose_series(list_dicom_series(folder), rule or SeriesRule(), folder)
    header = pydicom.dcmread(chosen.files[0], stop_before_pixels=True)
    fov = _number(header, "ReconstructionDiameter")
    if fov is None and "PixelSpacing" in header and "Columns" in header:
        fov = float(header.PixelSpacing[1]) * int(header.Columns)
    manufacturer = header.get("Manufacturer")
    rotation = _number(header, "RevolutionTime")
    if rotation is None:
        exposure_ms = _number(header, "ExposureTime")
        rotation = exposure_ms / 1000.0 if exposure_ms else None
    return {
        "source": "dicom",
        "manufacturer": str(manufacturer) if manufacturer else None,
        "model": str(header.get("ManufacturerModelName")) if header.get("ManufacturerModelName") else None,
        "kvp": _number(header, "KVP"),
        "tube_current_ma": _number(header, "XRayTubeCurrent"),
        "rotation_time_s": rotation,
        "collimation": _collimation(header),
        "fov_mm": fov,
        "matrix": f"{header.Rows}x{header.Columns}" if "Rows" in header else None,
        "kernel": _kernel(header),
        "slice_thickness_mm": _number(header, "SliceThickness"),
        "n_slices": chosen.n_slices,
    }


def image_acquisition(path: Path) -> dict[str, Any]:
    """What a NIfTI/NRRD header tells of the acquisition: matrix, z spacing and field of view."""
    image = read_image(path)
    size, spacing = image.GetSize(), image.GetSpacing()
    return {
        "source": "image header",
        "fov_mm": round(spacing[0] * size[0], 1),
        "matrix": f"{size[1]}x{size[0]}",
        "slice_thickness_mm": round(spacing[2], 3),
        "n_slices": size[2],
    }


def acquisition_table(patients: list, rule: SeriesRule | None = None) -> pd.DataFrame:
    """One row of acquisition parameters per patient with a CT (``PatientRecord`` objects).

    A CT whose header cannot be read gets a row with ``source = "error: ..."`` rather than vanishing.
    """
    rows = []
    for record in patients:
        if record.ct is None:
            continue
        row: dict[str, Any] = {"patient_id": record.patient_id, "center": record.center}
        try:
            if Path(record.ct).is_dir():
                row.update(dicom_acquisition(Path(record.ct), rule))
            else:
                row.update(image_acquisition(Path(record.ct)))
        except Exception as exc:  # a bad header must not hide the other patients
            row["source"] = f"error: {exc}"
        rows.append(row)
    return pd.DataFrame(rows, columns=ACQUISITION_COLUMNS)


def _most_common(values: pd.Series) -> Any:
    values = values.dropna()
    if values.empty:
        return None
    return values.astype(str).value_counts().index[0]


def _range_text(values: pd.Series, digits: int = 2) -> str | None:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty:
        return None
    low, high = numbers.min(), numbers.max()
    if np.isclose(low, high):
        return f"{round(low, digits):g}"
    return f"{round(low, digits):g}-{round(high, digits):g}"


def center_acquisition_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per-center summary in the layout of the paper's Supplementary Table 1.

    Text fields give the most common value; numbers give the value or the range seen in the center.
    """
    rows = []
    for center, group in table.groupby("center", sort=True):
        scanner = " ".join(
            part for part in (_most_common(group["manufacturer"]), _most_common(group["model"])) if part
        )
        rows.append(
            {
                "center": center,
                "patients": len(group),
                "scanner": scanner or None,
                "tube_voltage_kv": _range_text(group["kvp"], 0),
                "tube_current_ma": _range_text(group["tube_current_ma"], 0),
                "rotation_time_s": _range_text(group["rotation_time_s"]),
                "detector_collimation_mm": _most_common(group["collimation"]),
                "fov_mm": _range_text(group["fov_mm"], 0),
                "pixel_matrix": _most_common(group["matrix"]),
                "kernel": _most_common(group["kernel"]),
                "slice_thickness_mm": _range_text(group["slice_thickness_mm"]),
            }
        )
    return pd.DataFrame(rows)
