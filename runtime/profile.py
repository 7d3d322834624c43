"""Per-kernel profiles of native programs: ``prog.profile(repeat=N, **feeds)``.

The program's module has a second entry, ``graphc_profile``, that runs the same kernels and adds each one's wall
time (``CLOCK_MONOTONIC``) to a counter. A profile runs it ``repeat`` times (after one warm-up call) and reports,
per kernel, the median time per call, its FLOPs (``Op.flops``) and the bytes it reads and writes, the achieved
GFLOP/s and GB/s, and those as a fraction of this machine's measured peaks for the program's thread count:

- FMA peak: one core running a register-resident chain of independent vector FMAs (12 accumulators, the host's
  widest vectors), times the thread count;
- streaming bandwidth: the loop ``y = 2·x`` over 64 MiB, vectorized as graphc's elementwise kernels are, split
  into chunks on the program's thread count (read + write counted).

Both are measured once per process and thread count. The kernels' sum is below the program's time by the call's
own overhead (binding feeds, copying outputs), which the profile reports separately.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class KernelTime:
    """One kernel's median time per call and its work."""

    name: str
    kind: str
    ops: tuple[str, ...]
    seconds: float
    flops: int
    bytes: int

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0

    @property
    def gbps(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Peak:
    """This machine's measured limits for ``threads`` threads."""

    threads: int
    fma_gflops: float  # single precision, one core × threads
    copy_gbps: float   # graphc's elementwise y = 2x, read + write


@dataclass
class Profile:
    """The result of ``prog.profile``: kernels in plan order, the call's median time and the machine's peaks."""

    threads: int
    repeat: int
    kernels: list[KernelTime]
    call_seconds: float
    peak: Peak | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def kernel_seconds(self) -> float:
        return sum(k.seconds for k in self.kernels)

    def fraction_of_peak(self, kernel: KernelTime) -> tuple[float | None, float | None]:
        """(achieved ÷ FMA peak, achieved ÷ copy bandwidth) of one kernel; None without measured peaks."""
        if self.peak is None:
            return None, None
        return kernel.gflops / self.peak.fma_gflops, kernel.gbps / self.peak.copy_gbps

    def as_dict(self) -> dict[str, Any]:
        """The profile as plain data (for JSON): kernels with their times, work, rates and fractions of peak."""
        kernels = []
        for k in self.kernels:
            fma, bw = self.fraction_of_peak(k)
            kernels.append({"name": k.name, "kind": k.kind, "ops": list(k.ops), "seconds": k.seconds,
                            "flops": k.flops, "bytes": k.bytes, "gflops": k.gflops, "gbps": k.gbps,
                            "fraction_of_fma_peak": fma, "fraction_of_copy_peak": bw})
        peak = None if self.peak is None else {"threads": self.peak.threads, "fma_gflops": self.peak.fma_gflops,
                                               "copy_gbps": self.peak.copy_gbps}
        return {"threads": self.threads, "repeat": self.repeat, "call_seconds": self.call_seconds,
                "kernel_seconds": self.kernel_seconds, "peak": peak, "kernels": kernels}

    def format(self, top: int | None = None) -> str:
        """A table of the kernels (the ``top`` slowest when given), then the totals."""
        rows = sorted(self.kernels, key=lambda k: -k.seconds)[:top] if top else self.kernels
        width = max([6] + [len(k.name) for k in rows])
        head = (f"{'kernel':<{width}} {'kind':<11} {'us':>9} {'%':>5} {'GFLOP/s':>8} {'%peak':>6} "
                f"{'GB/s':>7} {'%bw':>5}  ops")
        lines = [f"profile: {self.threads} thread(s), median of {self.repeat} calls", head, "-" * len(head)]
        total = self.kernel_seconds or 1.0
        for k in rows:
            fma, bw = self.fraction_of_peak(k)
            ops = " -> ".join(k.ops)
            lines.append(f"{k.name:<{width}} {k.kind:<11} {1e6 * k.seconds:>9.1f} {100 * k.seconds / total:>5.1f} "
                         f"{k.gflops:>8.1f} {_percent(fma):>6} {k.gbps:>7.1f} {_percent(bw):>5}  {ops[:50]}")
        lines.append(f"kernels {1e3 * self.kernel_seconds:.3f} ms of a {1e3 * self.call_seconds:.3f} ms call")
        if self.peak:
            lines.append(f"peaks for {self.peak.threads} thread(s): FMA {self.peak.fma_gflops:.1f} GFLOP/s, "
                         f"copy {self.peak.copy_gbps:.1f} GB/s")
        return "\n".join(lines + self.notes)

    def __str__(self) -> str:
        return self.format()


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}"


