"""Process settings for computing cases with hccrad's feature engine: malloc, the garbage collector, BLAS."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: glibc's malloc settings for a large case computed with hccrad's engine (bytes): a block up to MMAP_THRESHOLD
#: (128 MiB) comes from the heap, and freed memory stays there for the next filtered image unless TRIM_THRESHOLD
#: (256 MiB) is free at its top. glibc's own thresholds map each array above 32 MiB on its own and unmap it when
#: freed, so every filtered image's arrays fault in again, page by page; at 64 MiB each the heap still shrank and
#: grew again within a paper-sized case (docs/features.md, "Memory reuse", has the benches).
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": 1 << 27, "MALLOC_TRIM_THRESHOLD_": 1 << 28}
#: A case whose CT holds more voxels than this (its float32 copy is above glibc's largest adaptive mmap threshold,
#: 32 MiB) takes :data:`MALLOC_SETTINGS`. A smaller case has no array that glibc maps on its own, and the settings
#: would only keep freed memory: 26-29 MB more peak on the 512 x 512 x 20 DICOM case.
LARGE_CASE_VOXELS = 1 << 23


def wants_malloc_settings(engine: str, n_voxels: int) -> bool:
    """Whether a case of ``n_voxels`` CT voxels computed with ``engine`` takes :data:`MALLOC_SETTINGS`: hccrad's
    engine (``auto``, ``hccrad``) on a CT above :data:`LARGE_CASE_VOXELS`. Never PyRadiomics, whose peak the settings
    raise (bench/features_bench.py: 3344 MB with them on the paper-sized case, 2688 MB without)."""
    return engine != "pyradiomics" and n_voxels > LARGE_CASE_VOXELS


def _glibc_function(name: str):  # noqa: ANN202  (a ctypes function, or None)
    """glibc's function ``name`` through ctypes, or None where the C library is not glibc."""
    import ctypes
    import ctypes.util

    for find in (lambda: "libc.so.6", lambda: ctypes.util.find_library("c")):  # the search runs ldconfig: last
        library = find()
        if library is None:
            continue
        try:
            return getattr(ctypes.CDLL(library), name)
        except (OSError, AttributeError):
            continue
    return None


def keep_freed_memory_for_reuse() -> bool:
    """Apply :data:`MALLOC_SETTINGS` to this process (``mallopt``; glibc only: False elsewhere, where nothing
    changes). They stay for the rest of the process."""
    import ctypes

    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    codes = {"MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    return all(mallopt(ctypes.c_int(codes[name]), ctypes.c_int(value)) == 1 for name, value in MALLOC_SETTINGS.items())


def release_freed_memory() -> bool:
    """Hand the free memory that malloc keeps back to the system (glibc's ``malloc_trim(0)``: the heap's top and
    every whole free page inside it); False where the C library is not glibc. The features command calls it once
    its cases are computed, before the feature table is assembled and written: the heap kept what the cases freed
    (glibc keeps up to its trim threshold, more under :data:`MALLOC_SETTINGS`), and the table's arrays and its
    Parquet and CSV buffers would otherwise come on top of it."""
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    import ctypes

    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


_IMPORTS_FROZEN: list[bool] = []


def freeze_imported_objects() -> bool:
    """Move every object alive now (the modules the features stage imported: numpy, SciPy, pandas, SimpleITK,
    numba, and their caches) out of the garbage collector's reach, once per process (``gc.freeze``). They live
    as long as the process, yet each full collection walked them all (gc_collect_main took about 5% of the
    features command's samples under perf on the paper-sized case). Objects made later are collected as before.
    Returns whether this call froze them (False when an earlier call did)."""
    if _IMPORTS_FROZEN:
        return False
    gc.freeze()
    _IMPORTS_FROZEN.append(True)
    return True


_BLAS_LIMITED: list[bool] = []


def single_threaded_blas() -> bool:
    """Limit the BLAS libraries loaded in this process (numpy's and SciPy's OpenBLAS) to one thread, once per
    process (threadpoolctl). The engine's only BLAS work is small: the eigenvalues of the GLCM's per-angle
    matrices (at most Ng x Ng) for MCC and the 3 x 3 shape covariance. OpenBLAS's worker threads otherwise wake
    for them and spin after each call (blas_thread_server took about 4% of the features command's samples under
    perf on the paper-sized case), and a cohort already runs one process per core. Returns whether this call
    set the limit."""
    if _BLAS_LIMITED:
        return False
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    _BLAS_LIMITED.append(True)
    return True


@contextlib.contextmanager
def imports_uncollected() -> Iterator[None]:
    """Run the block (a command's imports of its stages' modules) with the garbage collector paused, then freeze
    the objects alive at its end (``gc.freeze``) and resume collecting. Importing numpy, SciPy, pandas, numba and
    SimpleITK makes hundreds of thousands of long-lived objects; the collections they trigger walk them all
    again and again (most of the collector's samples under perf came from the command's first second)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()

