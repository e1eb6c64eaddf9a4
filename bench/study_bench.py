"""A whole study at full resolution, masks to report, stage by stage, extrapolated to the paper's 422 patients.

`hccrad synth --full-resolution` writes N patients (default 40) on their centers' real matrices (512 x 512, 0.6-0.8
mm, 1.25-5 mm slices, NIfTI and DICOM); the manifest is switched to the paper's parameter file (resampling to
0.647 x 0.647 x 1.5 mm, 2 x 1130 features) and the default evaluation (500 bootstrap resamples). Then the stage
commands run one after the other, each in a fresh process tree: `hccrad features`, `hccrad fit`,
`hccrad evaluate`, and `hccrad run`, which reuses those three (checking each) and writes the report. For each the
bench prints the CPU seconds of the whole process tree, the wall seconds and the largest peak resident memory of
any one process.

The same stages also run on the first N/2 patients, and each stage's wall time is extrapolated to 422 patients on
this machine. Features: each case is computed on its own, so the stage is linear in the number of cases; the cost
per case is the larger of the mean over the N cases and the marginal cost of the second N/2 (which leaves out the
cluster's start). The other stages: a power law through the two sizes (wall ~ n^b, b kept between 1 and 2), so a
stage that grows faster than linearly (bootstrap, LASSO's cross-validation) is not underestimated.

    python bench/study_bench.py                  # 40 patients (about 20 minutes on 2 cores)
    python bench/study_bench.py --patients 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

STUDY_PATIENTS = 422
STAGES = (("features", ["features"]), ("fit", ["fit"]), ("evaluate", ["evaluate"]),
          ("report (hccrad run, reusing the rest)", ["run"]))
PROBE = ("import resource, subprocess, sys, time, json\n"
         "start = time.perf_counter()\n"
         "status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
         "wall = time.perf_counter() - start\n"
         "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
         "print(json.dumps({'cpu_s': usage.ru_utime + usage.ru_stime, 'system_s': usage.ru_stime, 'wall_s': wall,\n"
         "                  'peak_mb': usage.ru_maxrss / 1024, 'status': status.returncode,\n"
         "                  'stderr': status.stderr[-1500:]}))\n")


def measure(command: list[str], cwd: Path) -> dict:
    """Run ``command`` under a small parent that reports, on exit, the CPU of the command's whole process tree (user +
    system, as the kernel accounts each process when it is reaped), its wall time and the largest peak resident
    memory of any one of its processes. A status of 1 (some cases failed) is accepted; any other refuses."""
    output = subprocess.run([sys.executable, "-c", PROBE, *command], cwd=cwd, capture_output=True, text=True,
                            check=True)
    result = json.loads(output.stdout.strip().splitlines()[-1])
    if result["status"] not in (0, 1):  # 1: some cases failed, which the stage reports and the bench counts
        raise RuntimeError(f"{' '.join(command)} failed: {result['stderr']}")
    return result


def study_variant(folder: Path, n_patients: int) -> Path:
    """A manifest over the first ``n_patients`` rows, with the paper's parameter file and its own output."""
    manifest = yaml.safe_load((folder / "study.yaml").read_text())
    clinical = pd.read_csv(folder / manifest["clinical_table"], dtype=str, keep_default_na=False)
    clinical.head(n_patients).to_csv(folder / f"clinical-{n_patients}.csv", index=False)
    present = set(clinical.head(n_patients)["center"])
    manifest["split"]["validation_centers"] = [c for c in manifest["split"]["validation_centers"] if c in present]
    manifest.update({"clinical_table": f"clinical-{n_patients}.csv", "output_dir": f"output-{n_patients}",
                     "features": {"params": "paper"}})
    path = folder / f"study-{n_patients}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def run_stages(hccrad: str, manifest: Path) -> dict[str, dict]:
    results = {}
    for name, command in STAGES:
        results[name] = measure([hccrad, *command, str(manifest)], manifest.parent)
        print(json.dumps({"manifest": manifest.name, "stage": name,
                          **{k: round(v, 1) for k, v in results[name].items() if isinstance(v, float)}}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--keep", type=Path, help="keep the cohort and outputs in this folder")
    args = parser.parse_args()
    hccrad = shutil.which("hccrad") or str(Path(sys.executable).with_name("hccrad"))  # the venv not activated
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.keep or Path(tmp)) / "cohort"
        start = time.perf_counter()
        subprocess.run([hccrad, "synth", "--out", str(folder), "--patients", str(args.patients), "--seed",
                        str(args.seed), "--full-resolution"], check=True, capture_output=True)
        print(f"{args.patients} full-resolution patients synthesised in {time.perf_counter() - start:.0f} s "
              f"({os.cpu_count()} cores)", flush=True)
        half = args.patients // 2
        large = run_stages(hccrad, study_variant(folder, args.patients))
        small = run_stages(hccrad, study_variant(folder, half))
    print(f"\n{'stage':<40} {'CPU s':>8} {'wall s':>8} {'peak MB':>8} {'exponent':>9} "
          f"{f'wall at {STUDY_PATIENTS} (h)':>16}")
    total_wall, total_cpu, extrapolated = 0.0, 0.0, 0.0
    for name, _ in STAGES:
        ours, half_run = large[name], small[name]
        if name == "features":
            per_case = max(ours["wall_s"] / args.patients,
                           (ours["wall_s"] - half_run["wall_s"]) / (args.patients - half))
            exponent = 1.0
            hours = (ours["wall_s"] + per_case * (STUDY_PATIENTS - args.patients)) / 3600
        else:
            growth = ours["wall_s"] / max(half_run["wall_s"], 1e-9)
            exponent = min(2.0, max(1.0, math.log(growth) / math.log(args.patients / half)))
            hours = ours["wall_s"] * (STUDY_PATIENTS / args.patients) ** exponent / 3600
        total_wall += ours["wall_s"]
        total_cpu += ours["cpu_s"]
        extrapolated += hours
        print(f"{name:<40} {ours['cpu_s']:>8.1f} {ours['wall_s']:>8.1f} {ours['peak_mb']:>8.0f} {exponent:>9.2f} "
              f"{hours:>16.2f}")
    print(f"{'masks to report, ' + str(args.patients) + ' patients':<40} {total_cpu:>8.1f} {total_wall:>8.1f}")
    print(f"extrapolated to {STUDY_PATIENTS} patients on this machine ({os.cpu_count()} cores): {extrapolated:.2f} h "
          "from masks to report")


if __name__ == "__main__":
    main()
