"""Constant GEMM operands packed at compile time (codegen.prepack): frozen convolutions read their weights from
panels NumPy packed once; results bitwise those of the live (per-call packing) program on every thread count,
and close to the interpreter's; the packers are gone from the frozen kernels."""

import re

import numpy as np
import pytest

import graphc as gc
from codegen.gemm.blocking import depth_block, partition, row_tiles, tile_origins
from codegen.gemm.config import default_config, host_vector_bits
from codegen.prepack import PackSpec, pack, spec_a, spec_b


@pytest.fixture(autouse=True)
def _prepack_on(monkeypatch):
    monkeypatch.setenv("GRAPHC_PREPACK", "1")


# (x shape, w shape, stride, padding): odd sizes — K past one kc block, M not a multiple of mr, N edge panels —
# in both orientations of the implicit forward (W as A, or Wᵀ as B for few output pixels)
SHAPES = [
    ((1, 40, 7, 7), (60, 40, 3, 3), 1, 1),     # 49 pixels, 60 channels: transposed (Wᵀ as B), K = 360
    ((1, 33, 7, 7), (96, 33, 3, 3), 1, 1),     # transposed, K = 297
    ((2, 40, 9, 11), (70, 40, 3, 3), 1, 1),    # W as A: 70 rows, K = 360, P = 99
    ((1, 13, 12, 10), (37, 13, 3, 3), 2, 1),   # W as A, stride 2 (column phases)
    ((1, 20, 10, 10), (65, 20, 3, 3), 1, 1),   # W as A: 65 rows (merged edge tiles), thread grids keep them
    ((1, 30, 6, 6), (45, 30, 1, 1), 1, 0),     # 1×1
]


def _program(x_shape, w_shape, stride, padding, dtype, threads, freeze, backend="llvm", bias=False, relu=False):
    rng = np.random.default_rng(abs(hash((x_shape, w_shape))) % 2**32)
    g = gc.Graph("prepack")
    x = g.input("x", x_shape, dtype=dtype)
    w = g.param("w", rng.standard_normal(w_shape).astype(dtype), dtype=dtype)
    b = g.param("b", rng.standard_normal(w_shape[0]).astype(dtype), dtype=dtype) if bias else None
    y = gc.conv2d(x, w, b, stride=stride, padding=padding)
    if relu:
        y = gc.relu(y)
    options = {"threads": threads, "cache": False} if backend == "llvm" else {}
    prog = gc.compile(y, backend=backend, freeze=freeze, **options)
    return prog, {"x": rng.standard_normal(x_shape).astype(dtype)}


def _live_reference(build, case, dtype):
    """The live (unfrozen) program's output for ``case`` on one thread, checked against the interpreter, and its
    feeds."""
    live, feeds = build(*case, dtype, 1, freeze=False)
    reference = live(**feeds)
    interp, _ = build(*case, dtype, 1, freeze=False, backend="numpy")
    tol = 1e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(reference, interp(**feeds), rtol=tol, atol=tol * np.abs(reference).max())
    return reference, feeds


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", SHAPES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_frozen_conv_bitwise_equals_live_on_every_thread_count(case, dtype):
    reference, feeds = _live_reference(_program, case, dtype)
    for threads in (1, 2, 3):
        frozen, _ = _program(*case, dtype, threads, freeze=True)
        assert frozen.module.packs, "the frozen conv's weights are not prepacked"
        out = frozen(**feeds)
        assert np.array_equal(out, reference), (threads, np.abs(out - reference).max())
        if threads > 1:  # the live program on the same threads: bitwise the same too
            live_t, _ = _program(*case, dtype, threads, freeze=False)
            assert not live_t.module.packs
            assert np.array_equal(live_t(**feeds), reference)


@pytest.mark.parametrize("threads", [1, 3])
def test_frozen_conv_with_bias_and_epilogue(threads):
    case = ((1, 40, 7, 7), (60, 40, 3, 3), 1, 1)
    live, feeds = _program(*case, "float32", threads, freeze=False, bias=True, relu=True)
    frozen, _ = _program(*case, "float32", threads, freeze=True, bias=True, relu=True)
    assert frozen.module.packs
    assert np.array_equal(frozen(**feeds), live(**feeds))


