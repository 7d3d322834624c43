"""The workloads of ``graphc bench`` (see :mod:`graphc.bench.runner` for the method and the table).

Each workload is a function ``(ctx) -> None`` that adds rows through ``ctx.measure(workload, case, framework,
make, ...)``: ``make`` builds (compiles) a zero-argument callable outside the timing, so compile time never
pollutes a step time, and a failure on one backend becomes that row's error.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from graphc.bench.context import Context
from graphc.bench.models import (
    GraphcModel,
    ModelCase,
    cnn_train,
    jax_args,
    jax_step,
    jax_step_function,
    mlp_infer_bn,
    mlp_train,
    torch_step,
)

Workload = Callable[[Context], None]


def _model_workload(name: str, case_fn: Callable[[bool], ModelCase]) -> Workload:
    def run(ctx: Context) -> None:
        case = case_fn(ctx.small)
        graphc_model = GraphcModel(case)
        weights = graphc_model.weights()  # before any step changes them
        label = case.describe()
        ctx.measure(name, label, "graphc-llvm", lambda: graphc_model.step("llvm", **ctx.graphc_options))
        ctx.measure(name, label, "graphc-numpy", lambda: graphc_model.step("numpy"))

        def profile() -> Any:
            program, feeds, _ = graphc_model.program("llvm", **ctx.graphc_options)
            return program.profile(feeds, repeat=ctx.repeat)

        ctx.add_profile(name, label, profile)
        if ctx.has("torch"):
            ctx.measure(name, label, "torch (eager)", lambda: torch_step(case, weights))
        if ctx.has("jax"):
            ctx.measure(name, label, "jax (jit)", lambda: jax_step(case, weights))

    run.__doc__ = f"{'training step' if case_fn(False).training else 'inference'}: {case_fn(False).describe()}"
    return run


def fused_elementwise(ctx: Context) -> None:
    """sigmoid(x*w + b)*2 - 1 over 4,194,304 float32 elements; GB/s count read x + write y (w, b are scalars)."""
    from graphc.api import compile as compile_program
    from graphc.ir import Graph
    from ops.fn import sigmoid  # importing ops also installs the tensor operators (x * w + b)

    n = 65536 if ctx.small else 4_194_304
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    w, b = np.float32(0.5), np.float32(0.1)
    y = np.empty_like(x)
    case, traffic = f"n={n}", 2.0 * x.nbytes
    g = Graph("fused_elementwise")
    xi, wp, bp = g.input("x", (n,)), g.param("w", w), g.param("b", b)
    out = sigmoid(xi * wp + bp) * 2.0 - 1.0

    def graphc_call(backend: str) -> Callable[[], Any]:
        prog = compile_program(out, backend=backend, **ctx.graphc_options)
        return lambda: prog(x=x)

    def native_only() -> Callable[[], Any]:  # the single native call, without feed checks and the output copy
        prog = compile_program(out, backend="llvm", **ctx.graphc_options)
        feeds = {"x": x}
        return lambda: prog._run(feeds)

    kw = {"unit": "GB/s", "work": traffic}
    ctx.measure("fused_elementwise", case, "graphc-llvm", lambda: graphc_call("llvm"),
                note="public program call", **kw)
    ctx.measure("fused_elementwise", case, "graphc-llvm (kernel)", native_only,
                note="graphc_main only (Program._run), no output copy", **kw)
    ctx.measure("fused_elementwise", case, "graphc-numpy", lambda: graphc_call("numpy"), **kw)
    ctx.add_profile("fused_elementwise", case, lambda: compile_program(out, backend="llvm", **ctx.graphc_options)
                    .profile({"x": x}, repeat=ctx.repeat))
    ctx.measure("fused_elementwise", case, "numpy expression",
                lambda: lambda: 1.0 / (1.0 + np.exp(-(x * w + b))) * 2.0 - 1.0, **kw)
    ctx.measure("fused_elementwise", case, "memcpy (np.copyto)", lambda: lambda: np.copyto(y, x), **kw)
    if ctx.has("torch"):
        import torch

        tx, tw, tb = torch.from_numpy(x), torch.tensor(w), torch.tensor(b)
        ctx.measure("fused_elementwise", case, "torch (eager)",
                    lambda: lambda: torch.sigmoid(tx * tw + tb) * 2 - 1, **kw)
    if ctx.has("jax"):
        def jax_call() -> Callable[[], Any]:
            import jax
            import jax.numpy as jnp

            fn = jax.jit(lambda v, s, t: jax.nn.sigmoid(v * s + t) * 2 - 1)
            args = (jnp.asarray(x), jnp.asarray(w), jnp.asarray(b))
            return lambda: fn(*args).block_until_ready()

        ctx.measure("fused_elementwise", case, "jax (jit)", jax_call, **kw)


def gemm(ctx: Context) -> None:
    """512³, 1024³ and 128×784·784×512 float32; GFLOP/s = 2·m·n·k / median."""
    from graphc.bench.gemm import DEFAULT_SHAPES

    for m, n, k in ((64, 64, 64), (96, 80, 72)) if ctx.small else DEFAULT_SHAPES:
        _gemm_case(ctx, m, n, k)


def _gemm_case(ctx: Context, m: int, n: int, k: int) -> None:
    from graphc.api import compile as compile_program
    from graphc.bench.gemm import compile_gemm
    from graphc.ir import Graph
    from ops.fn import matmul

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    case, kw = f"{m}x{k} @ {k}x{n}", {"unit": "GFLOP/s", "work": 2.0 * m * n * k}
    g = Graph("gemm")
    prod = matmul(g.input("a", (m, k)), g.input("b", (k, n)))

    def program(backend: str) -> Callable[[], Any]:
        prog = compile_program(prod, backend=backend, **ctx.graphc_options)
        return lambda: prog(a=a, b=b)

    def kernel() -> Callable[[], Any]:
        jit, fn = compile_gemm(m, n, k, **ctx.graphc_options)
        ptrs = (a.ctypes.data, b.ctypes.data, c.ctypes.data)
        return lambda: (jit, fn(*ptrs))  # the closure keeps the jit (the machine code's owner) alive

    ctx.measure("gemm", case, "graphc-llvm", lambda: program("llvm"), **kw)
    ctx.measure("gemm", case, "graphc-gemm kernel", kernel, note="graphc.bench.gemm.compile_gemm, no runtime",
                **kw)
    ctx.measure("gemm", case, "graphc-numpy", lambda: program("numpy"), **kw)
    ctx.add_profile("gemm", case, lambda: compile_program(prod, backend="llvm", **ctx.graphc_options)
                    .profile({"a": a, "b": b}, repeat=ctx.repeat))
    ctx.measure("gemm", case, "numpy", lambda: lambda: np.matmul(a, b, out=c), **kw)
    if ctx.has("torch"):
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ctx.measure("gemm", case, "torch (eager)", lambda: lambda: torch.matmul(ta, tb), **kw)
    if ctx.has("jax"):
        def jax_mm() -> Callable[[], Any]:
            import jax
            import jax.numpy as jnp

            fn, ja, jb = jax.jit(jnp.matmul), jnp.asarray(a), jnp.asarray(b)
            return lambda: fn(ja, jb).block_until_ready()

        ctx.measure("gemm", case, "jax (jit)", jax_mm, **kw)


def compile_time(ctx: Context) -> None:
    """Compile of the mlp_train_step program (llvm): cold (fresh cache dir) and cached; JAX jit lower+compile."""
    from graphc.api import compile as compile_program

    case = mlp_train(ctx.small)
    model = GraphcModel(case)
    cold_repeat = min(ctx.repeat, 3)

    def compile_in(cache_dir: str) -> Any:
        old = os.environ.get("GRAPHC_CACHE_DIR")
        os.environ["GRAPHC_CACHE_DIR"] = cache_dir
        try:
            return compile_program(model.outputs, backend="llvm", updates=model.updates, **ctx.graphc_options)
        finally:
            if old is None:
                os.environ.pop("GRAPHC_CACHE_DIR", None)
            else:
                os.environ["GRAPHC_CACHE_DIR"] = old

    with tempfile.TemporaryDirectory(prefix="graphc-bench-") as root:
        def cold() -> Callable[[], Any]:
            return lambda: compile_in(tempfile.mkdtemp(dir=root))

        def cached() -> Callable[[], Any]:
            compile_in(root)
            return lambda: compile_in(root).jit.cache_hit

        ctx.measure("compile_time", "mlp_train_step cold", "graphc-llvm", cold, note="fresh cache dir per compile",
                    repeat=cold_repeat, warmup=0)
        ctx.measure("compile_time", "mlp_train_step cached", "graphc-llvm", cached, note="object code from cache")
    if ctx.has("jax"):
        def jax_compile() -> Callable[[], Any]:
            import jax

            args = jax_args(case, model.weights())
            return lambda: jax.jit(jax_step_function(case)).lower(*args).compile()

        ctx.measure("compile_time", "mlp_train_step cold", "jax (jit)", jax_compile, note="lower + compile",
                    repeat=cold_repeat, warmup=0)


# name -> workload, in the order `graphc bench` runs them; its first docstring line is the `--help` listing
WORKLOADS: dict[str, Workload] = {
    "mlp_train_step": _model_workload("mlp_train_step", mlp_train),
    "cnn_train_step": _model_workload("cnn_train_step", cnn_train),
    "mlp_infer_bn": _model_workload("mlp_infer_bn", mlp_infer_bn),
    "fused_elementwise": fused_elementwise,
    "gemm": gemm,
    "compile_time": compile_time,
}
