"""`hccrad robustness` on paper-sized patients: the time per perturbed case, extrapolated to 10 x 30.

N paper-sized synthetic patients (``features_bench.py``'s cases: 512 x 512 x 150 at 0.684 x 0.684 x 1.5 mm, the
paper's parameter file, both regions) make a study (N training patients and one validation patient, a copy of the
first); `hccrad features` computes their features (not timed), then `hccrad robustness` with 10 perturbations of
every kind (rotation, translation, volume, contour, noise) runs in a fresh process tree and is timed: CPU of the
whole tree, wall, largest peak memory of one process. The bench prints the CPU and wall per perturbed case and the
issue's target extrapolated: 10 perturbations x 30 patients on this machine's cores (wall = the time to the first
result, which holds the cluster's start, plus 299 times the steady interval between results, measured from the
per-case files' times, plus the time from the last result to the end). First, the rotation and shift alone
beside SimpleITK's 3D B-spline resampling (CPU of each, the largest difference).

    python bench/robustness_bench.py                 # 3 patients x 10 perturbations (about 10 minutes on 2 cores)
    python bench/robustness_bench.py --patients 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features_bench import _make_case_worker, in_fresh_process, paper_sized_seeds  # noqa: E402
from study_bench import measure  # noqa: E402

TARGET_PATIENTS, TARGET_PERTURBATIONS = 30, 10


def write_study(folder: Path, cases: list[tuple[str, str]], perturbations: int) -> Path:
    rows = [f"P{k + 1},A,{ct},{mask},120,A,B,TACE,{6 + k},1" for k, (ct, mask) in enumerate(cases)]
    rows.append(f"V1,B,{cases[0][0]},{cases[0][1]},80,A,B,TACE,9,1")
    (folder / "clinical.csv").write_text("patient_id,center,ct,mask,afp,child_pugh,bclc,treatment,pfs_months,"
                                         "pfs_event\n" + "\n".join(rows) + "\n")
    manifest = folder / "study.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "robustness bench", "clinical_table": "clinical.csv", "split": {"validation_centers": ["B"]},
        "horizons_months": [6, 12], "treatment_categories": ["TACE", "TACE+systemic"], "output_dir": "output",
        "features": {"params": "paper", "robustness": {"perturbations": perturbations, "patients": len(cases)}}}))
    return manifest


def rigid_versus_simpleitk() -> None:
    """The rotation and shift of one perturbation (hccrad's separable B-spline) beside SimpleITK's 3D B-spline
    resampling with the same transform, on a 130 x 460 x 460 smooth random volume (a 120 x 380 x 380 box whose
    moved voxels all read inside the volume, as a region's box in a CT): CPU seconds of each and the largest
    difference."""
    import numpy as np
    import SimpleITK as sitk
    from scipy import ndimage

    from hccrad.features.perturb import rigid, warm_kernels

    rng = np.random.default_rng(0)
    values = (ndimage.gaussian_filter(rng.normal(size=(130, 460, 460)), 2) * 4000).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.684, 0.684, 1.5))
    labels = (values > 0).astype(np.uint8)
    box, centre, angle, shift = (slice(5, 125), slice(40, 420), slice(40, 420)), np.array([65.0, 230, 230]), 7.0, (
        0.3, -0.2, 0.4)
    warm_kernels()
    start = time.process_time()
    ours, _ = rigid(image, labels, angle, shift, centre, box)
    ours_s = time.process_time() - start
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)  # one core's CPU, as the workers
    transform = sitk.Euler3DTransform()
    transform.SetCenter(image.TransformContinuousIndexToPhysicalPoint(centre[::-1].tolist()))
    transform.SetRotation(0.0, 0.0, float(np.deg2rad(angle)))
    transform.SetTranslation(tuple(float(v) for v in np.array(shift[::-1]) * np.array(image.GetSpacing())))
    start = time.process_time()
    reference = sitk.Resample(image, image[box[2], box[1], box[0]], transform, sitk.sitkBSpline,
                              float(values.min()), sitk.sitkFloat32)
    reference_s = time.process_time() - start
    difference = float(np.abs(ours - sitk.GetArrayFromImage(reference)).max())
    print(f"rotation + shift of a 120 x 380 x 380 box: hccrad {ours_s:.2f} s CPU, SimpleITK 3D B-spline "
          f"{reference_s:.2f} s ({reference_s / ours_s:.1f}x), largest difference {difference:.1e} "
          f"(values +-{np.abs(values).max():.0f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--perturbations", type=int, default=TARGET_PERTURBATIONS)
    args = parser.parse_args()
    rigid_versus_simpleitk()
    hccrad = shutil.which("hccrad") or str(Path(sys.executable).with_name("hccrad"))  # the venv not activated
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        cases = [in_fresh_process(_make_case_worker, str(folder), seed) for seed in paper_sized_seeds(args.patients)]
        manifest = write_study(folder, cases, args.perturbations)
        subprocess.run([hccrad, "features", str(manifest)], check=True, capture_output=True, cwd=folder)
        print(f"{args.patients} paper-sized patients made and their features computed in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        started = time.time()
        result = measure([hccrad, "robustness", str(manifest)], folder)
        ended = time.time()
        outputs = folder / "output" / "features" / "robustness"
        record = json.loads((outputs / "run.json").read_text())
        finished = sorted(path.stat().st_mtime for path in outputs.glob("*.json") if path.name != "run.json")
    cases_done = args.patients * args.perturbations
    cores = os.cpu_count() or 1
    per_case_cpu, per_case_wall = result["cpu_s"] / cases_done, result["wall_s"] / cases_done
    target = TARGET_PATIENTS * TARGET_PERTURBATIONS
    print(f"\nhccrad robustness, {args.patients} patients x {args.perturbations} perturbations: "
          f"{result['cpu_s']:.0f} s CPU (process tree), {result['wall_s']:.0f} s wall, "
          f"peak {result['peak_mb']:.0f} MB, {len(record['failed'])} failed")
    print(f"per perturbed case (both regions, 2 x 1130 features and the morphological factors): {per_case_cpu:.1f} s "
          f"CPU, {per_case_wall:.1f} s wall on {cores} cores")
    # the command's start (cluster, imports, the first case's read) and its end (the ICC table) happen once; in
    # between, cases finish at a steady rate: the time between the first and the last case's result
    steady = (finished[-1] - finished[0]) / (len(finished) - 1)
    start_s, end_s = finished[0] - started, ended - finished[-1]
    print(f"steady rate: one perturbed case every {steady:.1f} s wall ({cores} workers); the first result after "
          f"{start_s:.0f} s (cluster start and the first case), the table {end_s:.0f} s after the last")
    print(f"{TARGET_PERTURBATIONS} perturbations x {TARGET_PATIENTS} patients on this machine: about "
          f"{(start_s + steady * (target - 1) + end_s) / 60:.0f} min wall (the start and the table once, the cases at "
          f"the steady rate; {per_case_cpu * target / 60:.0f} CPU min at this run's CPU per case)")


if __name__ == "__main__":
    main()
