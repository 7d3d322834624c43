"""The LLVM GEMM (codegen/matmul.py) against numpy.matmul: odd and tile-boundary sizes, transposed operands,
accumulation, batches with broadcast operands, float64, the AVX-512 tile geometry, the vector code in the asm,
and the ``matmul`` lowerer inside compiled programs (forward and gradients)."""

from __future__ import annotations

import ctypes
import mmap
import re

import llvmlite.ir as ir
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from codegen.gemm.blocking import row_tiles, workspace_bytes
from codegen.gemm.config import default_config, host_vector_bits
from codegen.gemm.driver import emit_gemm
from codegen.linalg import Operand, batch_layout, matmul_operands
from codegen.loops import contiguous_strides
from codegen.lowering import KernelContext, LoweringError, find_lowerer, pointer_type
from codegen.target import Jit, has_avx512, new_module
from passes.plan import Kernel
from runtime.asm import asm_functions as _asm_functions
from tests.codegen.cross import cross_asm

SIG = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def run_gemm(address: int, m: int, n: int, k: int, dtype: str, a: int, b: int, c: int) -> None:
    """Call a GEMM function with a workspace of exactly ``workspace_bytes`` flush against an inaccessible page, so a
    write past it would fault instead of corrupting memory."""
    workspace, region = _guarded(np.zeros(max(workspace_bytes(m, n, k, dtype), 64), np.uint8), True)
    assert workspace.ctypes.data % 64 == 0  # the size is a multiple of 64, so the end-flush start is aligned
    SIG(address)(a, b, c, workspace.ctypes.data)
    del workspace
    region.close()
CFG = default_config("float32", host_vector_bits())
MR, NR, KC = CFG.mr, CFG.nr, CFG.kc
AVX512_F32 = default_config("float32", 512)  # the 8 x 32 zmm tile; runs (legalized to ymm) on any x86-64 host

# (m, n, k, options): every case is compiled into one module (one JIT for the whole file)
SHAPES = [(1, 1, 1), (7, 13, 5), (17, 33, 9), (5, 1, 7), (1, 40, 3), (2, 3, 1), (MR, NR, 8), (MR - 1, NR - 1, 7),
          (MR + 1, NR + 1, 9), (2 * MR + 1, 2 * NR - 1, 31), (8 * 3 - 1, 32 * 2 + 1, 33), (8 * 3 + 1, 32 * 3 - 1, 65),
          (25, 65, KC + 1), (13, 600, 530), (3, 31, 1000), (128, 512, 784)]
CASES: list[tuple[str, int, int, int, dict]] = []
for _m, _n, _k in SHAPES:
    CASES.append(("plain", _m, _n, _k, {}))
for _m, _n, _k in [(1, 1, 1), (7, 13, 5), (17, 33, 9), (30, 70, 300), (9, 530, 260), (MR + 1, NR + 3, 17)]:
    for _ta in (False, True):
        for _tb in (False, True):
            for _acc in (False, True):
                if _ta or _tb or _acc:
                    CASES.append(("trans", _m, _n, _k, dict(trans_a=_ta, trans_b=_tb, accumulate=_acc)))
