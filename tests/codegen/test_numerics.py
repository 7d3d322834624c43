"""Numerical care in the LLVM lowering of log-softmax and softmax cross-entropy.

Rows far from 0 (|max| ~ 100) with one confident class: the result (~6e-6) is far below float32's spacing near
the max (7.6e-6), so computing m + log s before subtracting loses it (an error of ~1.5e-6 here). The kernels must
stay within float32's own limit: s = Σ exp(z - m) ≈ 1 is held to ulp(1) ≈ 1.2e-7, so the error bound is two
ulp(1), absolute, plus a relative 1e-6 for the large entries — as the NumPy reference achieves.
"""

import numpy as np
import pytest

import graphc as gc

ATOL = 2 * np.finfo(np.float32).eps  # two ulp of 1.0
ROWS = np.array([[-88, -100, -105, -200], [100, 80, 90, 70], [1, 2, 3, 4], [0, -12, -17, -112]], np.float32)


def _truth_log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return (z - m) - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def test_log_softmax_of_offset_confident_rows():
    g = gc.Graph("lsm")
    x = g.input("x", ROWS.shape)
    got = gc.compile(gc.log_softmax(x), backend="llvm")(x=ROWS)
    np.testing.assert_allclose(got, _truth_log_softmax(ROWS), rtol=1e-6, atol=ATOL)


@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_softmax_cross_entropy_of_offset_confident_rows(targets):
    g = gc.Graph("ce")
    z = g.input("z", ROWS.shape)
    labels = np.array([0, 0, 3, 0])
    if targets == "labels":
        t, feed = g.input("t", (4,), "int64"), labels
    else:
        t, feed = g.input("t", ROWS.shape), np.eye(4, dtype=np.float32)[labels]
    got = gc.compile(gc.softmax_cross_entropy(z, t, reduction="none"), backend="llvm")(z=ROWS, t=feed)
    want = -_truth_log_softmax(ROWS)[np.arange(4), labels]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=ATOL)


def test_softmax_special_values_match_numpy():
    g = gc.Graph("special")
    x = g.input("x", (4, 4))
    rows = np.array([[-np.inf, 0, 1, 2], [np.nan, 0, 1, 2], [-np.inf] * 4, [1e30, -1e30, 0, 3]], np.float32)
    outs = {"s": gc.softmax(x), "l": gc.log_softmax(x)}
    want, got = (gc.compile(outs, backend=b)(x=rows) for b in ("numpy", "llvm"))
    for key in outs:
        np.testing.assert_array_equal(np.isnan(got[key]), np.isnan(want[key]), err_msg=key)
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-6), ("float64", 1e-14)])
def test_softplus_is_accurate_far_into_the_negative_tail(dtype, rtol):
    """softplus(x) = log1p(eˣ) ≈ eˣ for x ≪ 0: log(1 + e) would round 1 + e to 1 and return 0 (x < -17 in float32,
    < -37 in float64); the stable form keeps full relative accuracy there and everywhere else."""
    x = np.concatenate([-np.geomspace(1e-3, 700, 200), np.geomspace(1e-3, 80, 50), [0.0]]).astype(dtype)
    truth = np.logaddexp(0.0, x.astype(np.float64))  # float64 truth (exact enough for float32, and for float64 here)
    g = gc.Graph("softplus")
    v = g.input("x", x.shape, dtype)
    for backend in ("llvm", "numpy"):
        got = gc.compile(gc.softplus(v), backend=backend)(x=x)
        np.testing.assert_allclose(got, truth.astype(dtype), rtol=rtol, atol=0, err_msg=backend)


@pytest.mark.parametrize("backend", ["llvm", "numpy"])
def test_sign_and_cast_of_special_values_are_one_behaviour(backend):
    x = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 2.0**63, -(2.0**63), -2.7, 2.7, -0.0])
    g = gc.Graph("special")
    v = g.input("x", x.shape, "float64")
    got = gc.compile({"sign": gc.sign(v), "int": gc.cast(v, "int64"), "bool": gc.cast(v, "bool")}, backend=backend)(x=x)
    np.testing.assert_array_equal(got["sign"], np.sign(x))  # sign(NaN) is NaN, as NumPy
    low, high = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    np.testing.assert_array_equal(got["int"], [low, high, low, high, low, high, low, -2, 2, 0])  # NaN: INT64_MIN
    np.testing.assert_array_equal(got["bool"], x != 0)
