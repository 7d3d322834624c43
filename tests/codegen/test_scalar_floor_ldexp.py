"""The scalar builder's ``floor`` and ``ldexp`` (exact range-reduction steps of float32 erf and exact GELU): the
LLVM implementations agree bit for bit with NumPy's, ldexp also where the product overflows or becomes subnormal."""

import ctypes
from functools import cache

import llvmlite.ir as ir
import numpy as np
import pytest

from codegen.scalar import LLVMScalarBuilder, value_type
from codegen.target import Jit, new_module
from ops.scalar import NumpyScalarBuilder


@cache
def _kernel(method: str, dtype: str):
    """A JIT-compiled loop ``out[i] = method(x[i])`` (floor) or ``method(x[i], n[i])`` (ldexp)."""
    ty = value_type(dtype)
    p, i64 = ty.as_pointer(), ir.IntType(64)
    module = new_module(f"builder_{method}_{dtype}")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [p, p, p, i64]), "f")
    entry, loop, done = fn.append_basic_block("entry"), fn.append_basic_block("loop"), fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", fn.args[3], ir.Constant(i64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(ir.Constant(i64, 0), entry)
    args = [b.load(b.gep(fn.args[0], [i])), b.load(b.gep(fn.args[1], [i]))][:2 if method == "ldexp" else 1]
    b.store(getattr(LLVMScalarBuilder(b), method)(*args), b.gep(fn.args[2], [i]))
    nxt = b.add(i, ir.Constant(i64, 1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, fn.args[3]), loop, done)
    b.position_at_end(done)
    b.ret_void()
    jit = Jit(str(module), name=module.name)
    return jit, ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, ctypes.c_int64)(jit.address("f"))


def _run(method: str, x: np.ndarray, n: np.ndarray | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x)
    n = np.ascontiguousarray(x if n is None else n, dtype=x.dtype)
    out = np.empty_like(x)
    _kernel(method, x.dtype.name)[1](x.ctypes.data, n.ctypes.data, out.ctypes.data, x.size)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floor_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1e3, 1e3, 10_000), np.arange(-4, 4.5, 0.5), [0.0, -0.0, -1e-30, 1e30, -1e30],
                        [np.inf, -np.inf, np.nan]]).astype(dtype)
    got, want = _run("floor", x), NumpyScalarBuilder().floor(x)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))  # floor(-0) = -0


@pytest.mark.parametrize("dtype, emax", [("float32", 127), ("float64", 1023)])
def test_ldexp_is_exact_scaling(dtype, emax):
    """x·2ⁿ for every n with 2ⁿ normal: exact, one rounding into the subnormal range, inf past the largest float."""
    rng = np.random.default_rng(1)
    n = np.arange(1 - emax, emax + 1).astype(dtype)
    x = (rng.uniform(1, 2, n.size) * rng.choice([-1, 1], n.size)).astype(dtype)
    for scale in (1.0, 2.0**-30, 2.0**30, 0.0):  # normal products, subnormal or zero ones, overflowing ones
        xs = (x * scale).astype(dtype)
        with np.errstate(over="ignore"):
            want = NumpyScalarBuilder().ldexp(xs, n)
        np.testing.assert_array_equal(_run("ldexp", xs, n), want)
    special = np.array([np.nan, np.inf, -np.inf, -0.0], dtype)
    got = _run("ldexp", special, np.array([3, -3, 5, 7], dtype))
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf and got[3] == 0 and np.signbit(got[3])
