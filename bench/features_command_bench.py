"""The command a user runs, `hccrad features`, on one paper-sized patient: hccrad's engine beside PyRadiomics.

A one-patient study (the paper-sized synthetic case of ``features_bench.py``: 512 x 512 x 150 at 0.684 x 0.684 x
1.5 mm, the paper's parameter file, resampling to 0.647 x 0.647 x 1.5 mm) is written to a temporary folder, and
`hccrad features study.yaml` runs in a fresh process tree for each of:

1. ``engine: auto`` right after an install: numba's on-disk cache of the engine's kernels emptied first, so the
   run compiles them (once; every later process loads them);
2. ``engine: auto`` again, in a new output folder (the cache warm: every later run), ``--repeats`` times (default
   3), in groups before, between and after the reference runs, since the machine's speed drifts within minutes;
3. ``engine: pyradiomics`` (the reference), ``--reference-repeats`` times (default 1), between those groups.

hccrad's own modules are compiled to bytecode first (``compileall``), as ``pip install`` does for an installed
package: an editable install under ``PYTHONDONTWRITEBYTECODE`` (this project's machines set it) would otherwise
compile them from source at every start (some 50 modules), which a user's installed copy does not do.

For each run it prints the CPU seconds of the whole process tree (user + system of the command and every process it
started, as the kernel accounts them on exit), the wall seconds and the largest peak resident memory of any one
process of the tree, and the ratio of PyRadiomics' CPU to the engine's: of the medians of all runs, and of each
reference run to the median of the engine's runs on either side of it (the pairs least affected by the drift).

    python bench/features_command_bench.py
    python bench/features_command_bench.py --keep-cache      # leave numba's cache alone (no run 1)
    python bench/features_command_bench.py --keep-cache --repeats 6 --reference-repeats 2
    python bench/features_command_bench.py --compare-env NUMPY_MADVISE_HUGEPAGE=1 --repeats 6

``--compare-env NAME=VALUE`` runs only ``engine: auto`` (the cache warm), alternately with the command's own
environment and with ``NAME=VALUE`` added, ``--repeats`` times each, and prints the median CPU and system CPU of
each (the machine's speed drifts within minutes, so the two are compared in alternation, not one after the other).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features_bench import _make_case_worker, in_fresh_process, paper_sized_seeds  # noqa: E402
from study_bench import measure  # noqa: E402


def write_study(folder: Path, ct: str, mask: str, engine: str) -> Path:
    """A one-patient study: the clinical table and the manifest (``validation_fraction`` 0.5, so the one patient
    is a training patient and the split has no center to find)."""
    (folder / "clinical.csv").write_text(
        "patient_id,center,ct,mask,afp,child_pugh,bclc,treatment,pfs_months,pfs_event\n"
        f"BENCH,A,{ct},{mask},120,A,B,TACE,7.5,1\n")
    manifest = folder / f"study-{engine}.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "features command bench", "clinical_table": "clinical.csv", "split": {"validation_fraction": 0.5},
        "horizons_months": [6, 12], "treatment_categories": ["TACE", "TACE+systemic"],
        "output_dir": f"output-{engine}", "features": {"params": "paper", "engine": engine}}))
    return manifest


def compile_hccrad() -> Path:
    """Compile hccrad's modules to bytecode beside them (``__pycache__``), as pip does on install."""
    import compileall

    import hccrad

    folder = Path(hccrad.__file__).parent
    compileall.compile_dir(str(folder), quiet=1)
    return folder


def numba_caches() -> list[Path]:
    """The engine's numba cache files (in ``__pycache__`` beside the installed modules)."""
    import hccrad.features.engine as engine

    folder = Path(engine.__file__).parent / "__pycache__"
    return sorted(folder.glob("*.nb[ic]"))


