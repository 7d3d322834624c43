"""erf and exact GELU on the llvm backend: dense sweeps against libm's erf/erfc (``math``, ≤ 1 ulp), special
values, and a vectorized kernel without calls."""

import math

import numpy as np
import pytest

import graphc as gc
from codegen.target import has_avx512
from runtime.asm import asm_functions as _asm_functions

_ERF = np.vectorize(math.erf, otypes=[np.float64])
_ERFC = np.vectorize(math.erfc, otypes=[np.float64])


def _compiled(build, dtype: str, n: int):
    g = gc.Graph(f"erf_{dtype}")
    x = g.input("x", (n,), dtype)
    return gc.compile(build(x), backend="llvm")


def _ulps(got: np.ndarray, want: np.ndarray) -> float:
    """max |got − want| in units of the last place of want (in got's dtype)."""
    want_t = want.astype(got.dtype)
    spacing = np.spacing(np.abs(want_t)).astype(np.float64)
    return float(np.max(np.abs(got.astype(np.float64) - want) / spacing))


def _sweep(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-7, 7, 60_000), rng.uniform(-1.5, 1.5, 40_000),
                        np.geomspace(1e-30, 30, 20_000)])
    return np.concatenate([x, -x]).astype(dtype)


@pytest.mark.parametrize("dtype, max_ulps", [("float64", 2.0), ("float32", 1.0)])
def test_erf_dense_sweep(dtype, max_ulps):
    x = _sweep(dtype)
    got = _compiled(gc.erf, dtype, x.size)(x=x)
    assert got.dtype == np.dtype(dtype)
    assert _ulps(got, _ERF(x.astype(np.float64))) <= max_ulps


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_erf_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-310, 6.0, -6.0, 27.9, 1e30], dtype=dtype)
    got = _compiled(gc.erf, dtype, x.size)(x=x)
    want = np.array([np.nan, 1, -1, 0, -0.0, 1e-310 * 2 / math.sqrt(math.pi), 1, -1, 1, 1])
    np.testing.assert_array_equal(got[[0, 1, 2, 3, 6, 7, 8, 9]], want[[0, 1, 2, 3, 6, 7, 8, 9]].astype(dtype))
    assert np.signbit(got[4])
    if dtype == "float64":  # a subnormal input: erf x = (2/√π)·x to within rounding
        np.testing.assert_allclose(got[5], want[5], rtol=1e-15)


# float64: z = x/√2 is rounded (by graphc and by the reference alike) and erfc z amplifies a relative error ε of z
# by 2z²: 2·72·2⁻⁵³ = 1.6e-14 at x = -12, which bounds the agreement; float32 is computed in float64 throughout
@pytest.mark.parametrize("dtype, rtol", [("float64", 4e-14), ("float32", 4e-7)])
def test_exact_gelu_relative_accuracy(dtype, rtol):
    """x·Φ(x) keeps its relative accuracy in the negative tail (1 + erf is computed as erfc there)."""
    x = np.concatenate([np.linspace(-12, 8, 40_001), [0.0]]).astype(dtype)
    got = _compiled(lambda v: gc.gelu(v, approximate="none"), dtype, x.size)(x=x)
    x64 = x.astype(np.float64)
    want = x64 * 0.5 * _ERFC(-x64 / math.sqrt(2.0))
    if dtype == "float32":  # below ~-14 the result underflows float32; compare where it is normal
        keep = np.abs(want) > np.finfo(np.float32).tiny
        got, want = got[keep], want[keep]
    nonzero = want != 0
    np.testing.assert_allclose(got[nonzero], want[nonzero], rtol=rtol)


def test_erf_kernel_is_vectorized_without_calls():
    prog = _compiled(lambda x: gc.erf(x) * 2.0, "float32", 4096)
    (info,) = prog.kernels_info()
    assert info["vector_width"] == ("zmm" if has_avx512() else "ymm"), info
    body = _asm_functions(prog.asm())[info["function"]]
    assert "call" not in body
