"""``graphc bench``: graphc (llvm and numpy backends) against NumPy, PyTorch and JAX, side by side in one run.

Method. Every measured callable runs ``warmup`` times, then ``repeat`` times (fewer when a row would exceed
``max_seconds``, at least 3); the table gives the median wall time, the min–max spread and the workload metric
(GFLOP/s or GB/s) computed from the median. Ratios are speed-ups *of the row* against a reference measured in
the same run: ``reference median / row median`` (> 1: the row is faster). "vs numpy" is against graphc's numpy
backend (the interpreter), except for ``gemm`` where it is ``numpy.matmul``; "vs torch" and "vs jax" are against
those frameworks' rows of the same case.

Threads. graphc's compiled code is single-threaded. ``--threads N`` limits NumPy's BLAS (threadpoolctl, or
``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` in a re-executed process when threadpoolctl is
missing), PyTorch (``torch.set_num_threads``) and XLA's CPU client (``XLA_FLAGS``, set before jax is imported).
PyTorch and JAX are optional: rows for a framework that cannot be imported are simply absent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from graphc.bench_workloads import WORKLOADS

BASELINE = "graphc-numpy"
REFERENCE = {"gemm": "numpy"}  # the "vs numpy" reference where it is not graphc's numpy backend


@dataclass
class Row:
    """One (workload, case, framework) measurement; ``work`` is FLOPs or bytes per call (metric = work / median)."""

    workload: str
    case: str
    framework: str
    times_ms: list[float] = field(default_factory=list)
    unit: str = ""
    work: float = 0.0
    error: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float | None:
        return float(np.median(self.times_ms)) if self.times_ms else None

    @property
    def metric(self) -> float | None:
        med = self.median_ms
        return self.work / (med * 1e-3) / 1e9 if med and self.work else None

    def summary(self) -> dict[str, Any]:
        t = np.asarray(self.times_ms) if self.times_ms else None
        stats = {} if t is None else {"median_ms": float(np.median(t)), "min_ms": float(t.min()),
                                      "max_ms": float(t.max()), "q1_ms": float(np.percentile(t, 25)),
                                      "q3_ms": float(np.percentile(t, 75)), "samples": int(t.size)}
        metric = {f"{self.unit.replace('/', '_per_').lower()}": self.metric} if self.unit and self.metric else {}
        return {**asdict(self), **stats, **metric}


@dataclass
class Context:
    """Run settings shared by all workloads."""

    repeat: int = 10
    warmup: int = 2
    threads: int = 1
    small: bool = False
    max_seconds: float = 10.0
    frameworks: tuple[str, ...] = ("torch", "jax")
    rows: list[Row] = field(default_factory=list)

    def measure(self, workload: str, case: str, framework: str, make: Callable[[], Callable[[], Any]],
                unit: str = "", work: float = 0.0, note: str = "", repeat: int | None = None,
                warmup: int | None = None) -> Row:
        """Build the callable with ``make()`` (not timed), warm it up and time it; any failure becomes the row's
        error, so one unsupported op never stops the benchmark."""
        row = Row(workload, case, framework, unit=unit, work=work, note=note)
        self.rows.append(row)
        try:
            call = make()
            first = None
            for i in range(self.warmup if warmup is None else warmup):
                result = call()
                first = result if i == 0 else first
            if first is not None and np.ndim(_numpy(first)) == 0:
                row.extra["first_result"] = float(_numpy(first))
            row.times_ms = time_calls(call, repeat or self.repeat, self.max_seconds)
        except Exception as err:  # noqa: BLE001 - the row reports it and the run goes on
            row.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:160]
            row.extra["traceback"] = traceback.format_exc()  # the JSON keeps where it failed
        _progress(row)
        return row

    def has(self, framework: str) -> bool:
        return framework in self.frameworks and _importable(framework)


def time_calls(call: Callable[[], Any], repeat: int, max_seconds: float) -> list[float]:
    """Wall times (ms) of ``repeat`` calls; stops early after ``max_seconds`` once 3 samples exist."""
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 3 and time.perf_counter() - start > max_seconds:
            break
    return times


def _numpy(value: Any) -> Any:
    return value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)


def _progress(row: Row) -> None:
    status = f"error: {row.error}" if row.error else f"{row.median_ms:.3f} ms"
    print(f"  {row.workload:<18} {row.case:<26} {row.framework:<20} {status}", file=sys.stderr, flush=True)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True


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
    if "torch" in frameworks and _importable("torch"):
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
    if _importable("threadpoolctl"):
        return False
    return os.environ.get("OPENBLAS_NUM_THREADS") != str(threads)


def reexec(argv: list[str], threads: int) -> int:
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
    lines += ["", f"threads: {threads} for NumPy BLAS / PyTorch / XLA; graphc's compiled code is single-threaded.",
              "ratios: reference median / row median (>1 = the row is faster). vs numpy = graphc's numpy backend "
              "(gemm: numpy.matmul).",
              "fused_elementwise GB/s count 2 × n × 4 bytes (read x, write y; w and b are scalars); the graphc-llvm "
              "row is the public program call,",
              "the (kernel) row the native call alone (no feed checks, no output handling)."]
    return "\n".join(lines)


def metadata(ctx: Context, threads_info: dict[str, Any]) -> dict[str, Any]:
    versions = {"numpy": np.__version__, "python": platform.python_version()}
    for name in ("torch", "jax", "llvmlite"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "threads": ctx.threads, "repeat": ctx.repeat, "warmup": ctx.warmup, "small": ctx.small,
            "frameworks": [f for f in ctx.frameworks if _importable(f)], "thread_control": threads_info,
            "versions": versions, "time_unit": "ms (wall clock, time.perf_counter)"}


def run_benchmarks(names: list[str], ctx: Context) -> dict[str, Any]:
    """Run the named workloads; returns the JSON document (``meta`` and ``rows``)."""
    info = configure_threads(ctx.threads, ctx.frameworks)
    with blas_threads(ctx.threads) as blas:
        info.update(blas)
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            WORKLOADS[name](ctx)
    rel = ratios(ctx.rows)
    return {"meta": metadata(ctx, info), "rows": [{**r.summary(), **rel[i]} for i, r in enumerate(ctx.rows)]}


# ------------------------------------------------------------------------------------------------- CLI


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<18} {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in WORKLOADS.items())
    parser = subparsers.add_parser(
        "bench", help="benchmark graphc against NumPy, PyTorch and JAX",
        description=__doc__.split("\n\n")[0].replace("``", "") + "\n\nworkloads:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="workloads to run (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="threads for NumPy BLAS, PyTorch and XLA (default 1)")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per row after warm-up (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="time cap per row (>= 3 samples)")
    parser.add_argument("--small", action="store_true", help="tiny sizes (seconds; for tests)")
    parser.add_argument("--frameworks", default="torch,jax",
                        help="other frameworks to compare when importable (comma list; 'none' for graphc/NumPy only)")
    parser.add_argument("--json", metavar="PATH", help="write every measured number to PATH")
    parser.set_defaults(handler=cmd_bench)
    return parser


def _argv(args: argparse.Namespace) -> list[str]:
    argv = [*args.workloads, "--threads", str(args.threads), "--repeat", str(args.repeat), "--warmup",
            str(args.warmup), "--max-seconds", str(args.max_seconds), "--frameworks", args.frameworks]
    return argv + (["--small"] if args.small else []) + (["--json", args.json] if args.json else [])


def cmd_bench(args: argparse.Namespace) -> int:
    from graphc.ir import GraphcError

    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        raise GraphcError(f"unknown workload {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    if args.threads < 1 or args.repeat < 1 or args.warmup < 0:
        raise GraphcError("--threads and --repeat must be >= 1, --warmup >= 0")
    if needs_reexec(args.threads):
        return reexec(_argv(args), args.threads)
    frameworks = tuple(f.strip() for f in args.frameworks.split(",") if f.strip() not in ("", "none"))
    ctx = Context(repeat=args.repeat, warmup=args.warmup, threads=args.threads, small=args.small,
                  max_seconds=args.max_seconds, frameworks=frameworks)
    doc = run_benchmarks(args.workloads or list(WORKLOADS), ctx)
    print(format_table(ctx.rows, args.threads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.json}")
    return 0
