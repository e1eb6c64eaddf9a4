"""hccrad's feature engine beside PyRadiomics on paper-sized cases: CPU and wall seconds, peak memory, equality.

Each synthetic patient is rendered on a 512 x 512 x 150 grid (0.684 x 0.684 x 1.5 mm; a tumor of 44-56 mm drawn
diameter and a remnant liver of paper-like size) and goes through the features stage's worker function
(``compute_case``: read CT and mask, regions, morphological factors, both regions' 2 x 1130 features with the
paper's parameter file, resampling to 0.647 x 0.647 x 1.5 mm included) in a fresh process per engine, so that CPU
time and peak resident memory (CT included) are that case's own.

    python bench/features_bench.py                 # 1 case with both engines, then 9 more with hccrad's
    python bench/features_bench.py --cases 3 --reference-cases 1
    python bench/features_bench.py --cases 1 --reference-cases 0 --malloc   # malloc settings side by side

``compute_case`` sets hccrad's malloc settings for a large case with hccrad's engine
(``hccrad.features.memory.MALLOC_SETTINGS``; PyRadiomics keeps glibc's own). ``--malloc`` runs case 1 four times
in one process, as a Dask worker runs case after case, under three settings: glibc's own thresholds,
``MALLOC_TRIM_THRESHOLD_=65536`` (the setting Dask gives its workers, which hccrad's local cluster leaves out), both
with hccrad's own switched off, and hccrad's, and prints the mean CPU (user and system) of the last three runs of
each and the process's peak, from the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

STUDY_PATIENTS = 422
#: The first seed scanned for paper-sized synthetic patients.
FIRST_SEED = 12345


def paper_sized_seeds(count: int) -> list[int]:
    """Seeds, from :data:`FIRST_SEED` on, of synthetic patients with a paper-sized tumor: a drawn diameter of
    44-56 mm, about 45-90 mL (the issue's paper-sized case has about 60 mL)."""
    from hccrad.synth.patients import draw_patient

    seeds, seed = [], FIRST_SEED
    while len(seeds) < count:
        if 44.0 <= draw_patient("BENCH", "D", seed, 0.0).extra["diameter_mm"] <= 56.0:
            seeds.append(seed)
        seed += 1
    return seeds


def make_case(folder: Path, seed: int) -> tuple[Path, Path]:
    from hccrad.synth.anatomy import Grid, acquire, render_case
    from hccrad.synth.patients import draw_patient
    from hccrad.synth.writers import to_sitk

    grid = Grid(shape=(150, 512, 512), spacing=(1.5, 350 / 512, 350 / 512), origin=(-175.0, -170.0, -110.0))
    patient = draw_patient("BENCH", "D", seed, 0.0)
    rendered = render_case(patient.anatomy, grid)
    ct = acquire(rendered, 1.0, 14.0, 1.5, seed)
    ct_path, mask_path = folder / f"ct{seed}.nii.gz", folder / f"mask{seed}.nii.gz"
    sitk.WriteImage(to_sitk(ct, grid), str(ct_path))
    sitk.WriteImage(to_sitk(rendered.labels, grid), str(mask_path))
    return ct_path, mask_path


def _worker(ct: str, mask: str, engine: str, profile: bool, out) -> None:
    """One case through the features stage's worker function (:func:`hccrad.features.extract.compute_case`: read
    CT and mask, regions, morphological factors, both regions' 2 x 1130 features with the paper's parameter
    file), in this fresh process."""
    import cProfile
    import pstats

    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    from hccrad.features.config import FeatureConfig
    from hccrad.features.extract import CaseJob, compute_case

    config = FeatureConfig(engine=engine)
    job = CaseJob("BENCH", ct, mask, None, config.radiomics_params(), config.model_dump(mode="json"), {}, "")
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    result = compute_case(job)
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    if result["status"] != "ok":
        raise RuntimeError(f"{engine}: {result['error_type']}: {result['error']}")
    features = result["features"]
    top = []
    if profiler:
        profiler.disable()
        stats = pstats.Stats(profiler).stats
        top = sorted(((value[2], f"{Path(key[0]).name}:{key[2]}") for key, value in stats.items()), reverse=True)
    out.put({"engine": engine, "profile": top[:12], "cpu_s": cpu, "wall_s": wall,
             "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             "tumor_ml": features["Tumor_volume_mL"], "rliver_ml": features["Rliver_volume_mL"],
             "features": {name: value for name, value in features.items()
                          if name.startswith(("Tumor_original", "Tumor_wavelet", "Tumor_log", "Tumor_gradient",
                                              "Rliver_original", "Rliver_wavelet", "Rliver_log",
                                              "Rliver_gradient"))}})


def _repeat_worker(ct: str, mask: str, repeats: int, hccrad_malloc: bool, out) -> None:
    """Case ``ct`` through ``compute_case`` ``repeats`` + 1 times in this process (a worker running case after
    case, with the malloc settings of its environment); the mean CPU seconds (user, system) of the last
    ``repeats``. Without ``hccrad_malloc`` the case does not set hccrad's malloc settings."""
    import hccrad.features.extract as extract
    from hccrad.features.config import FeatureConfig
    from hccrad.features.extract import CaseJob, compute_case

    if not hccrad_malloc:
        extract.keep_freed_memory_for_reuse = lambda: False

    config = FeatureConfig(engine="hccrad")
    job = CaseJob("BENCH", ct, mask, None, config.radiomics_params(), config.model_dump(mode="json"), {}, "")
    compute_case(job)
    before = os.times()
    for _ in range(repeats):
        compute_case(job)
    after = os.times()
    out.put({"user_s": (after.user - before.user) / repeats, "system_s": (after.system - before.system) / repeats,
             "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def in_fresh_process(target, *args):
    """Run ``target(*args, queue)`` in a new process and return what it puts on the queue. Rendering happens
    in such a process too, so that this parent stays small: Linux carries a parent's peak resident memory over
    to a child's ``ru_maxrss``."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def measure(ct: Path, mask: Path, engine: str, profile: bool = False) -> dict:
    return in_fresh_process(_worker, str(ct), str(mask), engine, profile)


def _make_case_worker(folder: str, seed: int, out) -> None:
    out.put(tuple(str(path) for path in make_case(Path(folder), seed)))


def largest_difference(ours: dict[str, float], reference: dict[str, float]) -> tuple[float, str]:
    worst, worst_name = 0.0, ""
    for name, expected in reference.items():
        value = ours[name]
        if math.isnan(expected) and math.isnan(value):
            continue
        difference = abs(value - expected)
        relative = 0.0 if difference <= 1e-9 else difference / max(abs(value), abs(expected))
        if not relative <= worst:
            worst, worst_name = relative, name
    return worst, worst_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10, help="paper-sized cases for hccrad's engine")
    parser.add_argument("--reference-cases", type=int, default=1, help="of which also with PyRadiomics")
    parser.add_argument("--malloc", action="store_true",
                        help="case 1 also run after run in one process under glibc's, Dask's and hccrad's malloc "
                             "settings")
    parser.add_argument("--profile", action="store_true",
                        help="print where hccrad's engine spends its time on the first case (cProfile, so slower)")
    args = parser.parse_args()
    # warm numba's on-disk cache so that no case pays the one-time compilation
    warm = mp.get_context("spawn").Process(target=_warm)
    warm.start()
    warm.join()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed, patient_seed in enumerate(paper_sized_seeds(args.cases), start=1):
            start = time.perf_counter()
            ct, mask = in_fresh_process(_make_case_worker, folder, patient_seed)
            made = time.perf_counter() - start
            ours = measure(ct, mask, "hccrad")
            if args.malloc and seed == 1:
                from hccrad.features.memory import MALLOC_SETTINGS

                settings = {"glibc's own thresholds": ({}, False), "Dask's MALLOC_TRIM_THRESHOLD_=65536":
                            ({"MALLOC_TRIM_THRESHOLD_": "65536"}, False),
                            "hccrad's " + ", ".join(f"{key}={value}" for key, value in MALLOC_SETTINGS.items()):
                            ({}, True)}
                print("case 1 run after run in one process, hccrad engine, mean of the last 3 runs:")
                for label, (environment, hccrad_malloc) in settings.items():
                    os.environ.update(environment)  # read by glibc when the worker process starts
                    try:
                        repeated = in_fresh_process(_repeat_worker, str(ct), str(mask), 3, hccrad_malloc)
                    finally:
                        for key in environment:
                            del os.environ[key]
                    print(f"  {repeated['user_s'] + repeated['system_s']:5.2f} s CPU ({repeated['user_s']:.2f} user, "
                          f"{repeated['system_s']:.2f} system), peak {repeated['peak_mb']:.0f} MB: {label}",
                          flush=True)
            if args.profile and seed == 1:
                profiled = measure(ct, mask, "hccrad", profile=True)
                print("hccrad engine, case 1, seconds spent in each function itself (cProfile):")
                for seconds, name in profiled["profile"]:
                    print(f"  {seconds:7.2f}  {name}")
            row = {"case": seed, "tumor_ml": round(ours["tumor_ml"], 1), "rliver_ml": round(ours["rliver_ml"], 1),
                   "hccrad_cpu_s": round(ours["cpu_s"], 2), "hccrad_wall_s": round(ours["wall_s"], 2),
                   "hccrad_peak_mb": round(ours["peak_mb"]), "n_features": len(ours["features"]),
                   "made_s": round(made, 1)}
            if seed <= args.reference_cases:
                reference = measure(ct, mask, "pyradiomics")
                worst, name = largest_difference(ours["features"], reference["features"])
                assert list(ours["features"]) == list(reference["features"])
                row.update({"pyradiomics_cpu_s": round(reference["cpu_s"], 2),
                            "pyradiomics_wall_s": round(reference["wall_s"], 2),
                            "pyradiomics_peak_mb": round(reference["peak_mb"]),
                            "cpu_ratio": round(reference["cpu_s"] / ours["cpu_s"], 1),
                            "largest_relative_difference": worst, "worst_feature": name})
            rows.append(row)
            print(json.dumps(row), flush=True)
            os.remove(ct)
            os.remove(mask)
    print()
    print(f"{'case':>4} {'tumor mL':>9} {'Rliver mL':>10} {'hccrad CPU s':>13} {'wall s':>7} {'peak MB':>8} "
          f"{'PyRadiomics CPU s':>18} {'wall s':>7} {'peak MB':>8} {'ratio':>6}  largest rel. difference")
    for row in rows:
        reference = (f"{row['pyradiomics_cpu_s']:>18.1f} {row['pyradiomics_wall_s']:>7.1f} "
                     f"{row['pyradiomics_peak_mb']:>8} {row['cpu_ratio']:>6.1f}  "
                     f"{row['largest_relative_difference']:.2e} ({row['worst_feature']})"
                     if "cpu_ratio" in row else f"{'':>18} {'':>7} {'':>8} {'':>6}")
        print(f"{row['case']:>4} {row['tumor_ml']:>9.1f} {row['rliver_ml']:>10.1f} {row['hccrad_cpu_s']:>13.1f} "
              f"{row['hccrad_wall_s']:>7.1f} {row['hccrad_peak_mb']:>8} {reference}")
    cpu = np.array([row["hccrad_cpu_s"] for row in rows])
    print(f"\nhccrad engine: {cpu.mean():.1f} s CPU per patient (mean of {len(rows)}, max {cpu.max():.1f}), "
          f"peak {max(row['hccrad_peak_mb'] for row in rows)} MB")
    cores = os.cpu_count() or 1
    print(f"{STUDY_PATIENTS} patients on {cores} cores, one case per core, extrapolated from the CPU time per case: "
          f"hccrad engine {STUDY_PATIENTS * cpu.mean() / cores / 3600:.2f} h", end="")
    reference_cpu = [row["pyradiomics_cpu_s"] for row in rows if "pyradiomics_cpu_s" in row]
    if reference_cpu:
        print(f", PyRadiomics {STUDY_PATIENTS * np.mean(reference_cpu) / cores / 3600:.2f} h "
              f"(from {len(reference_cpu)} case(s))", end="")
    print()
    sys.stdout.flush()


def _warm() -> None:
    """Compile every numba kernel of the engine once (numba's on-disk cache keeps them), with the paper's image
    types and resampling."""
    from hccrad.features.config import FeatureConfig
    from hccrad.features.engine import region_features

    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(16, 24, 24)).astype(np.float32) * 50)
    image.SetSpacing((0.7, 0.7, 1.4))
    region = np.zeros((16, 24, 24), dtype=bool)
    region[4:12, 6:18, 6:18] = True
    region_features(image, region, FeatureConfig().radiomics_params(), 5)


if __name__ == "__main__":
    main()
