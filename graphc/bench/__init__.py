"""``graphc bench``: graphc (llvm and numpy backends) against NumPy, PyTorch and JAX, side by side in one run.

What lives where:

- :mod:`graphc.bench.context`: :class:`Context` (run settings; ``ctx.measure`` builds, warms up and times one
  callable) and :class:`Row` (one measurement, as JSON with ``Row.summary``); imports nothing of graphc;
- :mod:`graphc.bench.workloads`: the workloads and the :data:`WORKLOADS` table (name -> function);
- :mod:`graphc.bench.models`: the neural-network cases (one layer spec built with ``graphc.nn``, PyTorch and JAX);
- :mod:`graphc.bench.gemm`: the GEMM kernel alone (``compile_gemm``; ``python -m graphc.bench.gemm`` compares it
  with ``numpy.matmul``);
- :mod:`graphc.bench.runner`: running the workloads, thread control, ratios, the table and the JSON document (its
  docstring states the method);
- ``graphc bench models`` (whole networks on graphc, onnxruntime and PyTorch from one ONNX file):
  :mod:`graphc.bench.zoo` (torchvision models, their cached ONNX export, ``--onnx`` inputs) and
  :mod:`graphc.bench.zoo_run` (building, interleaved timing, the check, the table and the JSON);
- the command line (arguments, validation) is :mod:`graphc.cli.bench`.

Adding a workload: write a function ``name(ctx: Context) -> None`` in :mod:`graphc.bench.workloads` whose
docstring's first line describes it (``graphc bench --help`` lists it), sizes from ``ctx.small`` (tiny sizes for
tests), and one ``ctx.measure(workload, case, framework, make, unit=..., work=...)`` per row: ``make`` compiles or
builds a zero-argument callable outside the timing, and a failure becomes that row's error. Guard optional
frameworks with ``ctx.has("torch")`` / ``ctx.has("jax")``, and import what builds graphs (``graphc.api``,
``graphc.ir``, ``ops.fn``, ``graphc.nn``) inside the function, never the ``graphc`` package face. Then add it to
:data:`WORKLOADS`. A workload whose rows should be compared with another "vs numpy" reference than graphc's numpy
backend gets an entry in ``runner.REFERENCE``.
"""

from __future__ import annotations

from graphc.bench.context import Context, Row, time_calls
from graphc.bench.runner import (
    BASELINE,
    REFERENCE,
    blas_threads,
    configure_threads,
    format_table,
    metadata,
    needs_reexec,
    ratios,
    reexec,
    run_benchmarks,
    write_json,
)
from graphc.bench.workloads import WORKLOADS, Workload

__all__ = ["BASELINE", "REFERENCE", "WORKLOADS", "Context", "Row", "Workload", "blas_threads", "configure_threads",
           "format_table", "metadata", "needs_reexec", "ratios", "reexec", "run_benchmarks", "time_calls",
           "write_json"]
