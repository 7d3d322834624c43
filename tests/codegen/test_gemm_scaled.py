"""``emit_gemm(alpha=...)``: C (+)= alpha·op(A)·op(B), the product scaled on registers by the scaled micro-kernels
(plain SGD's step written straight into a weight). Checked against float64 NumPy with the dot-product error bound,
bitwise against "unscaled GEMM, then alpha·C in NumPy" where the depth is one block (the same rounding steps as the
separate update kernel), on partial tiles, several depth blocks, the row counts the matrix-vector path would take,
threads, and float64; no store leaves C."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.gemm.driver import emit_gemm
from codegen.target import Jit, new_module
from runtime.parallel import runtime
from tests.codegen.test_gemm_threads import _run
from tests.codegen.test_matmul import KC, MR, NR, _check, _operands

ALPHA = -0.0123
CASES = [  # (m, n, k, options)
    (784, 512, 128, {}),  # W1's first weight gradient: xᵀ·δ, one depth block
    (2 * MR + 3, 2 * NR + 5, 3 * KC + 7, {}),  # partial row and column tiles, four depth blocks
    (2, 300, 40, {}),  # a row count the unpacked matrix-vector path would take without alpha
    (61, 97, 45, dict(trans_a=True)),
    (37, 70, 300, dict(trans_b=True, dtype="float64")),
]


@pytest.fixture(scope="module")
def jit() -> Jit:
    if not runtime():  # loads the parallel runtime the two-thread GEMMs call
        pytest.skip("libgomp is not installed")
    module = new_module("test_gemm_scaled")
    for i, (m, n, k, opts) in enumerate(CASES):
        for accumulate in (False, True):
            for threads in (1, 2):
                emit_gemm(module, f"s{i}_{int(accumulate)}_t{threads}", m, n, k, accumulate=accumulate,
                          threads=threads, alpha=ALPHA, **opts)
        emit_gemm(module, f"plain{i}", m, n, k, **opts)
    return Jit(str(module), name="test_gemm_scaled", cache=False)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{m}x{n}x{k}" for m, n, k, _ in CASES])
def test_scaled_gemm_matches_numpy(jit, index, accumulate, threads, rng):
    m, n, k, opts = CASES[index]
    dtype = opts.get("dtype", "float32")
    a, b = _operands(m, n, k, opts, rng)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    got = _run(jit, f"s{index}_{int(accumulate)}_t{threads}", m, n, k, 1, opts, threads, a, b,
               c0 if accumulate else np.zeros_like(c0))
    a_op = a.T if opts.get("trans_a") else a
    b_op = b.T if opts.get("trans_b") else b
    _check(got, (a_op * ALPHA).astype(np.float64), b_op, c0.astype(np.float64) if accumulate else None, dtype)
    if k <= KC:  # one depth block: exactly the separate kernels' rounding, round(round(alpha·AB) + c0)
        plain = _run(jit, f"plain{index}", m, n, k, 1, opts, 1, a, b, np.zeros_like(c0))
        step = plain * np.asarray(ALPHA, dtype)
        np.testing.assert_array_equal(got, step + c0 if accumulate else step)


def test_threads_agree_bitwise(jit, rng):
    m, n, k, opts = CASES[1]
    a, b = _operands(m, n, k, opts, rng)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    one, two = (_run(jit, f"s1_1_t{t}", m, n, k, 1, opts, t, a, b, c0) for t in (1, 2))
    np.testing.assert_array_equal(one, two)
