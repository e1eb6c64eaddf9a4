"""Optional backend for users without annotated data: TotalSegmentator.

Liver and portal vein come from TotalSegmentator's ``total`` task (v2 class map: 5 liver, 64 portal and splenic
vein), the liver tumor from its ``liver_vessels`` task (1 liver vessels, 2 liver tumor); they are mapped onto
hccrad's labels 1 liver, 2 tumor, 3 portal vein. TotalSegmentator downloads its weights at first use; where that
is impossible (no network) the backend stops with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from hccrad.io.masks import LABEL_LIVER, LABEL_PORTAL_VEIN, LABEL_TUMOR

TOTAL_LIVER, TOTAL_PORTAL_SPLENIC_VEIN = 5, 64
VESSELS_TUMOR = 2


def map_totalsegmentator(total: np.ndarray, liver_vessels: np.ndarray, spacing_zyx: tuple[float, float, float],
                         portal_margin_mm: float = 10.0) -> np.ndarray:
    """hccrad labels from the two TotalSegmentator outputs (same grid).

    The ``total`` task's class 64 holds the portal and the splenic vein; only its voxels within
    ``portal_margin_mm`` of the liver are taken as portal vein (the splenic vein runs far from the liver). Tumor
    voxels of ``liver_vessels`` take precedence over liver.
    """
    liver = total == TOTAL_LIVER
    out = np.zeros(total.shape, np.uint8)
    out[liver] = LABEL_LIVER
    if liver.any():
        distance = ndimage.distance_transform_edt(~liver, sampling=spacing_zyx)
        out[(total == TOTAL_PORTAL_SPLENIC_VEIN) & (distance <= portal_margin_mm)] = LABEL_PORTAL_VEIN
    out[liver_vessels == VESSELS_TUMOR] = LABEL_TUMOR
    return out


class TotalSegmentatorUnavailable(RuntimeError):
    """TotalSegmentator is not installed or cannot get its weights."""


def run_totalsegmentator(ct_path: Path, work_dir: Path) -> tuple[Path, Path]:
    """Run the ``total`` and ``liver_vessels`` tasks on one CT; returns the two multi-label NIfTI files."""
    try:
        from totalsegmentator.python_api import totalsegmentator
    except ImportError as exc:
        raise TotalSegmentatorUnavailable(
            "the TotalSegmentator backend needs `pip install TotalSegmentator` and its weights (downloaded at first "
            "use, so a machine without network access needs them copied into ~/.totalsegmentator)") from exc
    work_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for task in ("total", "liver_vessels"):
        target = work_dir / f"{task}.nii.gz"
        try:
            totalsegmentator(str(ct_path), str(target), task=task, ml=True, quiet=True)
        except Exception as exc:  # most often: weights cannot be downloaded here
            raise TotalSegmentatorUnavailable(
                f"TotalSegmentator task {task!r} failed ({exc}); without network access its weights must be "
                "placed in ~/.totalsegmentator beforehand") from exc
        outputs.append(target)
    return outputs[0], outputs[1]


def predict_with_totalsegmentator(study, overwrite: bool = False) -> dict[str, Path]:
    """Segment the study's cases with TotalSegmentator, map, post-process and write them beside the outputs."""
    import tempfile

    import SimpleITK as sitk

    from hccrad.io.case import CTCase
    from hccrad.io.images import read_image, read_mask, spacing_zyx, write_labels_like
    from hccrad.segment.postprocess import postprocess_labels

    out_dir = study.config.layout.predicted_masks_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for record in study.patients:
        if record.ct is None or (record.has_mask and not overwrite):
            continue
        image = read_image(record.ct, study.config.dicom_series)
        with tempfile.TemporaryDirectory() as scratch:
            ct_path = Path(scratch) / "ct.nii.gz"
            sitk.WriteImage(image, str(ct_path))
            total_path, vessels_path = run_totalsegmentator(ct_path, Path(scratch) / "out")
            total = sitk.GetArrayFromImage(read_mask(total_path, image, allowed_labels=None))
            vessels = sitk.GetArrayFromImage(read_mask(vessels_path, image, allowed_labels=None))
        mapped = CTCase.from_arrays(image, postprocess_labels(map_totalsegmentator(total, vessels,
                                                                                   spacing_zyx(image))))
        target = study.config.layout.predicted_mask(record.patient_id)
        written[record.patient_id] = write_labels_like(mapped.labels, mapped.image, target)
    return written
