"""The parallel runtime of native programs: the OpenMP runtime of GCC (libgomp), loaded once per process.

``threads(requested)`` resolves a program's thread count: the ``threads=`` argument of ``gc.compile``, else
``$GRAPHC_NUM_THREADS``, else the cores this process may run on (its affinity mask, which is what a container's
CPU limit or ``taskset`` sets). More than one thread needs libgomp (``libgomp.so.1``, Debian/Ubuntu package
``libgomp1``, present wherever GCC is): when it cannot be loaded a program runs single-threaded and says so in
``program.threads`` and in one warning. The JIT reaches the runtime through the symbols ``codegen.parallel``
names; nothing else of OpenMP is used. ``$OMP_WAIT_POLICY`` and the other ``OMP_*`` variables keep their meaning
(after a region libgomp's threads spin briefly, then sleep).

A caller that runs several programs from its own threads should give each fewer threads (``threads=`` or
``GRAPHC_NUM_THREADS``) so that callers × threads does not exceed the cores: each call runs its own team.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import warnings
from functools import cache

from graphc.ir import GraphcError

_LIBRARIES = ("libgomp.so.1", "libgomp.so", "libgomp.1.dylib")


@cache
def runtime() -> bool:
    """True when libgomp is loaded and its entry points are registered with the JIT (once per process)."""
    import llvmlite.binding as llvm

    from codegen.parallel import PARALLEL, THREAD

    found = ctypes.util.find_library("gomp")
    for name in ([found] if found else []) + list(_LIBRARIES):
        try:
            lib = ctypes.CDLL(name)
            parallel, thread = lib.GOMP_parallel, lib.omp_get_thread_num
        except (OSError, AttributeError):
            continue
        llvm.add_symbol(PARALLEL, ctypes.cast(parallel, ctypes.c_void_p).value)
        llvm.add_symbol(THREAD, ctypes.cast(thread, ctypes.c_void_p).value)
        return True
    return False


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity masks
        return os.cpu_count() or 1


def check_threads(requested: int | None) -> int | None:
    """``requested`` itself when it is None or a positive int, else a GraphcError."""
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
        raise GraphcError(f"compile: threads must be a positive int, got {requested!r}")
    return requested


def threads(requested: int | None = None) -> int:
    """The thread count a native program is compiled for (see the module docstring)."""
    if requested is None:
        text = os.environ.get("GRAPHC_NUM_THREADS", "").strip()
        if text:
            try:
                requested = int(text)
            except ValueError:
                raise GraphcError(f"GRAPHC_NUM_THREADS must be a positive integer, got {text!r}") from None
            if requested < 1:
                raise GraphcError(f"GRAPHC_NUM_THREADS must be a positive integer, got {text!r}")
        else:
            requested = available_cores()
    else:
        check_threads(requested)
    if requested > 1 and not runtime():
        warnings.warn("graphc: the OpenMP runtime (libgomp.so.1) was not found; native programs run on one thread "
                      "(install it, e.g. 'apt-get install libgomp1')", RuntimeWarning, stacklevel=3)
        return 1
    return requested
