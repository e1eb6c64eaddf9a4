"""Peak memory of the command a user runs, `hccrad features`, beside PyRadiomics, parameter file by parameter file.

For each parameter file, `hccrad features study.yaml` runs in a fresh process tree twice on the same case: with
``engine: auto`` (the default: hccrad's engine) and with ``engine: pyradiomics``. Printed for each: the largest
peak resident memory of any process of the tree (MB; the command runs one case in its own process), the CPU
seconds of the tree, and whether hccrad's peak is at or below PyRadiomics'.

The parameter files: PyRadiomics' own example files (``Params.yaml``, ``exampleCT.yaml``, ``exampleMR_3mm.yaml``,
``exampleMR_5mm.yaml``, ``exampleMR_NoResampling.yaml``, as in PyRadiomics' ``examples/exampleSettings``), the
paper's and the demo's, and the variants the features issue tried (binCount, force2D, resegmentation, Square /
Logarithm / Exponential, haar level 2, distances, weighting).

Cases (``--case``):

* ``dicom`` (default): the real DICOM series of ``../shared/reference/ct/totalseg_dicom`` (512 x 512 x 20 at 0.98 x
  0.98 x 2 mm, int16) with its liver and portal vein and a 12 mm lesion drawn in;
* ``toy``: the three real GE slices of ``../shared/reference/ct/dcmqi_3slice`` with their liver and a 10 mm lesion
  drawn in, a case so small that the command's imports decide its peak and start;
* ``lits``: a LiTS-sized synthetic CT (512 x 512 x 400 at 0.74 x 0.74 x 0.8 mm; liver 175 x 204 x 259 voxels) with
  the paper's parameter file only (PyRadiomics takes minutes and several GB there; ``--no-reference`` skips it).

    python bench/memory_bench.py
    python bench/memory_bench.py --files paper exampleCT
    python bench/memory_bench.py --case lits --files paper
    python bench/memory_bench.py --files Params resegment --phases
    python bench/memory_bench.py --repeats 3

``--repeats N`` runs each engine N times on each file, alternately (hccrad, PyRadiomics, hccrad, ...), and prints
the median peak with the range, so that a close file is not ranked by one run's chance. The verdict compares the
medians. (The ``--phases`` runs carry a probe in their process and peak higher than the plain runs, PyRadiomics'
more so: compare plain runs with plain runs.)

``--phases`` also runs each command once more with a probe in its process and prints where its peak falls: the peak
while the cases are read and computed (imports included), the resident memory when they are done, and the peak of
the whole command, which includes assembling and writing the feature table (CSV, Parquet, JSON).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study_bench import measure  # noqa: E402

ALL_CLASSES = {"shape": None, "firstorder": None, "glcm": None, "glrlm": None, "glszm": None, "gldm": None,
               "ngtdm": None}
LOG_SIGMAS = [1.0, 2.0, 3.0, 4.0, 5.0]
#: PyRadiomics' example parameter files (examples/exampleSettings), with their settings.
PYRADIOMICS_FILES = {
    "Params": {"setting": {"binWidth": 25, "label": 1, "interpolator": "sitkBSpline", "resampledPixelSpacing": None,
                           "weightingNorm": None},
               "imageType": {"Original": {}}, "featureClass": ALL_CLASSES},
    "exampleCT": {"setting": {"binWidth": 25, "label": 1, "interpolator": "sitkBSpline",
                              "resampledPixelSpacing": [1, 1, 1], "voxelArrayShift": 1000},
                  "imageType": {"Original": {}, "LoG": {"sigma": LOG_SIGMAS}, "Wavelet": {}},
                  "featureClass": {"shape": None, "firstorder": None, "glcm": None, "glrlm": None, "glszm": None,
                                   "gldm": None}},
    "exampleMR_3mm": {"setting": {"normalize": True, "normalizeScale": 100, "binWidth": 5, "label": 1,
                                  "interpolator": "sitkBSpline", "resampledPixelSpacing": [3, 3, 3],
                                  "voxelArrayShift": 300},
                      "imageType": {"Original": {}, "LoG": {"sigma": LOG_SIGMAS}, "Wavelet": {}},
                      "featureClass": ALL_CLASSES},
    "exampleMR_5mm": {"setting": {"normalize": True, "normalizeScale": 100, "binWidth": 5, "label": 1,
                                  "interpolator": "sitkBSpline", "resampledPixelSpacing": [5, 5, 5],
                                  "voxelArrayShift": 300},
                      "imageType": {"Original": {}, "LoG": {"sigma": LOG_SIGMAS}, "Wavelet": {}},
                      "featureClass": ALL_CLASSES},
    "exampleMR_NoResampling": {"setting": {"normalize": True, "normalizeScale": 100, "binWidth": 5, "label": 1,
                                           "voxelArrayShift": 300},
                               "imageType": {"Original": {}, "LoG": {"sigma": LOG_SIGMAS}, "Wavelet": {}},
                               "featureClass": ALL_CLASSES},
}
#: The variants the features issue tried beside PyRadiomics' files.
VARIANTS = {
    "binCount32-resampled2mm-LoG3": {"setting": {"binCount": 32, "label": 1, "resampledPixelSpacing": [2, 2, 2],
                                                 "interpolator": "sitkBSpline"},
                                     "imageType": {"Original": {}, "LoG": {"sigma": [3.0]}, "Wavelet": {}},
                                     "featureClass": ALL_CLASSES},
    "force2D": {"setting": {"binWidth": 25, "label": 1, "force2D": True, "force2Ddimension": 0},
                "imageType": {"Original": {}, "Wavelet": {}}, "featureClass": ALL_CLASSES},
    "resegment": {"setting": {"binWidth": 25, "label": 1, "resegmentRange": [-50, 300], "resegmentMode": "absolute"},
                  "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}}, "featureClass": ALL_CLASSES},
    "square-log-exp": {"setting": {"binWidth": 25, "label": 1, "preCrop": True},
                       "imageType": {"Original": {}, "Square": {}, "SquareRoot": {}, "Logarithm": {},
                                     "Exponential": {}}, "featureClass": ALL_CLASSES},
    "haar-level2": {"setting": {"binWidth": 25, "label": 1, "resampledPixelSpacing": [1, 1, 1],
                                "interpolator": "sitkBSpline"},
                    "imageType": {"Original": {}, "Wavelet": {"wavelet": "haar", "level": 2}},
                    "featureClass": ALL_CLASSES},
    "distances-weighting": {"setting": {"binWidth": 25, "label": 1, "distances": [1, 2],
                                        "weightingNorm": "euclidean"},
                            "imageType": {"Original": {}, "Gradient": {}}, "featureClass": ALL_CLASSES},
}


#: Runs `hccrad features <manifest>` in this process and writes its memory by phase to ``phases.json``: the peak
#: (VmHWM) and the resident memory (VmRSS) when the cases are done (the table not yet assembled), and the peak at exit.
PHASES = ("import json, sys\n"
          "import hccrad.features.cohort as cohort\n"
          "from hccrad.cli.main import main\n"
          "def status():\n"
          "    fields = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)\n"
          "    return {key: int(fields[key].split()[0]) / 1024 for key in ('VmHWM', 'VmRSS')}\n"
          "marks = {}\n"
          "assemble = cohort.assemble\n"
          "def marked(*args, **kwargs):\n"
          "    marks['cases_done'] = status()\n"
          "    return assemble(*args, **kwargs)\n"
          "cohort.assemble = marked\n"
          "sys.argv = ['hccrad', 'features', sys.argv[1]]\n"
          "code = 0\n"
          "try:\n"
          "    main()\n"
          "except SystemExit as exit:\n"
          "    code = exit.code\n"
          "marks['exit'] = status()\n"
          "open('phases.json', 'w').write(json.dumps(marks))\n"
          "sys.exit(code)\n")


def phases(folder: Path, manifest: Path) -> dict[str, int]:
    """The command's memory by phase (MB): peak while the cases are computed, resident when they are done, peak of
    the whole command (the feature table written)."""
    measure([sys.executable, "-c", PHASES, str(manifest)], folder)
    marks = json.loads((folder / "phases.json").read_text())
    return {"cases_peak_mb": round(marks["cases_done"]["VmHWM"]), "cases_done_mb": round(marks["cases_done"]["VmRSS"]),
            "command_peak_mb": round(marks["exit"]["VmHWM"])}


def dicom_case(folder: Path) -> tuple[str, str]:
    """The real DICOM series with its TotalSegmentator liver (1) and portal vein (3) and a 12 mm lesion (2)."""
    from tests.conftest import shared_path
    from tests.test_features_cohort import draw_lesion, totalseg_labels, write_like

    from hccrad.io.images import read_image, read_mask

    dicom = shared_path("reference", "ct", "totalseg_dicom")
    series = read_image(dicom / "series")
    labels = draw_lesion(totalseg_labels(read_mask(dicom / "example_seg_dicom.nii.gz", series, allowed_labels=None)),
                         series.GetSpacing()[::-1], 12.0)
    write_like(labels.astype(np.uint8), series, folder / "mask.nii.gz")
    return str(dicom / "series"), str(folder / "mask.nii.gz")


def toy_case(folder: Path) -> tuple[str, str]:
    """Three real GE slices (DICOM) with their NRRD liver (1) and a 10 mm lesion (2)."""
    import SimpleITK as sitk
    from tests.conftest import shared_path
    from tests.test_features_cohort import draw_lesion, write_like

    from hccrad.io.images import read_image, read_mask

    slices = shared_path("reference", "ct", "dcmqi_3slice")
    image = read_image(slices)
    labels = sitk.GetArrayFromImage(read_mask(slices / "liver_seg.nrrd", image)).astype(np.uint8)
    write_like(draw_lesion(labels, image.GetSpacing()[::-1], 10.0), image, folder / "mask.nii.gz")
    return str(slices), str(folder / "mask.nii.gz")


def lits_case(folder: Path) -> tuple[str, str]:
    """A LiTS-sized synthetic CT: 512 x 512 x 400 at 0.74 x 0.74 x 0.8 mm, int16, with its labels."""
    import SimpleITK as sitk
    from features_bench import paper_sized_seeds

    from hccrad.synth.anatomy import Grid, acquire, render_case
    from hccrad.synth.patients import draw_patient
    from hccrad.synth.writers import to_sitk

    seed = paper_sized_seeds(1)[0]
    grid = Grid(shape=(400, 512, 512), spacing=(0.8, 380 / 512, 380 / 512), origin=(-175.0, -190.0, -170.0))
    rendered = render_case(draw_patient("BENCH", "D", seed, 0.0).anatomy, grid)
    sitk.WriteImage(to_sitk(acquire(rendered, 1.0, 14.0, 0.8, seed), grid), str(folder / "ct.nii.gz"))
    sitk.WriteImage(to_sitk(rendered.labels, grid), str(folder / "mask.nii.gz"))
    return str(folder / "ct.nii.gz"), str(folder / "mask.nii.gz")


def write_study(folder: Path, ct: str, mask: str, name: str, params: dict | str, engine: str) -> Path:
    (folder / "clinical.csv").write_text(
        "patient_id,center,ct,mask,afp,child_pugh,bclc,treatment,pfs_months,pfs_event\n"
        f"BENCH,A,{ct},{mask},120,A,B,TACE,7.5,1\n")
    if isinstance(params, dict):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(params))
        params = f"{name}.yaml"
    manifest = folder / f"study-{name}-{engine}.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "memory bench", "clinical_table": "clinical.csv", "split": {"validation_fraction": 0.5},
        "horizons_months": [6, 12], "treatment_categories": ["TACE", "TACE+systemic"],
        "output_dir": f"output-{name}-{engine}", "features": {"params": params, "engine": engine}}))
    return manifest


def main() -> None:
    files = {"paper": "paper", "demo": "demo", **PYRADIOMICS_FILES, **VARIANTS}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("dicom", "toy", "lits"), default="dicom")
    parser.add_argument("--files", nargs="*", default=None, help=f"parameter files (default all: {', '.join(files)})")
    parser.add_argument("--no-reference", action="store_true", help="hccrad's engine only")
    parser.add_argument("--phases", action="store_true", help="also where each command's peak falls")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each engine per file, alternately; the "
                        "median peak is compared")
    args = parser.parse_args()
    chosen = args.files or (["paper"] if args.case == "lits" else list(files))
    hccrad = shutil.which("hccrad") or str(Path(sys.executable).with_name("hccrad"))
    engines = ["auto"] + ([] if args.no_reference else ["pyradiomics"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ct, mask = {"dicom": dicom_case, "toy": toy_case, "lits": lits_case}[args.case](folder)
        print(f"case {args.case}: {ct}", flush=True)
        for name in chosen:
            row = {"file": name}
            runs = {engine: [] for engine in engines}
            for _ in range(args.repeats):
                for engine in engines:
                    manifest = write_study(folder, ct, mask, name, files[name], engine)
                    shutil.rmtree(folder / yaml.safe_load(manifest.read_text())["output_dir"], ignore_errors=True)
                    result = measure([hccrad, "features", str(manifest)], folder)
                    if result["status"] != 0:
                        raise RuntimeError(f"{name} with {engine}: {result['stderr']}")
                    runs[engine].append(result)
            for engine in engines:
                manifest = write_study(folder, ct, mask, name, files[name], engine)
                peaks = [result["peak_mb"] for result in runs[engine]]
                row[engine] = {"peak_mb": round(float(np.median(peaks))), "peak_range_mb": [round(min(peaks)),
                                                                                            round(max(peaks))],
                               "cpu_s": round(float(np.median([result["cpu_s"] for result in runs[engine]])), 1)}
                if args.phases:
                    shutil.rmtree(folder / yaml.safe_load(manifest.read_text())["output_dir"], ignore_errors=True)
                    row[engine]["phases"] = phases(folder, manifest)
            rows.append(row)
            print(json.dumps(row), flush=True)
    def peak(result: dict) -> str:  # the median, with the range over the runs when there are several
        low, high = result["peak_range_mb"]
        return f"{result['peak_mb']}" + (f" ({low}-{high})" if args.repeats > 1 else "")

    what = f"median of {args.repeats} runs, " if args.repeats > 1 else ""
    print(f"\n{what}peak MB and CPU s")
    print(f"{'parameter file':<32} {'hccrad peak MB':>17} {'PyRadiomics peak MB':>20} {'ratio':>6} "
          f"{'hccrad CPU s':>13} {'PyRadiomics CPU s':>18}")
    for row in rows:
        ours, reference = row["auto"], row.get("pyradiomics")
        if reference:
            print(f"{row['file']:<32} {peak(ours):>17} {peak(reference):>20} "
                  f"{ours['peak_mb'] / reference['peak_mb']:>6.2f} {ours['cpu_s']:>13.1f} {reference['cpu_s']:>18.1f}")
        else:
            print(f"{row['file']:<32} {peak(ours):>17} {'':>20} {'':>6} {ours['cpu_s']:>13.1f}")
    if args.phases:
        print(f"\n{'parameter file':<32} {'engine':<12} {'cases peak MB':>14} {'cases done MB':>14} "
              f"{'command peak MB':>16}")
        for row in rows:
            for engine in engines:
                marks = row[engine]["phases"]
                print(f"{row['file']:<32} {engine:<12} {marks['cases_peak_mb']:>14} {marks['cases_done_mb']:>14} "
                      f"{marks['command_peak_mb']:>16}")
    if all("pyradiomics" in row for row in rows):
        above = [row["file"] for row in rows if row["auto"]["peak_mb"] > row["pyradiomics"]["peak_mb"]]
        print("hccrad's peak at or below PyRadiomics' on every file" if not above
              else f"hccrad's peak above PyRadiomics' on: {', '.join(above)}")


if __name__ == "__main__":
    main()
