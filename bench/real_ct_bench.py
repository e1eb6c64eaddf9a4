"""The feature engine on a real CT's texture at 3D-IRCADb's geometry, beside the paper-sized synthetic case.

The issue's real case (3D-IRCADb-01 1.17: 512 x 512 x 119 at 0.74 x 0.74 x 1.6 mm, two tumors, a 1.7 L remnant
liver) is not redistributable, so this bench builds its geometry from a real CT that is: the TotalSegmentator
DICOM series in ``../shared/reference/ct/totalseg_dicom`` (512 x 512 x 20, Siemens, 120 kV), mirrored along z
to 120 slices and given 0.74 x 0.74 x 1.6 mm voxels, with its model-predicted liver (class 5) as the liver and its
portal/splenic vein (class 64) as label 3; two tumors (radii 14 and 9 mm) are drawn into the liver 45 HU darker
with noise. Every voxel value is a real CT's (vessels, partial volumes at the liver's border, a predicted mask's
stray voxels), which is what makes real cases cost more than smooth synthetic ones.

Each case goes through the features stage's worker function (``compute_case``) with the paper's parameter file in
a fresh process, and the bench prints CPU and wall seconds, peak memory, the remnant liver's volume and the CPU per
litre of region (tumor + remnant liver), for the real-texture case and the first paper-sized synthetic case of
``features_bench.py``; ``--reference`` adds PyRadiomics on the real-texture case.

    python bench/real_ct_bench.py
    python bench/real_ct_bench.py --reference
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features_bench import (  # noqa: E402
    _make_case_worker,
    in_fresh_process,
    largest_difference,
    measure,
    paper_sized_seeds,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ct" / "totalseg_dicom"
SPACING_ZYX = (1.6, 0.74, 0.74)


def make_real_texture_case(folder: Path) -> tuple[Path, Path]:
    from hccrad.io.images import read_image

    image = read_image(SHARED / "series")
    classes = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED / "example_seg_dicom.nii.gz")))
    ct = sitk.GetArrayFromImage(image)
    order = np.concatenate([np.arange(20), np.arange(19, -1, -1)] * 3)  # 120 slices, mirrored
    ct, classes = ct[order], classes[order]
    labels = np.zeros(classes.shape, np.uint8)
    labels[classes == 5] = 1
    labels[classes == 64] = 3
    z, y, x = np.ogrid[: ct.shape[0], : ct.shape[1], : ct.shape[2]]
    centre = np.argwhere(labels == 1).mean(axis=0)
    rng = np.random.default_rng(0)
    for (dz, dy, dx), radius in (((40, -30, -40), 14.0), ((85, 25, 30), 9.0)):
        ball = np.sqrt(((z - dz) * SPACING_ZYX[0]) ** 2 + ((y - centre[1] - dy) * SPACING_ZYX[1]) ** 2
                       + ((x - centre[2] - dx) * SPACING_ZYX[2]) ** 2) <= radius
        ball &= labels == 1
        labels[ball] = 2
        ct[ball] = (ct[ball] - 45 + rng.normal(0, 12, int(ball.sum()))).astype(ct.dtype)
    written = []
    for array, name in ((ct, "real_ct.nii.gz"), (labels, "real_mask.nii.gz")):
        out = sitk.GetImageFromArray(array)
        out.SetSpacing(SPACING_ZYX[::-1])
        out.SetOrigin((-190.0, -190.0, -100.0))
        sitk.WriteImage(out, str(folder / name))
        written.append(folder / name)
    return written[0], written[1]


def _real_case_worker(folder: str, out) -> None:
    out.put(tuple(str(path) for path in make_real_texture_case(Path(folder))))


def report(label: str, result: dict) -> dict:
    litres = (result["tumor_ml"] + result["rliver_ml"]) / 1000.0
    row = {"case": label, "tumor_ml": round(result["tumor_ml"], 1), "rliver_ml": round(result["rliver_ml"], 1),
           "cpu_s": round(result["cpu_s"], 2), "wall_s": round(result["wall_s"], 2),
           "peak_mb": round(result["peak_mb"]), "cpu_s_per_litre": round(result["cpu_s"] / litres, 2)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true", help="also PyRadiomics on the real-texture case")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"the real CT is not available: {SHARED}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        real_ct, real_mask = in_fresh_process(_real_case_worker, tmp)
        paper_ct, paper_mask = in_fresh_process(_make_case_worker, tmp, paper_sized_seeds(1)[0])
        print(f"cases written in {time.perf_counter() - start:.0f} s", flush=True)
        measure(paper_ct, paper_mask, "auto")  # warm numba's cache in a throw-away process
        ours = measure(real_ct, real_mask, "auto")
        rows = [report("real texture, 512 x 512 x 120 at 0.74 x 0.74 x 1.6 mm", ours),
                report("paper-sized synthetic, 512 x 512 x 150 at 0.68 x 0.68 x 1.5 mm",
                       measure(paper_ct, paper_mask, "auto"))]
        if args.reference:
            reference = measure(real_ct, real_mask, "pyradiomics")
            worst, name = largest_difference(ours["features"], reference["features"])
            print(f"PyRadiomics on the real-texture case: {reference['cpu_s']:.1f} s CPU, peak "
                  f"{reference['peak_mb']:.0f} MB, {reference['cpu_s'] / ours['cpu_s']:.1f}x the engine's CPU; "
                  f"largest relative difference {worst:.2e} ({name})")
    print(f"\n{'case':<64} {'tumor mL':>9} {'Rliver mL':>10} {'CPU s':>6} {'wall s':>7} {'peak MB':>8} "
          f"{'CPU s per L':>12}")
    for row in rows:
        print(f"{row['case']:<64} {row['tumor_ml']:>9.1f} {row['rliver_ml']:>10.1f} {row['cpu_s']:>6.1f} "
              f"{row['wall_s']:>7.1f} {row['peak_mb']:>8} {row['cpu_s_per_litre']:>12.2f}")


if __name__ == "__main__":
    main()
