"""Running the workloads, thread control, and the output: the human-readable table and the JSON document.

Method. Every measured callable runs ``warmup`` times, then ``repeat`` times (fewer when a row would exceed
``max_seconds``, at least 3); the table gives the median wall time, the min–max spread and the workload metric
(GFLOP/s or GB/s) computed from the median. Ratios are speed-ups *of the row* against a reference measured in
the same run: ``reference median / row median`` (> 1: the row is faster). "vs numpy" is against graphc's numpy
backend (the interpreter), except for ``gemm`` where it is ``numpy.matmul``; "vs torch" and "vs jax" are against
those frameworks' rows of the same case.

Threads. ``--threads N`` is the thread count of graphc's native programs (``compile(..., threads=N)``) and
limits NumPy's BLAS (threadpoolctl, or ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` in a
re-executed process when threadpoolctl is missing), PyTorch (``torch.set_num_threads``) and XLA's CPU client
(``XLA_FLAGS``, set before jax is imported). ``--profile`` adds the per-kernel profile (``Program.profile``) of
graphc's native program for each model, elementwise and GEMM case, at that thread count.
PyTorch and JAX are optional: rows for a framework that cannot be imported are simply absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from graphc.bench.context import Context, Row, importable
from graphc.bench.workloads import WORKLOADS

BASELINE = "graphc-numpy"
REFERENCE = {"gemm": "numpy"}  # the "vs numpy" reference where it is not graphc's numpy backend


# ---------------------------------------------------------------------------------------------- threads


def configure_threads(threads: int, frameworks: tuple[str, ...] = ("torch", "jax")) -> dict[str, Any]:
    """Limit every framework to ``threads`` threads; returns what was done (for the JSON)."""
    done: dict[str, Any] = {"graphc": "single-threaded (native code runs on the calling thread)"}
    if "jax" in frameworks and "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        eigen = "false" if threads == 1 else "true"
        os.environ["XLA_FLAGS"] = (f"{flags} --xla_cpu_multi_thread_eigen={eigen} "
                                   f"intra_op_parallelism_threads={threads}").strip()
        done["jax"] = os.environ["XLA_FLAGS"]
    elif "jax" in frameworks:
        done["jax"] = "jax was imported before the benchmark: its thread pool is not controlled"
    if "torch" in frameworks and importable("torch"):
        import torch

        torch.set_num_threads(threads)
        done["torch"] = torch.get_num_threads()
    return done


@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[dict[str, Any]]:
    """NumPy's BLAS limited to ``threads`` (threadpoolctl); yields the pools as threadpoolctl reports them."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=threads):
        yield {"numpy_blas": [{k: p.get(k) for k in ("internal_api", "num_threads", "version")}
                              for p in threadpool_info()]}


def needs_reexec(threads: int) -> bool:
    """Without threadpoolctl, BLAS threads are only set by environment variables read when NumPy loads."""
    if importable("threadpoolctl"):
        return False
    return os.environ.get("OPENBLAS_NUM_THREADS") != str(threads)


def reexec(argv: list[str], threads: int) -> int:
    """Run ``graphc bench ARGV`` in a fresh interpreter whose BLAS thread variables say ``threads``."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    return subprocess.call([sys.executable, "-m", "graphc.cli", "bench", *argv], env=env)


# ---------------------------------------------------------------------------------------------- report


def ratios(rows: list[Row]) -> dict[int, dict[str, float | None]]:
    """Per row (by index): speed-up against the "vs numpy" reference and the torch / jax rows of its case."""
    by_case: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        by_case.setdefault((r.workload, r.case), {})[r.framework] = r
    out: dict[int, dict[str, float | None]] = {}
    for i, r in enumerate(rows):
        peers = by_case[(r.workload, r.case)]
        refs = {"numpy": peers.get(REFERENCE.get(r.workload, BASELINE)),
                "torch": next((p for f, p in peers.items() if f.startswith("torch")), None),
                "jax": next((p for f, p in peers.items() if f.startswith("jax")), None)}
        mine = r.median_ms
        out[i] = {f"vs_{k}": (ref.median_ms / mine if ref is not None and ref.median_ms and mine else None)
                  for k, ref in refs.items()}
    return out


def format_table(rows: list[Row], threads: int) -> str:
    """The human-readable table: one line per (workload, case, framework)."""
    rel = ratios(rows)
    head = (f"{'workload':<18} {'case':<26} {'framework':<20} {'median ms':>10} {'min–max ms':>19} {'metric':>15} "
            f"{'vs numpy':>9} {'vs torch':>9} {'vs jax':>8}")
    lines = [head, "-" * len(head)]
    previous = None
    for i, r in enumerate(rows):
        if previous is not None and r.workload != previous:
            lines.append("")
        previous = r.workload
        start = f"{r.workload:<18} {r.case:<26} {r.framework:<20}"
        if r.error or not r.times_ms:
            lines.append(f"{start} error: {r.error or 'no samples'}")
            continue
        spread = f"{min(r.times_ms):.3f}–{max(r.times_ms):.3f}"
        metric = f"{r.metric:.2f} {r.unit}" if r.metric else ""
        cells = [f"x{v:.2f}" if v else "-" for v in rel[i].values()]
        lines.append(f"{start} {r.median_ms:>10.3f} {spread:>19} {metric:>15} {cells[0]:>9} {cells[1]:>9} "
                     f"{cells[2]:>8}")
    lines += ["", f"threads: {threads} for graphc's native code, NumPy BLAS, PyTorch and XLA.",
              "ratios: reference median / row median (>1 = the row is faster). vs numpy = graphc's numpy backend "
              "(gemm: numpy.matmul).",
              "fused_elementwise GB/s count 2 × n × 4 bytes (read x, write y; w and b are scalars); the graphc-llvm "
              "row is the public program call,",
              "the (kernel) row the native call alone (no feed checks, no output handling)."]
    return "\n".join(lines)


def metadata(ctx: Context, threads_info: dict[str, Any]) -> dict[str, Any]:
    """The JSON's ``meta``: machine, settings, thread control and library versions."""
    versions = {"numpy": np.__version__, "python": platform.python_version()}
    for name in ("torch", "jax", "llvmlite"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "threads": ctx.threads, "repeat": ctx.repeat, "warmup": ctx.warmup, "small": ctx.small,
            "frameworks": [f for f in ctx.frameworks if importable(f)], "thread_control": threads_info,
            "versions": versions, "time_unit": "ms (wall clock, time.perf_counter)"}


# ------------------------------------------------------------------------------------------------- run


def run_benchmarks(names: list[str], ctx: Context) -> dict[str, Any]:
    """Run the named workloads; returns the JSON document (``meta`` and ``rows``)."""
    info = configure_threads(ctx.threads, ctx.frameworks)
    with blas_threads(ctx.threads) as blas:
        info.update(blas)
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            WORKLOADS[name](ctx)
    rel = ratios(ctx.rows)
    profiles = {title: report if isinstance(report, str) else report.as_dict()
                for title, report in ctx.profiles.items()}
    return {"meta": metadata(ctx, info), "rows": [{**r.summary(), **rel[i]} for i, r in enumerate(ctx.rows)],
            **({"profiles": profiles} if ctx.profile else {})}


def write_json(doc: dict[str, Any], path: str) -> None:
    """Write the document of :func:`run_benchmarks` to ``path``."""
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
