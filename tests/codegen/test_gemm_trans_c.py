"""A transposed C (``emit_gemm(trans_c=True)``: element (i, j) at ``C[j*ldc + i]``): the micro-kernels store each
column of their tile as one vector (``codegen.gemm.transpose``). Bitwise the transpose of the plain GEMM's C on
partial row and column tiles, narrow edge vectors, several depth and column blocks, accumulation, scaling,
float64, a larger leading dimension, two threads, a store epilogue (row and column vectors, the residual laid out
like the stored C, relu), AVX2's 6-row tiles; nothing is written outside C."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from llvmlite import ir

from codegen.gemm import transpose
from codegen.gemm.blocking import workspace_bytes
from codegen.gemm.config import default_config
from codegen.gemm.driver import emit_gemm
from codegen.gemm.store_epilogue import StoreEpilogue
from codegen.llvm import F32, PTR, VOID
from codegen.target import Jit, new_module
from runtime.parallel import runtime
from tests.codegen.test_gemm_threads import _run
from tests.codegen.test_matmul import AVX512_F32

AVX2_F32 = default_config("float32", 256)
CASES = [  # (m, n, k, threads, options)
    (49, 512, 300, 1, {}),  # ResNet's 7×7 layers as yᵀ: 6 full row tiles + 5 + 4, two depth blocks
    (13, 36, 20, 1, {}),  # a 4-column narrow vector, partial rows
    (3, 17, 9, 1, {}),  # one tile under half height
    (40, 2 * AVX512_F32.nc + 20, 40, 1, {}),  # several column blocks
    (21, 40, 33, 1, dict(alpha=-0.25)),
    (19, 50, 700, 1, dict(trans_a=True, trans_b=True)),  # three depth blocks of partial sums
    (20, 30, 10, 1, dict(lds=(10, 30, 29))),  # C's rows (stored: its columns) 29 apart
    (10, 19, 20, 1, dict(dtype="float64")),
    (96, 160, 64, 2, {}),  # the threads' chunks
    (96, 160, 520, 2, {}),  # ... each with its own partial sums
    (30, 44, 25, 1, dict(config=AVX2_F32)),  # 6-row tiles, padded to 8 lanes
]


def _opts(opts: dict) -> dict:
    return {key: value for key, value in opts.items() if key != "lds"}


@pytest.fixture(scope="module")
def jit() -> Jit:
    if not runtime():
        pytest.skip("libgomp is not installed")
    module = new_module("test_gemm_trans_c")
    for i, (m, n, k, threads, opts) in enumerate(CASES):
        emit_gemm(module, f"plain{i}", m, n, k, threads=threads, **_opts(opts))
        emit_gemm(module, f"trans{i}", m, n, k, threads=threads, trans_c=True, **opts)
    return Jit(str(module), name="test_gemm_trans_c", cache=False)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{m}x{n}x{k}t{t}-{i}" for i, (m, n, k, t, _)
                                                          in enumerate(CASES)])
def test_transposed_c_is_bitwise_the_plain_product_transposed(jit, index, rng):
    m, n, k, threads, opts = CASES[index]
    dtype = opts.get("dtype", "float32")
    a = rng.standard_normal((k, m) if opts.get("trans_a") else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if opts.get("trans_b") else (k, n)).astype(dtype)
    ld_c = opts["lds"][2] if "lds" in opts else m
    c0 = rng.standard_normal((n, ld_c)).astype(dtype)
    plain = _run(jit, f"plain{index}", m, n, k, 1, _opts(opts), threads, a, b,
                 np.ascontiguousarray(c0[:, :m].T))
    got = _run(jit, f"trans{index}", m, n, k, 1, dict(opts, trans_c=True), threads, a, b, c0)
    np.testing.assert_array_equal(got[:, :m], plain.T)
    np.testing.assert_array_equal(got[:, m:], c0[:, m:])  # the gap between C's stored rows is not written


@pytest.mark.parametrize("config", [AVX512_F32, AVX2_F32], ids=["avx512", "avx2"])
def test_transposed_c_with_store_epilogue(config, rng):
    """y = relu(op(A)·op(B) · s[j] + bias[i] + R), with C and R stored transposed (a conv's yᵀ = colsᵀ · Wᵀ writing
    y, its bias a column vector of the product): the pass's rounding exactly."""
    chain = StoreEpilogue.of(("mul", "col"), ("add", "row"), ("residual",), ("max", 0.0))
    m, n, k = 37, 52, 300  # two depth blocks: partial sums, then the transposed store
    module = new_module("trans_c_epilogue")
    emit_gemm(module, "g", m, n, k, config=config, trans_c=True, epilogue=chain)
    jit = Jit(str(module), name="trans_c_epilogue", cache=False)
    a = rng.standard_normal((m, k)).astype("f4")
    b = rng.standard_normal((k, n)).astype("f4")
    scale = rng.standard_normal(n).astype("f4")
    bias = rng.standard_normal(m).astype("f4")
    residual = rng.standard_normal((n, m)).astype("f4")
    c = np.full((n, m), np.nan, "f4")
    work = np.zeros(workspace_bytes(m, n, k, config=config, trans_c=True) + 64, np.uint8)
    base = -work.ctypes.data % 64
    ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 7)(jit.address("g"))(
        a.ctypes.data, b.ctypes.data, c.ctypes.data, work[base:].ctypes.data, scale.ctypes.data, bias.ctypes.data,
        residual.ctypes.data)
    product = (a @ b).T  # float32 products, summed by the GEMM in its own order: compare with a tolerance
    want = np.maximum(product * scale[:, None] + bias[None, :] + residual, 0)
    np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-4)
    assert not np.isnan(c).any()


