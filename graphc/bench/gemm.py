"""GEMM benchmark: the JIT'd ``emit_gemm`` kernel against ``numpy.matmul`` on one thread, in the same run.

``python -m graphc.bench.gemm`` prints the default shapes and the MLP backward shapes; the ``gemm`` workload of
``graphc bench`` times :func:`compile_gemm`'s kernel next to the full program (see :mod:`graphc.bench.workloads`).

Method: compile once, then alternate one graphc call and one NumPy call ``repeats`` times after a warm-up (so
both see the same machine noise) and report medians of wall time, and also of the calling thread's CPU time
(``time.thread_time``: both run on the calling thread, and CPU time leaves out the time other processes hold the
core, so it is the steadier figure on a shared machine). NumPy's BLAS is limited to one thread with threadpoolctl
when it is installed (otherwise set ``OPENBLAS_NUM_THREADS=1`` before starting Python).
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from typing import Any

import numpy as np

from codegen.gemm.blocking import workspace_bytes
from codegen.gemm.driver import emit_gemm

GEMM_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
DEFAULT_SHAPES = ((512, 512, 512), (1024, 1024, 1024), (128, 512, 784))


def compile_gemm(m: int, n: int, k: int, dtype: str = "float32", **options: Any) -> tuple[Any, Any]:
    """JIT one GEMM; returns ``(jit, fn)`` where ``fn(A_ptr, B_ptr, C_ptr)`` calls it (with a workspace of its own).
    ``threads`` (an option like ``trans_a``): run on that many threads (``runtime.parallel`` resolves it).

    Keep ``jit`` alive as long as ``fn`` is used (it owns the machine code)."""
    from codegen.target import Jit, new_module
    from runtime.parallel import threads as resolve_threads

    threads = resolve_threads(options.pop("threads", 1))
    module = new_module("gemm")
    emit_gemm(module, "gemm", m, n, k, dtype=dtype, threads=threads, **options)
    jit = Jit(str(module), name="gemm")
    raw = GEMM_SIGNATURE(jit.address("gemm"))
    owner = np.zeros(workspace_bytes(m, n, k, dtype, threads=threads) + 64, np.uint8)
    workspace = owner.ctypes.data + (-owner.ctypes.data) % 64

    def call(a: int, b: int, c: int, _keep: np.ndarray = owner) -> None:
        raw(a, b, c, workspace)

    return jit, call


def _single_thread() -> contextlib.AbstractContextManager[Any]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        return contextlib.nullcontext()
    return threadpool_limits(1)


def bench_gemm(m: int, n: int, k: int, dtype: str = "float32", trans_a: bool = False, trans_b: bool = False,
               repeats: int = 15, warmup: int = 2) -> dict[str, Any]:
    """Time ``C = op(A) · op(B)`` (graphc vs ``numpy.matmul``); GFLOP/s are ``2·m·n·k / median seconds``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = np.empty((m, n), dtype)
    start = time.perf_counter()
    jit, fn = compile_gemm(m, n, k, dtype, trans_a=trans_a, trans_b=trans_b)
    compile_s = time.perf_counter() - start
    a_op, b_op = (a.T if trans_a else a), (b.T if trans_b else b)
    pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
    wall: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    with _single_thread():
        for i in range(warmup + repeats):
            for j, call in enumerate((lambda: fn(pa, pb, pc), lambda: np.matmul(a_op, b_op))):
                w0, c0 = time.perf_counter(), time.thread_time()
                call()
                c1, w1 = time.thread_time(), time.perf_counter()
                if i >= warmup:
                    wall[j].append(w1 - w0)
                    cpu[j].append(c1 - c0)
    expected = np.matmul(a_op, b_op)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    max_err = float(np.abs(c - expected).max(initial=0.0)) / scale
    del jit
    flops = 2.0 * m * n * k
    t_ours, t_np = float(np.median(wall[0])), float(np.median(wall[1]))
    c_ours, c_np = float(np.median(cpu[0])), float(np.median(cpu[1]))
    return {
        "shape": f"{m}x{k} @ {k}x{n}" + (" (Aᵀ)" if trans_a else "") + (" (Bᵀ)" if trans_b else ""),
        "m": m, "n": n, "k": k, "dtype": dtype, "trans_a": trans_a, "trans_b": trans_b,
        "ms_graphc": t_ours * 1e3, "ms_numpy": t_np * 1e3,
        "gflops_graphc": flops / t_ours / 1e9, "gflops_numpy": flops / t_np / 1e9,
        "ratio_vs_numpy": t_np / t_ours, "gflops_graphc_cpu": flops / c_ours / 1e9,
        "gflops_numpy_cpu": flops / c_np / 1e9, "ratio_vs_numpy_cpu": c_np / c_ours,
        "compile_s": compile_s, "max_rel_err": max_err,
        "workspace_bytes": workspace_bytes(m, n, k, dtype),
    }


def main() -> None:  # pragma: no cover - manual tool
    """Print the default shapes and the MLP backward shapes."""
    cases = [dict(m=m, n=n, k=k) for m, n, k in DEFAULT_SHAPES]
    cases += [dict(m=128, n=784, k=512, trans_b=True), dict(m=784, n=512, k=128, trans_a=True),
              dict(m=256, n=256, k=256, dtype="float64")]
    for case in cases:
        r = bench_gemm(**case)
        print(f"{r['shape']:<26} wall: graphc {r['gflops_graphc']:5.1f} numpy {r['gflops_numpy']:5.1f} GFLOP/s "
              f"x{r['ratio_vs_numpy']:.2f} | cpu: graphc {r['gflops_graphc_cpu']:5.1f} numpy "
              f"{r['gflops_numpy_cpu']:5.1f} x{r['ratio_vs_numpy_cpu']:.2f} | compile {r['compile_s']:.2f} s")


if __name__ == "__main__":  # pragma: no cover
    main()
