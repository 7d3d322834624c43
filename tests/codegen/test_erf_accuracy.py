"""erf and exact GELU on the llvm backend: dense sweeps against libm's erf/erfc (``math``, ≤ 1 ulp), special
values, and a vectorized kernel without calls; float32 kernels without float64 arithmetic, and the float32 scalar
formulas on NumPy arrays (no fma, no reassociation) as accurate as the compiled ones."""

import math
import re

import numpy as np
import pytest

import graphc as gc
from codegen.target import has_avx512
from ops.scalar import NumpyScalarBuilder
from ops.special import erf_formula, gelu_exact_formula
from runtime.asm import asm_functions as _asm_functions
from runtime.asm import callees

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


def test_float32_erf_formula_on_numpy_arrays():
    """The float32 formula evaluated by NumPy (separately rounded products, no reassociation) is within 1 ulp too,
    also at the pieces' edges (0.75, 1.75) and where erf rounds to 1 (4)."""
    edges = np.concatenate([np.linspace(e - 1e-3, e + 1e-3, 2001) for e in (0.75, 1.75, 4.0)])
    x = np.concatenate([_sweep("float32"), edges, -edges]).astype(np.float32)
    got = erf_formula(NumpyScalarBuilder(), x)
    assert got.dtype == np.float32
    assert _ulps(got, _ERF(x.astype(np.float64))) <= 1.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_erf_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-310, 6.0, -6.0, 27.9, 1e30], dtype=dtype)
    got = _compiled(gc.erf, dtype, x.size)(x=x)
    want = np.array([np.nan, 1, -1, 0, -0.0, 1e-310 * 2 / math.sqrt(math.pi), 1, -1, 1, 1])
    np.testing.assert_array_equal(got[[0, 1, 2, 3, 6, 7, 8, 9]], want[[0, 1, 2, 3, 6, 7, 8, 9]].astype(dtype))
    assert np.signbit(got[4])
    if dtype == "float64":  # a subnormal input: erf x = (2/√π)·x to within rounding
        np.testing.assert_allclose(got[5], want[5], rtol=1e-15)


def _gelu_want(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return x64 * 0.5 * _ERFC(-x64 / math.sqrt(2.0))


def _assert_gelu_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    if got.dtype == np.float32:  # below ~-13.1 the result is no longer a normal float32; compare where it is
        keep = np.abs(want) > np.finfo(np.float32).tiny
        got, want = got[keep], want[keep]
    nonzero = want != 0
    np.testing.assert_allclose(got[nonzero], want[nonzero], rtol=rtol)


# float64: z = x/√2 is rounded (by graphc and by the reference alike) and erfc z amplifies a relative error ε of z
# by 2z²: 2·72·2⁻⁵³ = 1.6e-14 at x = -12, which bounds the agreement; float32 never forms x/√2 (it splits x² exactly)
@pytest.mark.parametrize("dtype, rtol", [("float64", 4e-14), ("float32", 4e-7)])
def test_exact_gelu_relative_accuracy(dtype, rtol):
    """x·Φ(x) keeps its relative accuracy in the negative tail (1 + erf is computed as erfc there)."""
    x = np.concatenate([np.linspace(-12, 8, 40_001), [0.0]]).astype(dtype)
    got = _compiled(lambda v: gc.gelu(v, approximate="none"), dtype, x.size)(x=x)
    _assert_gelu_close(got, _gelu_want(x), rtol)


def test_float32_exact_gelu_down_to_the_smallest_normal_result():
    """Down to x ≈ -13.1, where x·Φ(x) reaches the smallest normal float32 (Φ(x) alone is subnormal there), on the
    llvm backend and with the formula on NumPy arrays."""
    x = np.concatenate([np.linspace(-13.2, 8, 200_001), np.geomspace(1e-30, 13.2, 20_001) * -1]).astype(np.float32)
    want = _gelu_want(x)
    _assert_gelu_close(_compiled(lambda v: gc.gelu(v, approximate="none"), "float32", x.size)(x=x), want, 4e-7)
    _assert_gelu_close(gelu_exact_formula(NumpyScalarBuilder(), x), want, 4e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exact_gelu_special_values(dtype):
    """NaN → NaN, inf → inf, -inf → NaN (-inf·0, as x·½(1 + erf(x/√2))), ±0 → ±0, large |x| → x or -0."""
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 30.0, -40.0], dtype=dtype)
    got = _compiled(lambda v: gc.gelu(v, approximate="none"), dtype, x.size)(x=x)
    np.testing.assert_array_equal(got, np.array([np.nan, np.inf, np.nan, 0, 0, 1e30, 0, 30, 0], dtype))
    assert list(np.signbit(got[3:])) == [False, True, False, True, False, True]


def test_erf_kernel_is_vectorized_without_calls():
    prog = _compiled(lambda x: gc.erf(x) * 2.0, "float32", 4096)
    (info,) = prog.kernels_info()
    assert info["vector_width"] == ("zmm" if has_avx512() else "ymm"), info
    body = _asm_functions(prog.asm())[info["function"]]
    assert "call" not in body


# float↔double conversions and double-precision arithmetic (packed or scalar; not vpmaxsd and other integer ops)
_FLOAT64_INSTRUCTION = r"\bv?cvt\w*(?:2pd|2sd|pd2|sd2)\w*|\bv(?:add|sub|mul|div|max|min|sqrt|fn?m(?:add|sub)\d*)[ps]d\b"


@pytest.mark.parametrize("build", [gc.erf, lambda v: gc.gelu(v, approximate="none")], ids=["erf", "gelu"])
def test_float32_kernels_have_no_float64_arithmetic(build):
    """float32 erf and exact GELU stay in float32 (16 lanes per zmm): no double in the optimized IR of the kernel's
    functions, and no double-precision instruction or float↔double conversion in their assembly."""
    prog = _compiled(lambda x: build(x) * 2.0, "float32", 4096)
    (info,) = prog.kernels_info()
    names = callees(_asm_functions(prog.asm()), [info["function"]])
    ir_text = prog.llvm_ir(optimized=True)
    for name in names:
        body = re.search(rf"define [^\n]*@\"?{re.escape(name)}\"?\(.*?\n}}", ir_text, re.S)
        assert body is not None and "double" not in body.group(0), name
    asm = "\n".join(_asm_functions(prog.asm())[name] for name in names)
    double = re.findall(_FLOAT64_INSTRUCTION, asm)
    assert not double, f"float64 instructions in a float32 kernel: {sorted(set(double))}"
    assert info["vector_width"] == ("zmm" if has_avx512() else "ymm"), info
