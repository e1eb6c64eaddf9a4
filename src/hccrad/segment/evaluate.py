"""`hccrad segment evaluate`: predicted masks against reference masks, per case, label and center."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hccrad.io import layout
from hccrad.io.case import CTCase
from hccrad.io.errors import InputError
from hccrad.io.files import write_atomic
from hccrad.io.ids import case_path
from hccrad.io.images import read_mask
from hccrad.io.manifest import Study
from hccrad.segment.metrics import compare_labels


def predicted_mask_path(study: Study, patient_id: str) -> Path:
    """Where the segmentation stage writes a patient's predicted mask."""
    return study.config.layout.predicted_mask(patient_id)


def evaluate_segmentations(study: Study, predictions_dir: Path | None = None,
                           out_dir: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DSC and HD95 of every patient with both a reference mask (the manifest's) and a predicted mask.

    Returns the per-case table (patient, center, region, dsc, hd95_mm, note) and the summary per region and
    center (mean, SD, median, IQR); both are written to ``out_dir`` (default ``<output_dir>/segmentation``).
    """
    rows = []
    for record in study.patients:
        predicted = (case_path(predictions_dir, record.patient_id, ".nii.gz") if predictions_dir
                     else predicted_mask_path(study, record.patient_id))
        if not record.has_mask or record.ct is None or not predicted.is_file():
            continue
        try:
            case = CTCase.read(record.ct, record.mask_source, study.config.dicom_series)
            prediction = sitk.GetArrayFromImage(read_mask(predicted, case.image))
        except (ValueError, InputError) as exc:
            rows.append({"patient_id": record.patient_id, "center": record.center, "region": "all",
                         "dsc": np.nan, "hd95_mm": np.nan, "note": str(exc)})
            continue
        for row in compare_labels(prediction, case.labels, case.spacing):
            rows.append({"patient_id": record.patient_id, "center": record.center, **row})
    cases = pd.DataFrame(rows, columns=["patient_id", "center", "region", "dsc", "hd95_mm", "note"])
    summary = summarize(cases)
    out_dir = Path(out_dir) if out_dir else study.config.layout.segmentation_dir
    write_atomic(out_dir / layout.SEGMENTATION_EVALUATION, cases.to_csv(index=False))
    write_atomic(out_dir / layout.SEGMENTATION_EVALUATION_SUMMARY, summary.to_csv(index=False))
    return cases, summary


def summarize(cases: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD, median and IQR of DSC and HD95 per region, over all centers and per center."""
    rows = []
    groups = [("all", cases)] + [(center, frame) for center, frame in cases.groupby("center")]
    for center, frame in groups:
        for region, part in frame.groupby("region"):
            row = {"center": center, "region": region, "n": len(part)}
            for metric in ("dsc", "hd95_mm"):
                values = part[metric].dropna()
                row.update({f"{metric}_mean": values.mean(), f"{metric}_sd": values.std(),
                            f"{metric}_median": values.median(),
                            f"{metric}_iqr": values.quantile(0.75) - values.quantile(0.25),
                            f"{metric}_missing": int(part[metric].isna().sum())})
            rows.append(row)
    return pd.DataFrame(rows)
