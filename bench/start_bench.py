"""What the start of `hccrad features` costs: each large import's CPU and resident memory, and the loading of the
engine's compiled kernels from numba's cache.

Each figure comes from fresh Python processes (the median of ``--repeats``, with the range). An import is measured
on top of the others that the command loads (numpy, SimpleITK, pandas, pyarrow's Parquet, numba, pydantic, typer,
rich, PyRadiomics' extractor for the parameter check), so that what the modules share is not counted twice:

* ``numba``, ``pandas``: imported by the command;
* ``scipy.ndimage``: no longer imported by the command (the mask helpers use SimpleITK);
* ``numba.np.arraymath``: numba's array implementations, which numba's own cache loader imports to rebuild the
  cached kernels' environments, and with them SciPy's BLAS; hccrad's loader no longer does. Measured after the
  engine's kernels are loaded (a small phantom's features computed first), where numba's loader would import it.

``kernel loading`` is the CPU spent in numba's dispatchers while a fresh process computes every feature class of a
small phantom (Original, LoG and Wavelet images) with hccrad's engine on a warm cache: loading the kernels into LLVM
and the first calls' type dispatch (a run before fills the cache).

    python bench/start_bench.py
    python bench/start_bench.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What the features command imports, besides the module measured.
COMMAND_IMPORTS = ["numpy", "SimpleITK", "pandas", "pyarrow.parquet", "numba", "pydantic", "typer", "rich",
                   "radiomics.featureextractor"]
MEASURED = ["numba", "pandas", "scipy.ndimage", "numba.np.arraymath"]

IMPORT_PROBE = """
import importlib, json, resource, sys
import psutil
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
if sys.argv[3:]:
    sys.path.insert(0, sys.argv[3])
    from test_jit_cache import phantom_features
    phantom_features()
process = psutil.Process()
rss, start = process.memory_info().rss, cpu()
importlib.import_module(sys.argv[2])
print(json.dumps({"cpu_s": cpu() - start, "rss_mb": (process.memory_info().rss - rss) / 2**20}))
"""

KERNEL_PROBE = """
import json, resource, sys
import numba.core.dispatcher as dispatcher
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
spent = [0.0, 0]
original = dispatcher.Dispatcher._compile_for_args
def counted(self, *args, **kwargs):
    start = cpu()
    try:
        return original(self, *args, **kwargs)
    finally:
        spent[0] += cpu() - start
        spent[1] += 1
dispatcher.Dispatcher._compile_for_args = counted
sys.path.insert(0, sys.argv[1])
from test_jit_cache import phantom_features
phantom_features()
print(json.dumps({"cpu_s": spent[0], "kernels": spent[1]}))
"""


def run_probe(code: str, *arguments: str) -> dict:
    """One fresh process; its JSON line."""
    output = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, check=True,
                            cwd=ROOT)
    return json.loads(output.stdout.strip().splitlines()[-1])


def summary(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per figure")
    args = parser.parse_args()
    rows = []
    tests = str(ROOT / "tests")
    run_probe(KERNEL_PROBE, tests)  # fills numba's cache where it lacks the phantom's kernels
    for name in MEASURED:
        context = [module for module in COMMAND_IMPORTS if module != name]
        after_kernels = [tests] if name == "numba.np.arraymath" else []
        runs = [run_probe(IMPORT_PROBE, json.dumps(context), name, *after_kernels) for _ in range(args.repeats)]
        row = {"step": f"import {name}", "cpu_s": [r["cpu_s"] for r in runs], "rss_mb": [r["rss_mb"] for r in runs]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    runs = [run_probe(KERNEL_PROBE, tests) for _ in range(args.repeats)]
    row = {"step": f"kernel loading ({runs[0]['kernels']} first calls)", "cpu_s": [r["cpu_s"] for r in runs],
           "rss_mb": None}
    print(json.dumps(row), flush=True)
    rows.append(row)
    print(f"\nmedian of {args.repeats} fresh processes (range)")
    print(f"{'step':45s} {'CPU s':>22s} {'resident MB':>22s}")
    for row in rows:
        memory = summary(row["rss_mb"], 1) if row["rss_mb"] else ""
        print(f"{row['step']:45s} {summary(row['cpu_s'], 3):>22s} {memory:>22s}")


if __name__ == "__main__":
    main()
