"""The scalar builder's ``floor`` and ``ldexp`` (exact range-reduction steps of float32 erf and exact GELU): the
LLVM implementations agree bit for bit with NumPy's, ldexp also where the product overflows or becomes subnormal."""

import numpy as np
import pytest

from ops.scalar import NumpyScalarBuilder
from tests.codegen.test_mathlib import run  # a JIT loop out[i] = method(x[i][, y[i]]) of the LLVM scalar builder


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floor_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1e3, 1e3, 10_000), np.arange(-4, 4.5, 0.5), [0.0, -0.0, -1e-30, 1e30, -1e30],
                        [np.inf, -np.inf, np.nan]]).astype(dtype)
    got, want = run("floor", x), NumpyScalarBuilder().floor(x)
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
        np.testing.assert_array_equal(run("ldexp", xs, n), want)
    special = np.array([np.nan, np.inf, -np.inf, -0.0], dtype)
    got = run("ldexp", special, np.array([3, -3, 5, 7], dtype))
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf and got[3] == 0 and np.signbit(got[3])