for _m, _n, _k in [(1, 1, 1), (7, 13, 5), (13, 21, 300), (MR + 1, NR // 2 + 1, 9)]:
    CASES.append(("f64", _m, _n, _k, dict(dtype="float64")))
    CASES.append(("f64", _m, _n, _k, dict(dtype="float64", trans_a=True, trans_b=True, accumulate=True)))
for _m, _n, _k in [(7, 13, 5), (9, 33, 17), (17, 70, 300)]:
    CASES.append(("avx512", _m, _n, _k, dict(config=AVX512_F32)))
    CASES.append(("avx512", _m, _n, _k, dict(config=AVX512_F32, trans_a=True, trans_b=True, accumulate=True)))
for _m, _n, _k in [(1, 1000, 1280), (2, 77, 300), (1, 65, 17), (2, 5, 33)]:  # codegen.gemm.skinny (no packing)
    for _ta in (False, True):
        for _tb in (False, True):
            CASES.append(("skinny", _m, _n, _k, dict(trans_a=_ta, trans_b=_tb, accumulate=_ta != _tb)))
    CASES.append(("skinny", _m, _n, _k, dict(dtype="float64", trans_b=True)))
CASES += [("kzero", 3, 5, 0, {}), ("kzero", 3, 5, 0, dict(accumulate=True)), ("empty", 0, 5, 4, {}),
          ("empty", 4, 0, 3, {})]


def _name(i: int) -> str:
    return f"gemm_case{i}"


@pytest.fixture(scope="module")
def jit() -> Jit:
    module = new_module("test_matmul")
    for i, (_, m, n, k, opts) in enumerate(CASES):
        emit_gemm(module, _name(i), m, n, k, **opts)
    for i, (sa, sb) in enumerate([(1, 1), (1, 0), (0, 1)]):
        emit_gemm(module, f"gemm_batch{i}", 7, 19, 11, batch=3, batch_strides=(sa * 77, sb * 209, 133))
    return Jit(str(module), name="test_matmul", cache=False)


def _operands(m: int, n: int, k: int, opts: dict, rng: np.random.Generator):
    dtype = opts.get("dtype", "float32")
    a = rng.standard_normal((k, m) if opts.get("trans_a") else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if opts.get("trans_b") else (k, n)).astype(dtype)
    return a, b


def _check(got: np.ndarray, a_op: np.ndarray, b_op: np.ndarray, base: np.ndarray | None, dtype: str) -> None:
    """Elementwise forward-error bound of a length-k dot product: |err| <= c·k·u·(|A|·|B|) (+|C| when adding)."""
    a64, b64 = a_op.astype(np.float64), b_op.astype(np.float64)
    want = a64 @ b64 + (base if base is not None else 0.0)
    bound = np.abs(a64) @ np.abs(b64) + (np.abs(base) if base is not None else 0.0)
    unit = 1e-6 if dtype == "float32" else 1e-14
    k = a_op.shape[1]
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= unit * (k + 2) * bound), np.abs(got - want).max()


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}-{c[1]}x{c[2]}x{c[3]}-{i}"
                                                          for i, c in enumerate(CASES)])
def test_gemm_matches_numpy(jit, index, rng):
    kind, m, n, k, opts = CASES[index]
    dtype = opts.get("dtype", "float32")
    a, b = _operands(m, n, k, opts, rng)
    pad = 64  # C sits inside a larger buffer: a store outside C would change the sentinels around it
    buf = np.full(m * n + 2 * pad, 7.0, dtype)
    c = buf[pad:pad + m * n].reshape(m, n)
    c[...] = rng.standard_normal((m, n))
    base = c.astype(np.float64) if opts.get("accumulate") else None
    run_gemm(jit.address(_name(index)), m, n, k, dtype, a.ctypes.data, b.ctypes.data, c.ctypes.data)
    a_op = a.T if opts.get("trans_a") else a
    b_op = b.T if opts.get("trans_b") else b
    _check(c, a_op, b_op, base, dtype)
    assert np.all(buf[:pad] == 7.0) and np.all(buf[pad + m * n:] == 7.0)


