"""`hccrad predict` from a feature table: 10 patients beside 1000, the command a user runs, in the same run.

The models and features are a fitted study's (by default the demo study, made first in a temporary folder by
`hccrad demo`, about 2 minutes; or ``--study`` pointing at a study's output folder with ``models/`` and
``features/``). Tables of 10 and 1000 patients are drawn from the study's feature table (with replacement, new
ids) and each is scored by all four models with `hccrad predict --models ... --patients ...` in a fresh process;
the bench prints the wall and CPU seconds of each command, the ratio, and how many predictions were refused
(features outside the training range are refused without --allow-extrapolation, as they should be).

    python bench/predict_bench.py
    python bench/predict_bench.py --study path/to/output
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def run(command: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the command's process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    status = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if status.returncode not in (0, 1):  # 1: some predictions refused (the error column says why)
        raise RuntimeError(status.stderr[-2000:])
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, help="a study's output folder (models/ and features/)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    args = parser.parse_args()
    hccrad = shutil.which("hccrad") or str(Path(sys.executable).with_name("hccrad"))  # the venv not activated
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        output = args.study
        if output is None:
            start = time.perf_counter()
            subprocess.run([hccrad, "demo", "--out", str(folder / "demo")], check=True, capture_output=True)
            output = folder / "demo" / "output"
            print(f"demo study made in {time.perf_counter() - start:.0f} s")
        features = pd.read_parquet(output / "features" / "features.parquet")
        rows = []
        for size in args.sizes:
            table = features.sample(size, replace=True, random_state=size).reset_index(drop=True)
            table.index = pd.Index([f"P{k:05d}" for k in range(size)], name="patient_id")
            table.drop(columns=["pfs_months", "pfs_event"]).to_csv(folder / f"patients{size}.csv")
            wall, cpu = run([hccrad, "predict", "--models", str(output / "models"), "--patients",
                             str(folder / f"patients{size}.csv"), "--out", str(folder / f"scores{size}.csv")])
            scores = pd.read_csv(folder / f"scores{size}.csv", keep_default_na=False)
            refused = int((scores["error"] != "").sum())
            rows.append((size, wall, cpu, len(scores), refused))
            print(f"{size} patients: {wall:.2f} s wall, {cpu:.2f} s CPU, {len(scores)} predictions "
                  f"({refused} refused)", flush=True)
    print(f"\n{'patients':>8} {'wall s':>7} {'CPU s':>6} {'predictions':>12} {'refused':>8}")
    for size, wall, cpu, count, refused in rows:
        print(f"{size:>8} {wall:>7.2f} {cpu:>6.2f} {count:>12} {refused:>8}")
    if len(rows) > 1:
        print(f"{rows[-1][0]} patients cost {rows[-1][1] / rows[0][1]:.1f}x the wall time of {rows[0][0]}")


if __name__ == "__main__":
    main()