def test_transposed_c_rejects_accumulation_and_an_epilogue_without_depth():
    with pytest.raises(ValueError, match="transposed C"):
        emit_gemm(new_module("x"), "g", 4, 4, 0, trans_c=True, epilogue=StoreEpilogue.of(("max", 0.0)))
    with pytest.raises(ValueError, match="transposed C"):
        emit_gemm(new_module("x"), "g", 4, 4, 4, trans_c=True, accumulate=True)


@pytest.mark.parametrize("n, width", [(8, 8), (8, 16), (8, 32), (4, 16), (16, 16)])
def test_transpose_block_gives_the_columns(n, width):
    """codegen.gemm.transpose.transpose_block on its own: an n × width block of distinct values (square blocks as
    the packing routines and channel blocks transpose them, 8 rows as the transposed store does)."""
    module = new_module("columns")
    vt = ir.VectorType(F32, width)
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR]), name="t")
    b = ir.IRBuilder(fn.append_basic_block())
    rows = [b.load(b.gep(fn.args[0], [ir.Constant(ir.IntType(64), r * width)], source_etype=F32), typ=vt, align=4)
            for r in range(n)]
    columns = transpose.transpose_block(b, rows)
    assert len(columns) == width and all(col.type.count == n for col in columns)
    for j, col in enumerate(columns):
        b.store(col, b.gep(fn.args[1], [ir.Constant(ir.IntType(64), n * j)], source_etype=F32), align=4)
    b.ret_void()
    jit = Jit(str(module), name="columns", cache=False)
    x = np.arange(n * width, dtype="f4").reshape(n, width)
    out = np.zeros((width, n), "f4")
    ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(jit.address("t"))(x.ctypes.data, out.ctypes.data)
    np.testing.assert_array_equal(out, x.T)


def test_transpose_block_rejects_other_shapes():
    b = ir.IRBuilder(ir.Function(new_module("x"), ir.FunctionType(VOID, []), name="t").append_basic_block())
    six = [ir.Constant(ir.VectorType(F32, 12), None)] * 6
    with pytest.raises(ValueError, match="power of two"):
        transpose.transpose_block(b, six)
    with pytest.raises(ValueError, match="power of two"):
        transpose.transpose_block(b, [ir.Constant(ir.VectorType(F32, 12), None)] * 8)


@pytest.mark.parametrize("bits, cpu", [(512, "skylake-avx512"), (256, "znver3")])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_transposed_tile_compiles_for_each_isa(bits, cpu, dtype):
    """Every tile height and edge width of the transposed store, with and without a store epilogue and the indirect
    A, through each ISA's instruction selection (a 1-row tile once hit an LLVM selection failure)."""
    from codegen.gemm.microkernel import microkernel
    from tests.codegen.cross import cross_asm

    cfg = default_config(dtype, bits)
    module = new_module("trans_c_isa")
    names = []
    for rows in range(1, cfg.mr + 1):
        for cols in sorted({1, 3, cfg.vec // 2, cfg.vec, cfg.vec + 1, cfg.nr}):
            for epilogue in (None, StoreEpilogue.of(("add", "col"), ("residual",), ("max", 0.0))):
                for indirect in (False, True):
                    fn = microkernel(module, cfg, rows, cols, indirect_a=indirect, epilogue=epilogue, trans_c=True)
                    fn.linkage = "external"
                    names.append(fn.name)
    bodies = cross_asm(module, cpu)
    assert all("vfmadd" in bodies[name] for name in names)
