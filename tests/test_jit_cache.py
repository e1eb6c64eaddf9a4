"""The engine's kernels load from numba's on-disk cache without numba's compiler registries (features issue #33)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import SimpleITK as sitk

from hccrad.features.engine import jit, region_features

PARAMS = {"setting": {"binWidth": 25, "label": 1},
          "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}, "Wavelet": {}},
          "featureClass": {name: None for name in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}}

#: A fresh process: counts numba's context refreshes, computes the phantom's features, prints both as JSON.
FRESH_PROCESS = """
import json, sys
import numba.core.base
calls = []
original = numba.core.base.BaseContext.refresh
def counted(self):
    calls.append(1)
    return original(self)
numba.core.base.BaseContext.refresh = counted
sys.path.insert(0, sys.argv[1])
from test_jit_cache import phantom_features
features = phantom_features()
refreshes = len(calls)
not_needed = [name for name in ("numba.np.arraymath", "scipy.linalg") if name in sys.modules]
# a compile after the lean load: numba refreshes and imports what it needs; the maximum of an int64 array is
# one of the implementations whose environment the load rebuilt without importing its module
import numba, numpy
compiled = numba.njit(lambda a: numpy.max(a) + numpy.zeros(3).sum())(numpy.array([3, 9, 4], dtype=numpy.int64))
print(json.dumps({"refreshes": refreshes, "features": features, "not_needed_imports": not_needed,
                  "compiled_after": float(compiled), "arraymath_after": "numba.np.arraymath" in sys.modules}))
"""


def phantom() -> tuple[sitk.Image, np.ndarray]:
    """A textured ellipsoid: the image and its region."""
    rng = np.random.default_rng(11)
    values = (40.0 + 30.0 * rng.standard_normal((18, 36, 34))).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.8, 0.8, 2.0))
    z, y, x = np.ogrid[:18, :36, :34]
    region = ((z - 9) / 7.0) ** 2 + ((y - 18) / 14.0) ** 2 + ((x - 17) / 12.0) ** 2 <= 1.0
    return image, region


def phantom_features() -> dict[str, float]:
    """Every class on the phantom's Original, LoG and Wavelet images, with the engine."""
    image, region = phantom()
    return {name: float(value) for name, value in region_features(image, region, PARAMS, 5).items()}


def _fresh_run(tmp_path) -> dict:
    output = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(Path(__file__).parent)],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    return json.loads(output.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(jit._lean_cache_class() is None, reason=f"numba {numba.__version__} is not one the lean cache "
                    f"loading was checked on ({', '.join(jit.CHECKED_NUMBA_VERSIONS)}): numba's own loading is used")
def test_kernels_load_from_the_cache_without_refresh_and_compute_the_same_features(tmp_path):
    """A fresh process on a warm cache loads every kernel without one context refresh (numba's compile pipeline
    would refresh, so this also shows nothing was compiled) and without importing numba's array implementations
    (nor, through them, SciPy's BLAS); its features equal PyRadiomics' (the suite's tolerance) and this process's,
    bit for bit; a function compiled afterwards in that process still compiles and computes."""
    from tests.test_feature_engine import assert_same_features, pyradiomics

    expected = phantom_features()
    _fresh_run(tmp_path)  # compiles whatever the cache lacks (a refresh is then numba's own, before compiling)
    warm = _fresh_run(tmp_path)
    assert warm["refreshes"] == 0
    assert warm["not_needed_imports"] == []  # numba's array implementations and SciPy's BLAS stay unimported
    assert warm["compiled_after"] == 9.0 and warm["arraymath_after"]
    assert_same_features(warm["features"], pyradiomics(*phantom(), PARAMS, 5))
    assert warm["features"].keys() == expected.keys()
    mismatched = [name for name, value in expected.items()
                  if not (value == warm["features"][name] or (np.isnan(value) and np.isnan(warm["features"][name])))]
    assert mismatched == []


def test_unchecked_numba_keeps_numbas_own_cache(monkeypatch):
    """On a numba release not in CHECKED_NUMBA_VERSIONS nothing is replaced; on a checked one every cached
    nopython kernel of a module gets the lean cache, and a dispatcher without caching is left alone."""
    from numba.core.caching import FunctionCache

    @numba.njit(cache=True)
    def cached(x):
        return x + 1

    @numba.njit
    def uncached(x):
        return x + 1

    monkeypatch.setattr(jit, "_LEAN_CACHE", [])
    monkeypatch.setattr(numba, "__version__", "0.1.0")
    assert jit.load_without_refresh({"cached": cached, "uncached": uncached}) == 0
    assert type(cached._cache) is FunctionCache

    monkeypatch.setattr(jit, "_LEAN_CACHE", [])
    monkeypatch.setattr(numba, "__version__", f"{jit.CHECKED_NUMBA_VERSIONS[0]}.0")
    assert jit.load_without_refresh({"cached": cached, "uncached": uncached, "other": 3}) == 1
    assert isinstance(cached._cache, FunctionCache) and type(cached._cache) is not FunctionCache
    assert cached(1) == 2 and uncached(1) == 2