PAGE = mmap.PAGESIZE
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _guarded(values: np.ndarray, at_end: bool) -> tuple[np.ndarray, mmap.mmap]:
    """A copy of ``values`` flush against an inaccessible page (after its last byte, or before its first), so
    that any read outside the array faults."""
    nbytes = max(values.nbytes, 1)
    pages = -(-nbytes // PAGE) + 1
    region = mmap.mmap(-1, pages * PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    guard = base + (pages - 1) * PAGE if at_end else base
    assert _LIBC.mprotect(guard, PAGE, 0) == 0, ctypes.get_errno()
    offset = (pages - 1) * PAGE - values.nbytes if at_end else PAGE
    array = np.frombuffer(region, values.dtype, values.size, offset).reshape(values.shape)
    array[...] = values
    return array, region


GUARDED = [i for i, c in enumerate(CASES)
           if c[0] in ("plain", "trans", "f64", "avx512", "skinny") and c[1] * c[2] * c[3] < 10**6]


@pytest.mark.parametrize("at_end", [True, False], ids=["guard-after", "guard-before"])
@pytest.mark.parametrize("index", GUARDED, ids=[f"{CASES[i][0]}-{i}" for i in GUARDED])
def test_operand_reads_stay_in_bounds(jit, index, at_end, rng):
    """A and B sit next to a PROT_NONE page: an out-of-bounds read (a vector load past a row end, a packed panel's
    padding) would crash instead of silently reading a neighbour's bytes."""
    _, m, n, k, opts = CASES[index]
    a, b = _operands(m, n, k, opts, rng)
    (ga, ra), (gb, rb) = _guarded(a, at_end), _guarded(b, at_end)
    c = np.zeros((m, n), a.dtype)
    run_gemm(jit.address(_name(index)), m, n, k, a.dtype.name, ga.ctypes.data, gb.ctypes.data, c.ctypes.data)
    _check(c, a.T if opts.get("trans_a") else a, b.T if opts.get("trans_b") else b, np.zeros((m, n)) if
           opts.get("accumulate") else None, a.dtype.name)
    del ga, gb
    ra.close()
    rb.close()


def test_operands_are_not_written(jit, rng):
    index = next(i for i, c in enumerate(CASES) if c[0] == "trans" and c[4].get("accumulate"))
    _, m, n, k, opts = CASES[index]
    a, b = _operands(m, n, k, opts, rng)
    a0, b0 = a.copy(), b.copy()
    c = np.zeros((m, n), np.float32)
    run_gemm(jit.address(_name(index)), m, n, k, "float32", a.ctypes.data, b.ctypes.data, c.ctypes.data)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("which, strides", [(0, (1, 1)), (1, (1, 0)), (2, (0, 1))])
def test_batched_with_broadcast_operand(jit, which, strides, rng):
    a = rng.standard_normal((3 if strides[0] else 1, 7, 11)).astype(np.float32)
    b = rng.standard_normal((3 if strides[1] else 1, 11, 19)).astype(np.float32)
    c = np.zeros((3, 7, 19), np.float32)
    run_gemm(jit.address(f"gemm_batch{which}"), 7, 19, 11, "float32", a.ctypes.data, b.ctypes.data, c.ctypes.data)
    np.testing.assert_allclose(c, np.matmul(a, b), rtol=1e-5, atol=1e-5)


def test_workspace_is_bounded():
    for m, n, k in [(1, 1, 1), (1024, 1024, 1024), (128, 512, 784), (5, 100000, 100000)]:
        for dtype in ("float32", "float64"):
            assert 0 < workspace_bytes(m, n, k, dtype) <= 512 * 1024 and workspace_bytes(m, n, k, dtype) % 64 == 0
    assert workspace_bytes(0, 3, 3) == 0


def test_row_tiles_cover_every_row_once():
    for mr in (6, 8):
        for m in range(1, 40):
            full, tail = row_tiles(m, mr)
            assert full % mr == 0 and full + sum(tail) == m and all(0 < t <= mr for t in tail)
            assert all(2 * t >= mr for t in tail) or m < mr
    assert row_tiles(128, 6) == (120, [4, 4])


def test_host_asm_uses_widest_vectors_and_fma():
    module = new_module("asm")
    emit_gemm(module, "g", 2 * MR, 2 * NR, 64)  # B read in place: the strided-B micro-kernel ("d")
    emit_gemm(module, "t", 2 * MR, 2 * NR, 64, trans_b=True)  # B packed
    bodies = _asm_functions(Jit(str(module), name="asm", cache=False).asm)
    for variant in ("", "d"):
        kernel = bodies[f"graphc.gemm.f32.{CFG.vec}x{CFG.nv}.uk{MR}x{NR}{variant}"]
        reg = "zmm" if has_avx512() else "ymm"
        assert len(re.findall(rf"vfmadd\d+ps\s+.*%{reg}", kernel)) >= MR * CFG.nv
        assert "vbroadcastss" in kernel or "{1to16}" in kernel


def test_avx512_geometry_compiles_to_zmm_fma():
    """Cross-compile the 8x32 tile for an AVX-512 CPU: its micro-kernel runs on zmm registers with vfmadd."""
    module = new_module("avx512")
    emit_gemm(module, "g", 64, 64, 64, config=AVX512_F32)
    emit_gemm(module, "t", 64, 64, 64, config=AVX512_F32, trans_b=True)
    bodies = cross_asm(module, "skylake-avx512")
    for variant in ("", "d"):  # B packed, B read in place
        assert len(re.findall(r"vfmadd\d+ps\s+.*%zmm", bodies[f"graphc.gemm.f32.16x2.uk8x32{variant}"])) >= 16


def test_batch_layout_collapses_and_broadcasts():
    def dense(shape):  # a contiguous operand: batch strides m·k per item, 0 on size-1 axes
        batch = contiguous_strides(shape)[:-2]
        return Operand(None, 0, False, shape[-1], tuple(0 if d == 1 else s for d, s in zip(shape[:-2], batch)))

    dims, (sa, sb, sc) = batch_layout(dense((2, 1, 3, 4)), dense((5, 4, 6)), (2, 5, 3, 6))
    assert dims == (2, 5) and sa == (12, 0) and sb == (0, 24) and sc == (90, 18)
    dims, (sa, sb, sc) = batch_layout(dense((4, 5, 3, 2)), dense((2, 7)), (4, 5, 3, 7))
    assert dims == (20,) and sa == (6,) and sb == (0,) and sc == (21,)


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 5)), ((1, 1), (1, 1)), ((2, 3, 4), (4, 2)),
                                              ((2, 1, 3, 4), (5, 4, 2)), ((3, 7), (2, 7, 9)), ((2, 9, 33), (2, 33, 17)),
                                              ((6, 0), (0, 3))])
