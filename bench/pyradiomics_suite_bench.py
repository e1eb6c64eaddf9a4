"""PyRadiomics' own regression suite through hccrad's three engine modes: the largest differences and the time.

Every (test, feature class) of ``../shared/reference/pyradiomics_baseline/baseline`` whose images are present runs
with ``cast_to_float32: false`` (the image as stored, as PyRadiomics' suite reads it) through ``engine: hccrad``,
``auto`` and ``pyradiomics``. Printed per mode: the largest relative difference from the stored baseline (with the
test and feature; PyRadiomics' own suite allows 3%), the same without brain1's shape class (whose baseline predates
a change of PyRadiomics' mesh), the largest relative difference from the installed PyRadiomics, and the CPU time.

    python bench/pyradiomics_suite_bench.py
"""

from __future__ import annotations

import ast
import csv
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

BASELINE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "pyradiomics_baseline"


def tests() -> list[dict]:
    found = []
    for path in sorted((BASELINE / "baseline").glob("baseline_*.csv")):
        feature_class = path.stem.removeprefix("baseline_")
        with path.open() as handle:
            rows = list(csv.reader(handle))
        table = {row[0]: row[1:] for row in rows[1:]}
        for k, test in enumerate(rows[0][1:]):
            case = table["diagnostics_Configuration_TestCase"][k]
            if not (BASELINE / f"{case}_image.nrrd").exists():
                continue
            settings = ast.literal_eval(table["diagnostics_Configuration_Settings"][k])
            if feature_class == "shape" and "resegmentRange" in settings:
                settings["resegmentRange"] = None
            found.append({"test": test, "class": feature_class, "case": case, "settings": settings,
                          "types": ast.literal_eval(table["diagnostics_Configuration_EnabledImageTypes"][k]),
                          "values": {name: float(values[k]) for name, values in table.items()
                                     if not name.startswith(("diagnostics", "general_info"))}})
    return found


def compute(test: dict, engine: str) -> dict[str, float]:
    from hccrad.features.extract import region_radiomics

    image = sitk.ReadImage(str(BASELINE / f"{test['case']}_image.nrrd"))
    region = sitk.GetArrayFromImage(sitk.ReadImage(str(BASELINE / f"{test['case']}_label.nrrd"))) == 1
    params = {"setting": test["settings"], "imageType": test["types"], "featureClass": {test["class"]: None}}
    compute_features = region_radiomics(engine, params, test["settings"].get("padDistance", 5), cast_to_float32=False)
    return {name[2:]: value for name, value in compute_features(image, region, "R").items()}


def relative(value: float, expected: float) -> float:
    if value == expected or (np.isnan(value) and np.isnan(expected)):
        return 0.0
    return abs(value - expected) / max(abs(value), abs(expected))


def main() -> None:
    if not (BASELINE / "baseline").is_dir():
        sys.exit(f"PyRadiomics' baseline is not available: {BASELINE}")
    suite = tests()
    print(f"{len(suite)} (test, class) pairs with their images")
    results: dict[str, list[dict[str, float]]] = {}
    seconds = {}
    for engine in ("pyradiomics", "hccrad", "auto"):
        start = time.process_time()
        results[engine] = [compute(test, engine) for test in suite]
        seconds[engine] = time.process_time() - start
    print(f"\n{'mode':<12} {'CPU s':>6}  {'largest vs baseline':<70} {'without brain1 shape':>21} "
          f"{'vs installed PyRadiomics':>25}")
    for engine, outputs in results.items():
        worst = (0.0, "")
        worst_other = 0.0
        worst_installed = 0.0
        for test, ours, reference in zip(suite, outputs, results["pyradiomics"], strict=True):
            for name, expected in test["values"].items():
                key = f"original_{test['class']}_{name.split('_')[-1]}"
                difference = relative(ours[key], expected)
                if difference > worst[0]:
                    worst = (difference, f"{test['test']} {key}")
                if not (test["case"] == "brain1" and test["class"] == "shape"):
                    worst_other = max(worst_other, difference)
            worst_installed = max([worst_installed] + [relative(ours[key], reference[key]) for key in reference])
        print(f"{engine:<12} {seconds[engine]:>6.1f}  {f'{worst[0]:.2e} ({worst[1]})':<70} {worst_other:>21.2e} "
              f"{worst_installed:>25.2e}")


if __name__ == "__main__":
    main()