def median_times(samples: np.ndarray) -> np.ndarray:
    """Per-column medians of (repeat, kernels) nanosecond samples, in seconds."""
    return np.median(samples, axis=0) / 1e9


@cache
def fma_peak_one_core() -> float:
    """Single-precision GFLOP/s of one core running 12 independent chains of vector FMAs (best of 5)."""
    import llvmlite.ir as ir

    from codegen.llvm import F32, I64, for_range, intrinsic
    from codegen.target import Jit, has_avx512, new_module

    lanes = 16 if has_avx512() else 8
    vec = ir.VectorType(F32, lanes)
    module = new_module("fma_peak")
    fn = ir.Function(module, ir.FunctionType(F32, [I64]), "peak")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fma = intrinsic(module, f"llvm.fma.v{lanes}f32", vec, [vec, vec, vec])
    one = ir.Constant(vec, [1.0000001] * lanes)
    accs = [b.alloca(vec) for _ in range(12)]
    for j, acc in enumerate(accs):
        b.store(ir.Constant(vec, [float(j)] * lanes), acc)
    with for_range(b, 0, fn.args[0], name="i"):
        values = [b.load(a) for a in accs]
        for acc, v in zip(accs, values):
            b.store(b.call(fma, [v, one, one]), acc)
    total = b.load(accs[0])
    for acc in accs[1:]:
        total = b.fadd(total, b.load(acc))
    b.ret(b.extract_element(total, ir.Constant(ir.IntType(32), 0)))
    jit = Jit(str(module), name="fma_peak", cache=False)
    run = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64)(jit.address("peak"))
    iterations = 20_000_000
    run(1000)
    best = min(_timed(run, iterations) for _ in range(5))
    return 2 * 12 * lanes * iterations / best / 1e9


def _timed(run: Any, iterations: int) -> float:
    start = time.perf_counter()
    run(iterations)
    return time.perf_counter() - start


COPY_ELEMENTS = 1 << 24  # 64 MiB of f32 read, 64 MiB written
COPY_CHUNK = 1 << 16  # elements per parallel chunk


@cache
def copy_peak(threads: int) -> float:
    """GB/s (read + write) of ``y = 2·x`` over 64 MiB on ``threads`` threads: the streaming loop graphc's
    elementwise kernels compile to, in chunks on the parallel runtime (median of 9 after two warm-ups)."""
    import llvmlite.ir as ir

    from codegen.llvm import F32, VOID, for_range, i64
    from codegen.parallel import region
    from codegen.target import Jit, new_module
    from runtime.parallel import runtime

    if threads > 1 and not runtime():
        threads = 1
    module = new_module("copy_peak")
    fptr = F32.as_pointer()
    fn = ir.Function(module, ir.FunctionType(VOID, [fptr, fptr]), "copy")
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def chunk(bb: ir.IRBuilder, index: ir.Value, values: list[ir.Value], claim: Any) -> None:
        x, y = values
        first = bb.mul(index, i64(COPY_CHUNK))
        with for_range(bb, 0, COPY_CHUNK, name="e") as e:
            at = bb.add(first, e)
            value = bb.load(bb.gep(x, [at], inbounds=True))
            bb.store(bb.fmul(value, ir.Constant(F32, 2.0)), bb.gep(y, [at], inbounds=True))

    region(module, b, "copy", COPY_ELEMENTS // COPY_CHUNK, threads, list(fn.args), chunk, lambda n: None)
    b.ret_void()
    jit = Jit(str(module), name="copy_peak", cache=False)
    run = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(jit.address("copy"))
    x = np.ones(COPY_ELEMENTS, np.float32)
    y = np.zeros_like(x)
    times = []
    for i in range(11):
        start = time.perf_counter()
        run(x.ctypes.data, y.ctypes.data)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 2 * x.nbytes / float(np.median(times)) / 1e9


def machine_peak(threads: int) -> Peak:
    return Peak(threads, fma_peak_one_core() * threads, copy_peak(threads))
