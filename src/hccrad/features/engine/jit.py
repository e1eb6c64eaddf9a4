"""Loading the engine's compiled kernels from numba's on-disk cache without rebuilding numba's compiler registries.

numba loads a cached kernel through ``Cache.load_overload``, which first calls ``target_context.refresh()``: it
imports about 60 of numba's implementation modules and installs every typing and lowering registry, which only
compiling needs (numba's own compile pipeline refreshes the contexts again before it compiles), and whose objects
then stay resident for the rest of the process. Loading machine code needs only the NRT runtime that the code calls
(``rtsys.initialize``). The numba maintainers considered the same for cache hits (numba pull request 9806: refresh
only where object mode is used).

A cached kernel also carries the ``Environment`` (the globals and Python constants that object-mode code and the
boxing of Python objects read) of every numba implementation it inlines, and numba rebuilds each by importing the
module that defined it: for the engine that is ``numba.np.arraymath``, whose import loads SciPy's BLAS
(``import scipy.linalg.cython_blas``), some 0.3 s and 18 MB that nothing in the command uses
(bench/start_bench.py). Nopython code never reads an environment's globals, so an implementation module of numba's
that is not imported yet gets an environment holding only its name (what numba pickles of it), the module's import
left to whoever needs it.

:func:`load_without_refresh` gives the engine's own nopython kernels a cache that skips the refresh, on the numba
versions in :data:`CHECKED_NUMBA_VERSIONS`, where tests load every kernel in a fresh process and compare results.
On any other numba, or where numba's cache classes differ from what this module expects, nothing changes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import numba

#: numba releases (major.minor) on which the engine's kernels were loaded without the refresh and checked
#: (tests/test_jit_cache.py runs a fresh process on the warm cache).
CHECKED_NUMBA_VERSIONS = ("0.68",)


def _lean_cache_class() -> type | None:
    """A ``FunctionCache`` subclass whose ``load_overload`` initialises numba's runtime (NRT) instead of refreshing
    the target context; None where this numba is not one of :data:`CHECKED_NUMBA_VERSIONS` or lacks the methods."""
    if ".".join(numba.__version__.split(".")[:2]) not in CHECKED_NUMBA_VERSIONS:
        return None
    from numba.core.caching import FunctionCache
    from numba.core.runtime import rtsys

    if not all(hasattr(FunctionCache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors")):
        return None

    class CacheLoadedWithoutRefresh(FunctionCache):
        """numba's ``FunctionCache``, loading without ``target_context.refresh()`` (see the module's docstring)."""

        def load_overload(self, sig: Any, target_context: Any) -> Any:  # noqa: ANN401  (numba's own objects)
            rtsys.initialize(target_context)  # the runtime that loaded code calls into; numba does it in refresh()
            with self._guard_against_spurious_io_errors(), _environments_without_imports():
                return self._load_overload(sig, target_context)

    return CacheLoadedWithoutRefresh


def _rebuild_environment_without_import(modname: str, consts: list, env_name: str) -> Any:  # noqa: ANN401
    """numba's ``environment._rebuild_env`` (what a cached kernel's pickle calls for each environment), except that a
    numba implementation module not imported yet is not imported: its environment's globals hold only its name."""
    from numba.core import environment

    if modname in sys.modules or not modname.startswith("numba."):
        return _NUMBA_REBUILD_ENV[0](modname, consts, env_name)
    env = environment.lookup_environment(env_name)
    if env is None:
        env = environment.Environment({"__name__": modname})
        env.consts[:] = consts
        env.env_name = env_name
        environment.Environment._memo[env_name] = env
    return env


_NUMBA_REBUILD_ENV: list[Any] = []


@contextlib.contextmanager
def _environments_without_imports() -> Iterator[None]:
    """Within: the kernels' pickles rebuild environments with :func:`_rebuild_environment_without_import` (numba
    loads from its cache under its global compiler lock, so no other load sees the swap)."""
    from numba.core import environment

    if not _NUMBA_REBUILD_ENV:
        _NUMBA_REBUILD_ENV.append(environment._rebuild_env)
    environment._rebuild_env = _rebuild_environment_without_import
    try:
        yield
    finally:
        environment._rebuild_env = _NUMBA_REBUILD_ENV[0]


_LEAN_CACHE: list[type | None] = []


def load_without_refresh(namespace: dict[str, Any]) -> int:
    """Give every cached nopython dispatcher in ``namespace`` (a kernel module's ``globals()``) the cache of
    :func:`_lean_cache_class`. Returns how many were given it (0 on an unchecked numba)."""
    from numba.core.caching import FunctionCache
    from numba.core.registry import CPUDispatcher

    if not _LEAN_CACHE:
        _LEAN_CACHE.append(_lean_cache_class())
    lean = _LEAN_CACHE[0]
    if lean is None:
        return 0
    count = 0
    for value in namespace.values():
        if (isinstance(value, CPUDispatcher) and type(getattr(value, "_cache", None)) is FunctionCache
                and not value.targetoptions.get("forceobj")):
            value._cache.__class__ = lean
            count += 1
    return count
