"""Fused elementwise/broadcast kernels on the LLVM backend vs the interpreter: odd sizes, size-1 dims, scalars,
broadcasting, non-contiguous feeds; the fused kernel is vectorized (zmm where the CPU has AVX-512)."""

import re

import numpy as np
import pytest

import graphc as gc
from codegen.target import has_avx512
from runtime.asm import asm_functions as _asm_functions


def _both(outputs, feeds):
    want = gc.compile(outputs, backend="numpy")(**feeds)
    prog = gc.compile(outputs, backend="llvm")
    got = prog(**feeds)
    return prog, want, got


@pytest.mark.parametrize("n", [1, 3, 17, 1023])
def test_fused_chain_odd_sizes(n, rng):
    g = gc.Graph("chain")
    x, w, b = g.input("x", (n,)), g.input("w", (n,)), g.input("b", ())
    y = gc.sigmoid(x * w + b) * 2.0 - 1.0
    feeds = {"x": rng.standard_normal(n), "w": rng.standard_normal(n), "b": np.float32(0.3)}
    prog, want, got = _both(y, feeds)
    assert len(prog.plan.kernels) == 1
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("shapes", [((3, 1, 5), (4, 1), (5,)), ((2, 3, 4), (1, 3, 1), ()), ((1,), (1, 1), (7, 1)),
                                    ((17, 1), (1, 33), (1, 1))])
def test_broadcast_three_inputs_two_outputs(shapes, rng):
    g = gc.Graph("bcast")
    a, b, c = (g.input(k, s) for k, s in zip("abc", shapes))
    t = gc.tanh(a * b) + c
    u = gc.where(gc.greater(t, 0.0), gc.exp(-t), gc.log(gc.abs(t) + 1.0))
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in zip("abc", shapes)}
    _, want, got = _both({"t": t, "u": u, "mask": gc.greater(t, 0.0)}, feeds)
    for key in want:
        if want[key].dtype == bool:
            np.testing.assert_array_equal(got[key], want[key])
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=2e-6, atol=1e-6)


def test_non_contiguous_feeds_and_scalars(rng):
    g = gc.Graph("strided")
    x, s = g.input("x", (5, 3)), g.input("s", ())
    y = gc.maximum(x, s) ** 2 + gc.minimum(x, 0.0) / 3.0
    base = rng.standard_normal((3, 10)).astype(np.float32)
    feeds = {"x": base.T[::2], "s": 0.1}
    assert not feeds["x"].flags.c_contiguous
    _, want, got = _both(y, feeds)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


def test_float64_int64_bool_and_casts(rng):
    g = gc.Graph("dtypes")
    x, k = g.input("x", (4, 6), "float64"), g.input("k", (6,), "int64")
    m = gc.maximum(k, 0) * 3 - k
    y = gc.cast(m, "float64") * x + gc.cast(gc.greater(x, 0.0), "float64")
    z = gc.cast(x * 10.0, "int64")
    feeds = {"x": rng.standard_normal((4, 6)), "k": rng.integers(-5, 5, 6)}
    _, want, got = _both({"m": m, "y": y, "z": z}, feeds)
    np.testing.assert_array_equal(got["m"], want["m"])
    np.testing.assert_array_equal(got["z"], want["z"])
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-13)


def test_special_values_propagate_like_numpy():
    g = gc.Graph("special")
    x = g.input("x", (6,))
    outs = {"relu": gc.relu(x), "sig": gc.sigmoid(x), "tanh": gc.tanh(x), "max": gc.maximum(x, 1.0),
            "gt": gc.greater(x, 0.0)}
    feeds = {"x": np.array([np.nan, np.inf, -np.inf, 0.0, -1e30, 1e30], dtype=np.float32)}
    _, want, got = _both(outs, feeds)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_fused_kernel_asm_is_vectorized():
    g = gc.Graph("vec")
    x, w, b = g.input("x", (4096,)), g.input("w", (4096,)), g.input("b", (4096,))
    prog = gc.compile(gc.sigmoid(x * w + b) * 2.0 - 1.0, backend="llvm")
    (info,) = prog.kernels_info()
    assert info["vector_width"] == ("zmm" if has_avx512() else "ymm"), info
    assert "zmm" in prog.asm() if has_avx512() else "ymm" in prog.asm()
    body = _asm_functions(prog.asm())[info["function"]]
    assert "call" not in body  # exp/sigmoid inlined as polynomials, no libm calls


def test_fused_kernel_compiles_to_zmm_for_avx512():
    """The same generated IR, optimized and compiled for an AVX-512 CPU (this host may lack it), uses zmm."""
    import llvmlite.binding as llvm

    from codegen.target import _optimize, _parse, host

    g = gc.Graph("vec512")
    x, w, b = g.input("x", (4096,)), g.input("w", (4096,)), g.input("b", (4096,))
    prog = gc.compile(gc.sigmoid(x * w + b) * 2.0 - 1.0, backend="llvm")
    (info,) = prog.kernels_info()
    module = _parse(prog.llvm_ir(optimized=False))
    tm = llvm.Target.from_triple(host()[0]).create_target_machine(
        cpu="skylake-avx512", features="+avx512f,+avx512dq,+avx512vl,+avx512bw,-prefer-256-bit", opt=3)
    _optimize(module, tm)
    body = _asm_functions(tm.emit_assembly(module))[info["function"]]
    assert len(re.findall(r"%zmm\d+", body)) >= 10, body[:2000]
    assert "call" not in body
