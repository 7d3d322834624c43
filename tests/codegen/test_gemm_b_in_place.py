"""B read in place (``emit_gemm(b_in_place=...)``, the default when B's rows are contiguous): the strided-B
micro-kernels give bitwise the result of packed B on full and partial panels, several column and depth blocks,
leading dimensions of larger matrices, scaled accumulation, one and two threads; B beside an inaccessible page
(no read past it); packed B stays where its rows are not contiguous."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.gemm.config import default_config, host_vector_bits
from codegen.gemm.driver import emit_gemm, reads_b_in_place
from codegen.target import Jit, new_module
from runtime.parallel import runtime
from tests.codegen.test_gemm_threads import _run
from tests.codegen.test_matmul import KC, MR, NR, _check, _guarded

CFG = default_config("float32", host_vector_bits())
CASES = [  # (m, n, k, options)
    (128, 512, 784, {}),  # W1's forward x @ W
    (2 * MR + 1, NR + 5, 40, {}),  # one full panel and a partial one (packed alone)
    (9, 3 * CFG.nc + NR + 7, 2 * KC + 3, {}),  # several column and depth blocks, a partial last panel
    (33, 200, 70, dict(trans_a=True, accumulate=True)),
    (20, 96, 300, dict(alpha=-0.5, accumulate=True)),
    (17, 3 * NR, 61, dict(dtype="float64")),
]


@pytest.fixture(scope="module")
def jit() -> Jit:
    if not runtime():
        pytest.skip("libgomp is not installed")
    module = new_module("test_gemm_b_in_place")
    for i, (m, n, k, opts) in enumerate(CASES):
        for threads in (1, 2):
            for in_place in (False, True):
                emit_gemm(module, f"g{i}_{int(in_place)}_t{threads}", m, n, k, threads=threads, b_in_place=in_place,
                          **opts)
    return Jit(str(module), name="test_gemm_b_in_place", cache=False)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{m}x{n}x{k}" for m, n, k, _ in CASES])
def test_in_place_b_is_bitwise_packed_b(jit, index, threads, rng):
    m, n, k, opts = CASES[index]
    dtype = opts.get("dtype", "float32")
    a = rng.standard_normal((k, m) if opts.get("trans_a") else (m, k)).astype(dtype)
    b, region = _guarded(rng.standard_normal((k, n)).astype(dtype), True)  # a read past B's end faults
    c0 = rng.standard_normal((m, n)).astype(dtype)
    packed, in_place = (_run(jit, f"g{index}_{flag}_t{threads}", m, n, k, 1, opts, threads, a, b, c0)
                        for flag in (0, 1))
    np.testing.assert_array_equal(in_place, packed)
    scale = opts.get("alpha", 1.0)
    _check(in_place, (a.T if opts.get("trans_a") else a).astype(np.float64) * scale, b,
           c0.astype(np.float64) if opts.get("accumulate") else None, dtype)
    del b
    region.close()


def test_in_place_only_where_rows_are_contiguous_and_a_panel_wide():
    assert reads_b_in_place(128, 512, 784, False, CFG)
    assert not reads_b_in_place(128, 512, 784, True, CFG)  # Bᵀ: a column of B is strided, packing transposes
    module = new_module("narrow")
    emit_gemm(module, "g", 64, NR - 1, 64)  # narrower than one panel: packed, no strided-B micro-kernel
    assert f"uk{MR}x{NR}d" not in str(module)
