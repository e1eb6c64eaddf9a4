"""Reading a case's mask in each form hccrad accepts, beside the reference readers, on a real DICOM CT.

The CT is the real 20-slice series in ``../shared/reference/ct/totalseg_dicom`` (512 x 512 x 20) with its liver and
portal vein and a 12 mm lesion drawn into the liver. The same labels are written as a NIfTI label map, as hccrad's
DICOM SEG export and as an RTSTRUCT (contours along the voxel edges of each row run), and each is read onto the
CT's grid with :func:`hccrad.io.mask_sources.read_case_mask`. Beside them, from the same run: highdicom's own
``get_pixels_by_source_instance`` for the SEG, and SimpleITK's ``ReadImage`` for the label map. Every read is
checked voxel for voxel against the labels. Prints the median wall seconds of ``--repeats`` reads.

    python bench/mask_sources_bench.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import highdicom as hd
    from tests.test_features_cohort import draw_lesion, totalseg_labels, write_like
    from tests.test_mask_sources import _rtstruct, _run_rectangles

    from hccrad.io.dicomseg import export_mask
    from hccrad.io.images import read_image, read_mask
    from hccrad.io.mask_sources import MaskSource, ct_reference, read_case_mask

    dicom = ROOT.parent / "shared" / "reference" / "ct" / "totalseg_dicom"
    ct = dicom / "series"
    image = read_image(ct)
    labels = draw_lesion(totalseg_labels(read_mask(dicom / "example_seg_dicom.nii.gz", image, allowed_labels=None)),
                         image.GetSpacing()[::-1], 12.0)
    reference = ct_reference(ct, image)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_like(labels, image, folder / "labels.nii.gz")
        seg = export_mask(ct, folder / "labels.nii.gz", folder / "seg.dcm").path
        rois = {name: _run_rectangles(image, labels == value) for name, value in
                (("Liver", 1), ("Tumor", 2), ("Portal vein", 3))}
        rtstruct = _rtstruct(rois, folder / "rs.dcm", reference.series_uid, reference.frame_of_reference_uid)
        uids = [uid for uid, _ in sorted(reference.slice_of_instance.items(), key=lambda item: item[1])]
        rows = [
            ("label map, SimpleITK ReadImage (reference)",
             lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labels.nii.gz")))),
            ("label map, hccrad read_case_mask",
             lambda: read_case_mask(MaskSource(folder / "labels.nii.gz"), image).labels),
            ("DICOM SEG, highdicom get_pixels_by_source_instance (reference)",
             lambda: hd.seg.segread(seg).get_pixels_by_source_instance(
                 source_sop_instance_uids=uids, segment_numbers=[1, 2, 3], combine_segments=True,
                 skip_overlap_checks=True)),
            ("DICOM SEG, hccrad read_case_mask", lambda: read_case_mask(MaskSource(seg), image, reference).labels),
            (f"RTSTRUCT ({sum(len(p) for p in rois.values())} contours), hccrad read_case_mask",
             lambda: read_case_mask(MaskSource(rtstruct), image, reference).labels),
        ]
        print(f"CT {ct}: {image.GetSize()} voxels; {args.repeats} repeats, median wall seconds")
        for name, function in rows:
            seconds, result = timed(function, args.repeats)
            same = np.array_equal(np.asarray(result).astype(np.uint8), labels)
            print(f"  {name:<72} {seconds:8.3f} s   identical to the labels: {same}")


if __name__ == "__main__":
    main()
