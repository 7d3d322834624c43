"""softmax / log_softmax over every axis on the LLVM backend vs the NumPy interpreter.

Three lowerings (``codegen.activation``): the last axis (contiguous rows), inner > 1 with n ≤ UNROLL (rows held in
registers) and inner > 1 with larger n (three passes over blocks of inner positions, m and s rows in scratch, with a
tail block). Each is checked in float32 and float64, with special values (NaN, ±inf, all -inf rows) where NumPy's
answer is the reference bit pattern for NaN-ness, on 1, 2 and 3 threads (bitwise equal), and the inner > 1 kernels
are vectorized (zmm/ymm, no gathers)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import codegen.activation as activation
import codegen.loops as loops
import graphc as gc
from codegen.target import has_avx512
from runtime.asm import asm_functions, count_registers
from runtime.parallel import runtime

OPS = ("softmax", "log_softmax")
DTYPES = ("float32", "float64")
SHAPES = [(5, 7), (3, 4, 6), (2, 3, 4, 5), (3, 40, 5), (2, 37, 9, 3)]
RTOL, ATOL = 2e-5, 2e-6  # the differential tests' tolerances (atol scaled by max |reference|, here ≤ 1 or |log|)


def _case(shape, axis, op, dtype):
    g = gc.Graph("sm")
    x = g.input("x", shape, dtype)
    return getattr(gc, op)(x, axis=axis)


def _feed(shape, dtype, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 3).astype(dtype)


def _compare(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # NaN exactly where NumPy has NaN
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])  # ±inf
    scale = max(1.0, float(np.max(np.abs(want[finite]), initial=0.0)))
    np.testing.assert_allclose(got[finite], want[finite], rtol=RTOL, atol=ATOL * scale)


def _both(y, x: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    got = gc.compile(y, backend="llvm", threads=threads, cache=False)(x=x)
    want = gc.compile(y, backend="numpy")(x=x)
    return np.asarray(got), np.asarray(want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_axis_matches_numpy(shape, op, dtype):
    for axis in range(-len(shape), len(shape)):
        got, want = _both(_case(shape, axis, op, dtype), _feed(shape, dtype))
        assert got.dtype == np.dtype(dtype)
        _compare(got, want)


@pytest.mark.parametrize("op", OPS)
def test_blocked_inner_axis_with_tail(op, monkeypatch):
    """n > UNROLL and inner cut into blocks of 64 positions plus a 22-position tail; then an unpatched shape whose
    rows exceed BLOCK_BYTES (two blocks of 1008 and 992 in float32)."""
    monkeypatch.setattr(activation, "MAX_BLOCK", 64)
    assert activation.inner_block(40, 150, 4) == 64
    got, want = _both(_case((2, 40, 150), 1, op, "float32"), _feed((2, 40, 150), "float32"))
    _compare(got, want)
    monkeypatch.undo()
    assert activation.inner_block(40, 2000, 4) == 1008
    for dtype in DTYPES:
        got, want = _both(_case((2, 40, 2000), 1, op, dtype), _feed((2, 40, 2000), dtype, 1))
        _compare(got, want)


def _special(shape, axis: int, dtype: str) -> np.ndarray:
    """Random rows, then along ``axis``: a row with a NaN, a row of -inf, a row with +inf, a row with some -inf,
    a row with a huge and a tiny value."""
    moved = np.ascontiguousarray(np.moveaxis(_feed(shape, dtype, 3), axis, -1))  # rows along the last axis
    flat = moved.reshape(-1, moved.shape[-1])
    assert flat.shape[0] >= 5 and np.shares_memory(flat, moved)
    flat[0, 1] = np.nan
    flat[1, :] = -np.inf
    flat[2, 0] = np.inf
    flat[3, ::2] = -np.inf
    flat[4, 0], flat[4, -1] = 1e30 if dtype == "float32" else 1e300, -1e30
    return np.ascontiguousarray(np.moveaxis(moved, -1, axis))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("shape", "axis"), [((6, 5), 1), ((6, 5), 0), ((4, 3, 6), 1), ((3, 40, 5), 1),
                                             ((40, 2, 3), 0)], ids=str)
def test_nan_and_inf_rows_like_numpy(shape, axis, op, dtype):
    x = _special(shape, axis, dtype)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        got, want = _both(_case(shape, axis, op, dtype), x)
    rows = np.moveaxis(want, axis, -1).reshape(-1, shape[axis])
    assert np.isnan(rows[0]).all() and np.isnan(rows[1]).all() and np.isnan(rows[2]).all()  # NumPy's answer
    assert (rows[3, ::2] == (0 if op == "softmax" else -np.inf)).all()
    _compare(got, want)


needs_threads = pytest.mark.skipif(not runtime(), reason="libgomp is not installed: programs run on one thread")


@needs_threads
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("shape", "axis", "grain"), [((3, 40, 7), 1, 1), ((8, 5, 6, 3), 1, 1), ((4, 9, 6), 2, 1),
                                                      ((3, 40, 2000), 1, None), ((8, 1000, 64), 0, None)], ids=str)
def test_one_two_three_threads_bitwise_equal(shape, axis, grain, op, monkeypatch):
    if grain is not None:
        monkeypatch.setattr(loops, "GRAIN", grain)
    y = _case(shape, axis, op, "float32")
    x = _special(shape, axis, "float32")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        results = [np.asarray(gc.compile(y, backend="llvm", threads=t, cache=False)(x=x)) for t in (1, 2, 3)]
        want = np.asarray(gc.compile(y, backend="numpy")(x=x))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    _compare(results[0], want)


@pytest.mark.parametrize(("shape", "axis"), [((8, 1000, 64), 1), ((8, 1000, 64), 0)], ids=str)
def test_inner_axis_kernels_are_vectorized(shape, axis):
    """The column lowerings (blocked passes for n = 1000, registers for n = 8) use full-width vector registers and
    contiguous loads, not gathers."""
    prog = gc.compile(_case(shape, axis, "softmax", "float32"), backend="llvm", threads=1, cache=False)
    (info,) = prog.kernels_info()
    bodies = asm_functions(prog.asm())
    mine = {name: body for name, body in bodies.items() if name.startswith(info["function"])}
    assert any(".cols" in name for name in mine), list(mine)  # the column lowering ran
    code = "\n".join(mine.values())
    reg = "zmm" if has_avx512() else "ymm"
    assert count_registers(code)[reg] >= 16, count_registers(code)
    assert not re.search(r"vgather|vscatter", code)
    assert "call" not in "\n".join(body for name, body in mine.items() if ".cols" in name)  # exp/log inlined
