"""The process settings of the features stage and the `hccrad` command: the garbage collector, BLAS threads and
numpy's huge-page advice, checked against the gc module, threadpoolctl and the environment they set."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from hccrad.cli import main as cli_main
from hccrad.features import memory


@pytest.mark.parametrize(("given", "expected_blas"), [
    ({}, "1"),
    ({"OMP_NUM_THREADS": "4"}, None),
    ({"OPENBLAS_NUM_THREADS": "3"}, "3"),
    ({"GOTO_NUM_THREADS": "2"}, None),
])
def test_command_defaults_leave_a_users_choice_alone(monkeypatch, given, expected_blas):
    for name in (*cli_main.BLAS_THREAD_VARIABLES, "NUMPY_MADVISE_HUGEPAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    cli_main._process_defaults()
    import os

    assert os.environ.get("OPENBLAS_NUM_THREADS") == expected_blas
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    cli_main._process_defaults()
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "1"


def test_the_command_starts_numpy_with_the_defaults():
    """In a fresh `hccrad` process numpy sees one BLAS thread and no huge-page advice (threadpoolctl and numpy's
    own switch report them)."""
    code = ("import sys; from hccrad.cli import main as m; m._process_defaults(); import numpy as np; "
            "from threadpoolctl import threadpool_info; "
            "from numpy._core.multiarray import _get_madvise_hugepage; "
            "print({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}, _get_madvise_hugepage())")
    env = {key: value for key, value in __import__("os").environ.items()
           if key not in (*cli_main.BLAS_THREAD_VARIABLES, "NUMPY_MADVISE_HUGEPAGE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "{1} False"


def test_imports_uncollected_pause_then_freeze_and_restore_the_collector():
    was_enabled = gc.isenabled()
    frozen_before = gc.get_freeze_count()
    try:
        gc.enable()
        with memory.imports_uncollected():
            assert not gc.isenabled()
            made = [[] for _ in range(1000)]  # long-lived objects made while importing
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen_before + len(made)
        gc.disable()
        with memory.imports_uncollected():
            pass
        assert not gc.isenabled()  # a paused collector stays paused
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def test_single_threaded_blas_sets_every_blas_library_to_one_thread(monkeypatch):
    import numpy  # noqa: F401  (loads numpy's OpenBLAS)
    import scipy.linalg  # noqa: F401  (and SciPy's)
    from threadpoolctl import threadpool_info, threadpool_limits

    monkeypatch.setattr(memory, "_BLAS_LIMITED", [])
    with threadpool_limits(limits=None):  # restores the test process's threads afterwards
        assert memory.single_threaded_blas() is True
        assert memory.single_threaded_blas() is False  # once per process
        blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
        assert blas and all(info["num_threads"] == 1 for info in blas)