@pytest.mark.parametrize("case", SHAPES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_frozen_kernels_do_not_pack_the_weights(case):
    """The frozen conv's GEMM packs no weights: no shared A packer (W as A) nor transposed B packer (Wᵀ as B) in its
    module, while the live program packs them per call."""
    live, _ = _program(*case, "float32", 1, freeze=False)
    frozen, _ = _program(*case, "float32", 1, freeze=True)
    weights_packers = re.compile(r"define [^@]*@\"?graphc\.gemm\.[^\"(]*\.(pack_a\d+\.n|pack_b\.t)")
    assert weights_packers.search(live.llvm_ir())
    assert not weights_packers.search(frozen.llvm_ir())
    assert re.search(r"\.fwd\w*p\.", frozen.llvm_ir())


def test_switch_off_keeps_the_per_call_packing(monkeypatch):
    monkeypatch.setenv("GRAPHC_PREPACK", "0")
    frozen, feeds = _program((1, 40, 7, 7), (60, 40, 3, 3), 1, 1, "float32", 1, freeze=True)
    assert not frozen.module.packs
    monkeypatch.setenv("GRAPHC_PREPACK", "1")
    packed, _ = _program((1, 40, 7, 7), (60, 40, 3, 3), 1, 1, "float32", 1, freeze=True)
    assert np.array_equal(frozen(**feeds), packed(**feeds))


def test_cached_object_binds_its_packs(tmp_path, monkeypatch):
    """A program whose object code comes from the cache rebuilds its packed buffers from the cached metadata."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    case = ((1, 40, 7, 7), (60, 40, 3, 3), 1, 1)
    w_value = np.random.default_rng(5).standard_normal(case[1]).astype("float32")
    results = []
    for _ in range(2):
        g = gc.Graph("prepack_cache")
        x = g.input("x", case[0])
        w = g.param("w", w_value)
        prog = gc.compile(gc.conv2d(x, w, padding=1), freeze=True)
        assert prog.packs
        if results:
            assert prog._module is None, "the second program did not come from the cache"
        results.append(prog(x=np.ones(case[0], "float32")))
    assert np.array_equal(results[0], results[1])


# ------------------------------------------------------------------------------------- the NumPy packing


def test_pack_layouts_match_the_driver():
    cfg = default_config("float64", host_vector_bits())
    rng = np.random.default_rng(0)
    m, k, n = 2 * cfg.mr + 1, 2 * cfg.kc + 3, cfg.nr + 5
    a = rng.standard_normal((m, k))
    packed = pack(a, spec_a(cfg, 1, m, k))
    kc = depth_block(k, cfg)
    assert packed.size == m * k and packed.ctypes.data % 64 == 0
    for pc in range(0, k, kc):
        kcur = min(kc, k - pc)
        for row, rows in tile_origins(m, cfg.mr):
            panel = packed[pc * m + row * kcur:][:rows * kcur].reshape(kcur, rows)
            assert np.array_equal(panel, a[row:row + rows, pc:pc + kcur].T)
    bt = rng.standard_normal((n, k))  # stored n x k, op(B) = its transpose
    packed = pack(bt, spec_b(cfg, 1, k, n, trans=True))
    npad = -(-n // cfg.nr) * cfg.nr
    assert packed.size == k * npad and packed.ctypes.data % 64 == 0
    for pc in range(0, k, kc):
        kcur = min(kc, k - pc)
        block = packed[pc * npad:(pc + kcur) * npad].reshape(npad // cfg.nr, kcur, cfg.nr)
        full = np.zeros((kcur, npad))
        full[:, :n] = bt.T[pc:pc + kcur]
        assert np.array_equal(block, full.reshape(kcur, -1, cfg.nr).transpose(1, 0, 2))
    spec = spec_a(cfg, 2, m, k)
    assert PackSpec.from_json(spec.to_json()) == spec
    assert PackSpec.from_json(["c"] + spec.to_json()[1:]) is None
    assert PackSpec.from_json(spec.to_json()[:-1] + [spec.tile + 1]) is None  # not the driver's blocking


@pytest.mark.parametrize("m", [1, 7, 9, 25, 49, 97, 200])
@pytest.mark.parametrize("threads", [2, 3, 4])
def test_global_tile_grids_keep_the_row_tiles(m, threads):
    cfg = default_config("float32", host_vector_bits())
    grid = partition(m, 64, 300, 1, cfg, threads, global_tiles=True)
    if grid is None:
        return
    starts = {row for row, _ in tile_origins(m, cfg.mr)}
    for band in range(grid.rows):
        first = band * grid.band
        rows = grid.band if band < grid.rows - 1 else grid.last_band
        full, tail = row_tiles(rows, cfg.mr)
        local = [first + r for r in range(0, full, cfg.mr)] + [first + full + sum(tail[:i]) for i in range(len(tail))]
        assert set(local) <= starts, (m, threads, grid)


# ------------------------------------------------------------------------------------------------ matmul

MATMULS = [  # (x shape, w shape, transpose w first): K past a kc block, M not a multiple of mr, N edge panels
    ((37, 300), (300, 45), False),
    ((3, 13, 257), (257, 70), False),    # batch folded into M
    ((29, 140), (50, 140), True),        # x @ Wᵀ (an ONNX Gemm with transB)
]


def _matmul(x_shape, w_shape, transposed, dtype, threads, freeze, backend="llvm"):
    rng = np.random.default_rng(x_shape[-1] * 7 + w_shape[-1])
    g = gc.Graph("prepack_mm")
    x = g.input("x", x_shape, dtype=dtype)
    w = g.param("w", rng.standard_normal(w_shape).astype(dtype), dtype=dtype)
    b = g.param("b", rng.standard_normal(w_shape[0] if transposed else w_shape[1]).astype(dtype), dtype=dtype)
    y = gc.relu(x @ (gc.transpose(w) if transposed else w) + b)
    options = {"threads": threads, "cache": False} if backend == "llvm" else {}
    return gc.compile(y, backend=backend, freeze=freeze, **options), {"x": rng.standard_normal(x_shape).astype(dtype)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", MATMULS, ids=str)
def test_frozen_matmul_bitwise_equals_live(case, dtype):
    reference, feeds = _live_reference(_matmul, case, dtype)
    for threads in (1, 2, 3):
        frozen, _ = _matmul(*case, dtype, threads, freeze=True)
        assert [s.operand for _, s in frozen.module.packs] == ["b"]
        assert not re.search(r"define [^@]*@\"?graphc\.gemm\.[^\"(]*\.pack_b\.", frozen.llvm_ir())
        assert np.array_equal(frozen(**feeds), reference), threads