def test_lowered_matmul_matches_interpreter(a_shape, b_shape, rng):
    g = gc.Graph("mm")
    a, b = g.input("a", a_shape), g.input("b", b_shape)
    y = gc.matmul(a, b)
    feeds = {"a": rng.standard_normal(a_shape).astype(np.float32), "b": rng.standard_normal(b_shape).astype(np.float32)}
    got = gc.compile(y, backend="llvm")(**feeds)
    np.testing.assert_allclose(got, np.matmul(feeds["a"], feeds["b"]), rtol=1e-5, atol=1e-5)


def test_lowered_dense_gradients_match_interpreter(rng):
    """A dense layer's loss and both matmul gradients (G·Wᵀ and Xᵀ·G) compiled vs the NumPy backend."""
    g = gc.Graph("dense")
    x = g.input("x", (37, 53))
    w = g.param("w", rng.standard_normal((53, 29)).astype(np.float32) * 0.1)
    y = gc.matmul(x, w)
    loss = gc.mean(y * y)
    dx, dw = gc.grad(loss, [x, w])
    outputs = {"loss": loss, "dx": dx, "dw": dw}
    feeds = {"x": rng.standard_normal((37, 53)).astype(np.float32)}
    want = gc.compile(outputs, backend="numpy")(**feeds)
    got = gc.compile(outputs, backend="llvm")(**feeds)
    for key in outputs:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6)