def compare_environment(hccrad: str, folder: Path, ct: str, mask: str, setting: str, repeats: int) -> None:
    """``engine: auto`` alternately without and with ``setting`` (NAME=VALUE), ``repeats`` times each (one run
    first to warm the cache, not counted); prints each run and the medians."""
    import os
    import statistics

    name, _, value = setting.partition("=")
    manifest = write_study(folder, ct, mask, "auto")
    shutil.rmtree(folder / "output-auto", ignore_errors=True)
    measure([hccrad, "features", str(manifest)], folder)
    results: dict[str, list[dict]] = {"as is": [], setting: []}
    for k in range(repeats):
        for label in results:
            shutil.rmtree(folder / "output-auto", ignore_errors=True)
            saved = os.environ.get(name)
            if label == setting:
                os.environ[name] = value
            try:
                result = measure([hccrad, "features", str(manifest)], folder)
            finally:
                if saved is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = saved
            results[label].append(result)
            print(json.dumps({"repeat": k + 1, "environment": label, "cpu_s": round(result["cpu_s"], 2),
                              "system_s": round(result["system_s"], 2)}), flush=True)
    print(f"\n{'environment':<40} {'median CPU s':>12} {'median system s':>16} {'peak MB':>8}")
    for label, runs in results.items():
        print(f"{label:<40} {statistics.median(r['cpu_s'] for r in runs):>12.2f} "
              f"{statistics.median(r['system_s'] for r in runs):>16.2f} {max(r['peak_mb'] for r in runs):>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-cache", action="store_true", help="do not empty numba's cache (skip the first run)")
    parser.add_argument("--compare-env", metavar="NAME=VALUE",
                        help="compare engine: auto with and without this environment variable, alternately")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each side with --compare-env; else later runs of engine: auto, in groups "
                             "around PyRadiomics' runs, whose median is compared")
    parser.add_argument("--reference-repeats", type=int, default=1,
                        help="runs of engine: pyradiomics, each between two groups of engine: auto runs")
    args = parser.parse_args()
    hccrad = shutil.which("hccrad") or str(Path(sys.executable).with_name("hccrad"))  # the venv not activated
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        ct, mask = in_fresh_process(_make_case_worker, str(folder), paper_sized_seeds(1)[0])
        print(f"paper-sized case written in {time.perf_counter() - start:.0f} s", flush=True)
        print(f"hccrad's modules compiled to bytecode in {compile_hccrad()}", flush=True)
        if args.compare_env:
            compare_environment(hccrad, folder, ct, mask, args.compare_env, args.repeats)
            return
        runs = []
        if not args.keep_cache:
            removed = numba_caches()
            for path in removed:
                path.unlink()
            runs.append(("auto, first run after an install (numba cache emptied: "
                         f"{len(removed)} files)", "auto"))
        runs += [(label, "pyradiomics" if label.startswith("pyradiomics") else "auto")
                 for label in interleaved(max(1, args.repeats), max(1, args.reference_repeats))]
        rows = []
        for k, (label, engine) in enumerate(runs):
            manifest = write_study(folder, ct, mask, engine)
            shutil.rmtree(folder / f"output-{engine}", ignore_errors=True)
            result = measure([hccrad, "features", str(manifest)], folder)
            rows.append((label, result))
            print(json.dumps({"run": k + 1, "label": label, **{key: round(value, 2) for key, value in result.items()
                                                                if isinstance(value, float)}}), flush=True)
    import statistics

    print(f"\n{'run':<62} {'tree CPU s':>10} {'wall s':>7} {'peak MB':>8}")
    for label, result in rows:
        print(f"{label:<62} {result['cpu_s']:>10.1f} {result['wall_s']:>7.1f} {result['peak_mb']:>8.0f}")
    references = [result["cpu_s"] for label, result in rows if label.startswith("pyradiomics")]
    reference = statistics.median(references)
    later_cpu = [result["cpu_s"] for label, result in rows if label.startswith("auto, later run")]
    median = statistics.median(later_cpu)
    for label, result in rows:
        if label.startswith("auto, first run"):
            print(f"PyRadiomics (median) / {label}: {reference / result['cpu_s']:.1f}x CPU")
    print(f"auto, every later run: median {median:.2f} s of {len(later_cpu)} runs "
          f"({min(later_cpu):.2f}-{max(later_cpu):.2f} s)")
    if len(references) > 1:
        print(f"pyradiomics: median {reference:.1f} s of {len(references)} runs "
              f"({min(references):.1f}-{max(references):.1f} s)")
    print(f"PyRadiomics / auto, every later run (medians): {reference / median:.1f}x CPU "
          f"({min(references) / max(later_cpu):.1f}x-{max(references) / min(later_cpu):.1f}x over the runs)")
    paired = paired_ratios([(label, result["cpu_s"]) for label, result in rows if "first run" not in label])
    print("each PyRadiomics run / the median of the engine's runs just before and after it: "
          + ", ".join(f"{ratio:.1f}x" for ratio in paired) + f" (median {statistics.median(paired):.1f}x)")


def interleaved(later: int, references: int) -> list[str]:
    """The labels of ``later`` runs of ``engine: auto`` and ``references`` runs of PyRadiomics, in the order they
    run: the engine's runs in ``references + 1`` groups as equal as possible, one PyRadiomics run between each two
    groups (the machine's speed drifts within minutes, so each reference run has engine runs on both sides)."""
    groups = [later // (references + 1) + (1 if k < later % (references + 1) else 0) for k in range(references + 1)]
    labels, done = [], 0
    for k, size in enumerate(groups):
        labels += [f"auto, later run {done + j + 1}" for j in range(size)]
        done += size
        if k < references:
            labels.append("pyradiomics" if references == 1 else f"pyradiomics run {k + 1}")
    return labels


def paired_ratios(runs: list[tuple[str, float]]) -> list[float]:
    """For each PyRadiomics run of ``runs`` ((label, CPU s) in the order they ran), its CPU over the median CPU of
    the engine's runs between the PyRadiomics run before it and the one after it."""
    import statistics

    ratios = []
    positions = [k for k, (label, _) in enumerate(runs) if label.startswith("pyradiomics")]
    for j, position in enumerate(positions):
        start = positions[j - 1] + 1 if j > 0 else 0
        stop = positions[j + 1] if j + 1 < len(positions) else len(runs)
        neighbours = [cpu for label, cpu in runs[start:stop] if label.startswith("auto")]
        if neighbours:
            ratios.append(runs[position][1] / statistics.median(neighbours))
    return ratios


if __name__ == "__main__":
    main()
