"""The multi-threaded GEMM (one parallel region over a grid of C chunks): bitwise the same result as one thread for
2, 3 and 5 threads on odd and tile-boundary sizes, transposes, accumulation, batches and float64, with exactly
``workspace_bytes`` of workspace (flush against an inaccessible page) and no store outside C; and the grid itself
covers C exactly once in tiles of the register geometry."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.gemm.blocking import PARALLEL_MIN_MACS, partition, workspace_bytes
from codegen.gemm.config import default_config, host_vector_bits
from codegen.gemm.driver import emit_gemm
from codegen.target import Jit, new_module
from runtime.parallel import runtime
from tests.codegen.test_matmul import SIG, _check, _guarded, _operands

CFG = default_config("float32", host_vector_bits())
MR, NR = CFG.mr, CFG.nr
THREADS = (1, 2, 3, 5)
CASES = [  # (m, n, k, batch, options): each at least PARALLEL_MIN_MACS multiply-adds, so the threads really split
    (128, 512, 784, 1, {}),
    (128, 10, 256, 1, {}),  # one column panel: the rows are split
    (2 * MR + 1, 4 * NR + 3, 1000, 1, {}),
    (513, 131, 77, 1, dict(trans_a=True)),
    (300, 33, 200, 1, dict(trans_b=True)),
    (97, 203, 71, 1, dict(trans_a=True, trans_b=True, accumulate=True)),
    (7, 1000, 64, 1, dict(accumulate=True)),
    (37, 45, 61, 3, {}),  # batch items become chunks too
    (61, 130, 90, 2, dict(dtype="float64", trans_b=True)),
    (16, 1568, 10, 1, {}),  # on 3 threads the narrower last slice blocks wider than the others (more workspace)
    (9, 1000, 16, 1, dict(trans_b=True)),
    (1, 1000, 1280, 1, {}),  # matrix-vector products (codegen.gemm.skinny): column blocks are the chunks
    (2, 777, 300, 1, dict(trans_b=True)),
    (1, 515, 333, 2, dict(trans_a=True, accumulate=True)),
    (2, 65, 2000, 1, dict(dtype="float64", trans_b=True, accumulate=True)),
]


@pytest.fixture(scope="module")
def jit() -> Jit:
    if not runtime():
        pytest.skip("libgomp is not installed: programs run on one thread")
    module = new_module("test_gemm_threads")
    for i, (m, n, k, batch, opts) in enumerate(CASES):
        for threads in THREADS:
            emit_gemm(module, f"g{i}_t{threads}", m, n, k, batch=batch, threads=threads, **opts)
    return Jit(str(module), name="test_gemm_threads", cache=False)


def _run(jit: Jit, name: str, m: int, n: int, k: int, batch: int, opts: dict, threads: int, a: np.ndarray,
         b: np.ndarray, c0: np.ndarray) -> np.ndarray:
    dtype = opts.get("dtype", "float32")
    nbytes = workspace_bytes(m, n, k, dtype, config=opts.get("config"), threads=threads, batch=batch,
                             trans_c=opts.get("trans_c", False))
    workspace, region = _guarded(np.zeros(max(nbytes, 64), np.uint8), True)
    pad = 64
    buf = np.full(c0.size + 2 * pad, 7.0, dtype)
    buf[pad:pad + c0.size] = c0.ravel()
    SIG(jit.address(name))(a.ctypes.data, b.ctypes.data, buf[pad:].ctypes.data, workspace.ctypes.data)
    assert np.all(buf[:pad] == 7.0) and np.all(buf[pad + c0.size:] == 7.0), "a store outside C"
    del workspace
    region.close()
    return buf[pad:pad + c0.size].reshape(c0.shape).copy()


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{m}x{n}x{k}b{t}-{i}" for i, (m, n, k, t, _)
                                                          in enumerate(CASES)])
def test_threads_match_one_thread_bitwise(jit, index, rng):
    m, n, k, batch, opts = CASES[index]
    assert batch * m * n * k >= PARALLEL_MIN_MACS
    dtype = opts.get("dtype", "float32")
    pairs = [_operands(m, n, k, opts, rng) for _ in range(batch)]
    a = np.stack([p[0] for p in pairs])
    b = np.stack([p[1] for p in pairs])
    c0 = rng.standard_normal((batch, m, n)).astype(dtype)
    results = {t: _run(jit, f"g{index}_t{t}", m, n, k, batch, opts, t, a, b, c0) for t in THREADS}
    for item in range(batch):
        a_op = a[item].T if opts.get("trans_a") else a[item]
        b_op = b[item].T if opts.get("trans_b") else b[item]
        _check(results[1][item], a_op, b_op, c0[item].astype(np.float64) if opts.get("accumulate") else None, dtype)
    for threads in THREADS[1:]:
        np.testing.assert_array_equal(results[threads], results[1], err_msg=f"{threads} threads differ from one")


@pytest.mark.parametrize("threads", [2, 3, 8, 64])
@pytest.mark.parametrize("m, n, k, batch, big", [(128, 512, 784, 1, True), (1, 4096, 512, 1, True),
                                                 (4096, 3, 512, 1, True), (50, 50, 50, 16, False),
                                                 (MR * 3 + 1, NR * 5 - 1, 300, 1, False)])
def test_partition_covers_c_once_in_register_tiles(m, n, k, batch, big, threads):
    grid = partition(m, n, k, batch, CFG, threads)
    assert grid is not None
    assert grid.band % MR == 0 or grid.rows == 1 and grid.band == m
    assert grid.width % NR == 0 or grid.cols == 1 and grid.width == n
    assert (grid.rows - 1) * grid.band + grid.last_band == m and 0 < grid.last_band <= grid.band
    assert (grid.cols - 1) * grid.width + grid.last_width == n and 0 < grid.last_width <= grid.width
    assert len(grid.shapes()) <= 4
    chunks = batch * grid.rows * grid.cols
    assert chunks >= 2
    if big:  # compute dominates packing: every thread gets a chunk
        assert chunks >= min(threads, batch * -(-m // MR) * -(-n // NR))


def test_small_or_single_threaded_gemms_stay_serial():
    assert partition(512, 512, 512, 1, CFG, 1) is None
    assert partition(16, 16, 16, 1, CFG, 8) is None  # too little work for a parallel region
    assert workspace_bytes(16, 16, 16, threads=8) == workspace_bytes(16, 16, 16)
    assert workspace_bytes(512, 512, 512, threads=4) > workspace_bytes(512, 512, 512)


@pytest.mark.parametrize("cpu, config, reg, accumulators", [
    ("znver3", default_config("float32", 256), "ymm", 12),  # AVX2: the 6 x 2 ymm tile
    ("skylake-avx512", default_config("float32", 512), "zmm", 16),  # AVX-512: the 8 x 2 zmm tile
])
def test_both_vector_isas_cross_compile_the_threaded_gemm(cpu, config, reg, accumulators):
    """Whatever the host, the multi-threaded GEMM compiles for the other ISA too: the chunk functions call the
    micro-kernel of that ISA's tile (FMA on its registers, no wider ones) from one parallel region."""
    import re

    from tests.codegen.cross import cross_asm

    module = new_module("cross")
    emit_gemm(module, "g", 128, 512, 784, config=config, threads=2)
    assert "graphc_rt_parallel" in str(module)
    asm = cross_asm(module, cpu)
    kernel = asm[f"graphc.gemm.f32.{config.vec}x{config.nv}.uk{config.mr}x{config.nr}d"]  # B read in place
    assert len(re.findall(rf"vfmadd\d+ps\s+.*%{reg}", kernel)) >= accumulators
    if reg == "ymm":
        assert "zmm" not in "".join(asm.values())
    assert any("graphc_rt_parallel" in body for body in asm.values())


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, True)])
def test_blocks_of_larger_matrices(jit_free_module, threads, trans_a, trans_b, rng):
    """``lds``: A, B and C are blocks of larger row-major matrices; the GEMM reads and writes only its block."""
    m, n, k, pad = 70, 90, 60, 13
    a_rows, a_cols = (k, m) if trans_a else (m, k)
    b_rows, b_cols = (n, k) if trans_b else (k, n)
    big_a = rng.standard_normal((a_rows, a_cols + pad)).astype(np.float32)
    big_b = rng.standard_normal((b_rows, b_cols + pad)).astype(np.float32)
    big_c = np.full((m, n + pad), 7.0, np.float32)
    module = jit_free_module
    emit_gemm(module, "blk", m, n, k, trans_a=trans_a, trans_b=trans_b, threads=threads,
              lds=(a_cols + pad, b_cols + pad, n + pad))
    jit = Jit(str(module), name="blocks", cache=False)
    workspace = np.zeros(workspace_bytes(m, n, k, threads=threads) + 64, np.uint8)
    aligned = workspace.ctypes.data + (-workspace.ctypes.data) % 64
    SIG(jit.address("blk"))(big_a.ctypes.data, big_b.ctypes.data, big_c.ctypes.data, aligned)
    a_op = big_a[:, :a_cols].T if trans_a else big_a[:, :a_cols]
    b_op = big_b[:, :b_cols].T if trans_b else big_b[:, :b_cols]
    _check(big_c[:, :n], a_op, b_op, None, "float32")
    assert np.all(big_c[:, n:] == 7.0)


@pytest.fixture
def jit_free_module():
    if not runtime():
        pytest.skip("libgomp is not installed")
    return new_module("blocks")


def test_short_leading_dimensions_are_refused():
    with pytest.raises(ValueError, match="leading dimensions"):
        emit_gemm(new_module("bad"), "g", 4, 5, 6, lds=(5, 5, 5))