def _run_kernel(kernel: Kernel, feeds: dict, out_shape: tuple[int, ...]) -> np.ndarray:
    """Lower one kernel with the registered matmul lowerer into a fresh module, JIT it and run it."""
    module = new_module("kernel")
    args = list(kernel.inputs) + list(kernel.outputs)
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [pointer_type(x) for x in args] + [ir.IntType(64).as_pointer(), i8p])
    fn = ir.Function(module, fnty, "kernel")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = KernelContext(module, kernel, fn, builder, dict(zip(args, fn.args)), fn.args[-2], scratch_base=fn.args[-1])
    find_lowerer(kernel)(ctx)
    builder.ret_void()
    jit = Jit(str(module), name="kernel", cache=False)
    out = np.zeros(out_shape, np.float32)
    status = np.zeros(1, np.int64)
    scratch = np.zeros(ctx.scratch_bytes + 64, np.uint8)
    scratch = scratch[(-scratch.ctypes.data) % 64:]
    arrays = [np.ascontiguousarray(feeds[x.name], np.float32) for x in kernel.inputs] + [out, status, scratch]
    ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * len(arrays))(jit.address("kernel"))(*[x.ctypes.data for x in arrays])
    assert status[0] == 0
    return out


def _swap_last(x):
    return gc.transpose(x, tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


@pytest.mark.parametrize("a_shape, b_shape, fold_a, fold_b", [
    ((5, 7), (3, 5), True, True), ((5, 7), (5, 3), True, False), ((7, 5), (3, 5), False, True),
    ((2, 5, 7), (2, 5, 3), True, False), ((4, 9), (2, 13, 9), False, True), ((37, 53), (29, 53), False, True)])
def test_lowerer_folds_operand_transposes(a_shape, b_shape, fold_a, fold_b, rng):
    """transpose(swap last two axes) → matmul in one kernel reads the untransposed buffer (trans_a / trans_b)."""
    g = gc.Graph("fold")
    a, b = g.input("a", a_shape), g.input("b", b_shape)
    a_op, b_op = (_swap_last(a) if fold_a else a), (_swap_last(b) if fold_b else b)
    y = gc.matmul(a_op, b_op)
    nodes = tuple(x for x, fold in ((a_op, fold_a), (b_op, fold_b)) if fold) + (y,)
    kernel = Kernel("mm", "matmul", nodes, (a, b), (y,), anchor=y)
    feeds = {"a": rng.standard_normal(a_shape), "b": rng.standard_normal(b_shape)}
    got = _run_kernel(kernel, feeds, y.shape)
    na = np.swapaxes(feeds["a"], -1, -2) if fold_a else feeds["a"]
    nb = np.swapaxes(feeds["b"], -1, -2) if fold_b else feeds["b"]
    np.testing.assert_allclose(got, np.matmul(na, nb), rtol=1e-5, atol=1e-5)


def test_lowerer_rejects_other_fused_nodes():
    g = gc.Graph("epilogue")
    a, b = g.input("a", (3, 4)), g.input("b", (4, 5))
    y = gc.matmul(a, b)
    z = gc.sum(y, axis=0)
    with pytest.raises(LoweringError, match="sum"):
        matmul_operands(Kernel("mm", "matmul", (y, z), (a, b), (z,), anchor=y))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(m=st.integers(1, 40), n=st.integers(1, 80), k=st.integers(1, 300), trans_a=st.booleans(),
       trans_b=st.booleans(), accumulate=st.booleans(), f64=st.booleans())
def test_random_shapes(m, n, k, trans_a, trans_b, accumulate, f64):
    opts = dict(dtype="float64" if f64 else "float32", trans_a=trans_a, trans_b=trans_b, accumulate=accumulate)
    module = new_module("random")
    emit_gemm(module, "g", m, n, k, **opts)
    jit = Jit(str(module), name="random", cache=False)  # owns the code: keep it alive while calling
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    a, b = _operands(m, n, k, opts, rng)
    (ga, ra), (gb, rb) = _guarded(a, True), _guarded(b, True)
    c = rng.standard_normal((m, n)).astype(a.dtype)
    base = c.astype(np.float64) if accumulate else None
    run_gemm(jit.address("g"), m, n, k, a.dtype.name, ga.ctypes.data, gb.ctypes.data, c.ctypes.data)
    _check(c, a.T if trans_a else a, b.T if trans_b else b, base, a.dtype.name)
    del ga, gb
    ra.close()
    rb.close()
