"""The "implicit" convolution (``codegen.conv_pack``: the GEMM's B panels — or, transposed, its A micro-panels —
packed straight from the image): the packers against NumPy's im2col on odd geometries, with the image flush
against an inaccessible page (no read outside it), column phases whose unwritten slots are NaN (never read), the
gather and masked-load forms and both vector widths; then whole convolutions against the interpreter (odd
channels, widths 1..40, strides 1-3, dilation, asymmetric and oversized padding, groups, 1×3 / 3×1 / 5×5 / 7×7
kernels, batches, float64), fused epilogues, bitwise agreement with im2col + GEMM and across thread counts, and
the per-layer choice."""

from __future__ import annotations

import ctypes

import llvmlite.ir as ir
import numpy as np
import pytest

import codegen.conv as conv
import codegen.conv_choice as conv_choice
import codegen.conv_implicit as conv_implicit
import codegen.conv_pack as conv_pack
import graphc as gc
from codegen.gemm.config import default_config, host_vector_bits
from codegen.llvm import I64, PTR, VOID
from codegen.target import Jit, new_module
from runtime.parallel import runtime
from tests.codegen.test_matmul import _guarded

SIG = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_int64)

PACKED = [  # (x shape (C, H, W), kernel (kh, kw), attrs): geometries for the packers themselves
    ((3, 9, 9), (3, 3), {"padding": 1}),                                         # Wo = 9: three rows a vector
    ((5, 7, 40), (3, 3), {"padding": 1}),                                        # long rows
    ((4, 13, 17), (3, 3), {"padding": (1, 2, 0, 3), "stride": 2}),               # stride 2, asymmetric pads
    ((3, 6, 7), (5, 5), {"padding": (2, 1, 3, 0), "dilation": (2, 1)}),
    ((2, 11, 1), (3, 1), {"padding": (1, 0)}),                                   # one column: Wo = 1
    ((3, 20, 23), (7, 7), {"padding": 3, "stride": 2}),                          # a stem
    ((3, 10, 14), (1, 3), {"padding": (0, 2, 1, 1), "stride": 3}),               # stride 3
    ((2, 12, 5), (3, 1), {"padding": (2, 0), "stride": (2, 1)}),
    ((2, 4, 3), (5, 5), {"padding": 4}),                                         # pads beyond the window's reach
    ((6, 14, 14), (3, 3), {"padding": 1}),                                       # ResNet's 14×14 (small)
    ((2, 9, 30), (3, 3), {"stride": (1, 2), "dilation": 2, "padding": (0, 3, 0, 0)}),
]

CONFIGS = [("float32", host_vector_bits()), ("float64", host_vector_bits()), ("float32", 256), ("float64", 256)]


def _geometry(shape, kernel, attrs, dtype="float32"):
    g = gc.Graph("g")
    c = shape[0]
    y = gc.conv2d(g.input("x", (1, *shape), dtype), g.input("w", (4, c, *kernel), dtype), **attrs)
    return conv.geometry((1, *shape), (4, c, *kernel), y.shape, y.attrs, dtype)


def _im2col(x: np.ndarray, g) -> np.ndarray:
    """cols (C·kh·kw, Ho·Wo) of one image x (C, H, W): the index map of codegen.conv.im2col, 0 in the padding."""
    c, h, w = x.shape
    cols = np.zeros((c, g.kh, g.kw, g.ho, g.wo), x.dtype)
    for p in range(g.kh):
        for q in range(g.kw):
            hi = np.arange(g.ho) * g.sh + p * g.dh - g.top
            wi = np.arange(g.wo) * g.sw + q * g.dw - g.left
            rows, cols_ok = (hi >= 0) & (hi < h), (wi >= 0) & (wi < w)
            sub = x[:, hi.clip(0, h - 1)][:, :, wi.clip(0, w - 1)]
            cols[:, p, q] = np.where(rows[:, None] & cols_ok[None, :], sub, 0)
    return cols.reshape(c * g.kh * g.kw, g.ho * g.wo)


def _phases(x: np.ndarray, g) -> np.ndarray:
    """The column phases codegen.conv_pack.split_columns writes (the phases and rows it copies), with NaN in the
    slots it leaves unwritten."""
    c, h, w = x.shape
    wp = -(-w // g.sw)
    out = np.full((c, g.sw, h, wp), np.nan, x.dtype)
    phases, rows = conv_pack.copied(g)
    for f in phases:
        out[:, f, rows, :len(range(f, w, g.sw))] = x[:, rows, f::g.sw]
    return out


def _blocks(g, cfg, rng, count=6):
    """(pc, first, kc, count) blocks: the whole matrix, single rows and columns, random interior blocks."""
    k, p = g.kg, g.p
    out = [(0, 0, k, p), (k - 1, p - 1, 1, 1), (0, 0, 1, min(p, cfg.nr + 3))]
    for _ in range(count):
        pc = int(rng.integers(0, k))
        col = int(rng.integers(0, p))
        out.append((pc, col, int(rng.integers(1, k - pc + 1)), int(rng.integers(1, p - col + 1))))
    return out


def _module(g, cfg, forms):
    module = new_module("conv_pack_test")
    for name, phases, gather, rows in forms:
        fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64, I64, I64, I64]), name=name)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        x, dst, pc, first, kc, count = fn.args
        if rows is None:
            conv_pack.packer(module, g, cfg, phases, gather)(b, x, dst, pc, first, kc, count)
        else:
            conv_pack.transposed_packer(module, g, cfg, phases, gather)(b, x, dst, pc, first, kc, rows)
        b.ret_void()
    return Jit(str(module), name="conv_pack_test", cache=False)


@pytest.mark.parametrize("dtype, bits", CONFIGS, ids=[f"{d}-{b}" for d, b in CONFIGS])
@pytest.mark.parametrize("shape, kernel, attrs", PACKED)
def test_packers_match_im2col(shape, kernel, attrs, dtype, bits, rng):
    g = _geometry(shape, kernel, attrs, dtype)
    cfg = default_config(dtype, bits)
    nseg = conv_pack.segments(g, cfg)
    forms = [("b", False, None, None), ("b_gather", False, True, None)]
    if g.sw == 1 and nseg <= 8:
        forms.append(("b_loads", False, False, None))
    if g.sw > 1:
        forms += [("b_phases", True, None, None), ("b_phases_gather", True, True, None)]
    for rows in sorted({1, 3, cfg.mr}):
        forms += [(f"a{rows}", False, None, rows), (f"a{rows}_phases", g.sw > 1, None, rows)]
    jit = _module(g, cfg, forms)
    x = rng.standard_normal(shape).astype(dtype)
    cols = _im2col(x, g)
    phases = _phases(x, g).ravel()
    for at_end in (True, False):
        gx, rx = _guarded(x.ravel(), at_end)
        gp, rp = _guarded(phases, at_end)
        for name, use_phases, _, rows in forms:
            src = gp if use_phases else gx
            fn = SIG(jit.address(name))
            for pc, first, kc, count in _blocks(g, cfg, rng):
                if rows is None:
                    npanels = -(-count // cfg.nr)
                    want = np.zeros((npanels, kc, cfg.nr), dtype)
                    block = cols[pc:pc + kc, first:first + count]
                    for j in range(npanels):
                        part = block[:, j * cfg.nr:(j + 1) * cfg.nr]
                        want[j, :, :part.shape[1]] = part
                    size, check = want.size, want.size
                else:
                    first = min(first, g.p - rows)
                    if first < 0:
                        continue
                    want = cols[pc:pc + kc, first:first + rows]
                    size, check = want.size + cfg.vec, want.size  # the micro-panel's slack: one vector
                raw = np.full(size + 64 + 16, 7.0, dtype)
                start = (-raw.ctypes.data % 64) // raw.itemsize
                fn(src.ctypes.data, raw[start:].ctypes.data, pc, first, kc, count)
                got = raw[start:start + check]
                assert np.array_equal(got, want.ravel()), (name, pc, first, kc, count)
                assert np.all(raw[start + size:] == 7.0), f"{name}: a store past the panel"
        del gx, gp, src
        rx.close()
        rp.close()


@pytest.mark.parametrize("shape, kernel, attrs, phases, rows", [
    ((3, 9, 11), (3, 3), {"padding": 1, "stride": 3}, [0, 1, 2], range(0, 8)),       # row 8 is never read
    ((3, 9, 11), (1, 1), {"stride": 2}, [0], range(0, 9, 2)),           # 1×1 stride 2: a quarter of the image
    ((2, 12, 9), (1, 3), {"stride": (3, 2), "padding": (1, 0)}, [0, 1], range(2, 12, 3)),
])
def test_split_columns_is_the_phase_layout(shape, kernel, attrs, phases, rows, rng):
    """split_columns writes exactly the slots of the phases and rows the packers read (see the NaN slots in
    test_packers_match_im2col): every column of a used phase inside the row, nothing else."""
    g = _geometry(shape, kernel, attrs)
    assert conv_pack.copied(g) == (phases, rows)
    module = new_module("split")
    typed = ir.FloatType().as_pointer()
    fn = ir.Function(module, ir.FunctionType(VOID, [typed, typed]), name="split")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    conv_pack.split_columns(b, g, *fn.args)
    b.ret_void()
    jit = Jit(str(module), name="split", cache=False)
    x = rng.standard_normal(shape).astype("float32")
    want = _phases(x, g)
    got = np.full(want.shape, np.nan, "float32")
    ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(jit.address("split"))(x.ctypes.data, got.ctypes.data)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~np.isnan(want)], want[~np.isnan(want)])


# whole convolutions: (x shape, w shape, attrs)
CONVS = [
    ((1, 3, 8, 8), (4, 3, 3, 3), {"padding": 1}),
    ((2, 5, 13, 40), (7, 5, 3, 3), {"padding": 1}),                                   # batch 2, long rows
    ((2, 5, 13, 17), (7, 5, 3, 3), {"padding": (1, 2, 0, 3), "stride": 2}),
    ((1, 6, 9, 9), (8, 3, 5, 5), {"padding": 2, "groups": 2, "dilation": (1, 2)}),    # groups
    ((1, 17, 1, 1), (19, 17, 3, 3), {"padding": 1}),                                  # a 1×1 image
    ((1, 3, 2, 40), (5, 3, 1, 3), {"padding": (0, 1)}),                               # 1×3
    ((1, 3, 40, 2), (5, 3, 3, 1), {"padding": (1, 0), "stride": (3, 1)}),             # 3×1, stride 3
    ((1, 3, 31, 29), (16, 3, 7, 7), {"padding": 3, "stride": 2}),                     # a stem
    ((1, 2, 4, 3), (3, 2, 5, 5), {"padding": 4}),                                     # pads beyond the reach
    ((3, 4, 11, 12), (6, 4, 3, 3), {"stride": 3, "padding": (2, 0, 0, 2)}),
    ((1, 16, 7, 7), (64, 16, 3, 3), {"padding": 1}),                                  # transposed (7×7)
    ((2, 16, 14, 14), (64, 16, 3, 3), {"padding": 1, "stride": 2}),                   # transposed, phases
    ((1, 7, 13, 9), (64, 7, 3, 3), {"padding": (1, 2, 0, 3), "stride": (2, 3), "dilation": (2, 1)}),
    ((1, 8, 5, 3), (64, 8, 5, 5), {"padding": 4}),                                    # transposed, tiny
    ((1, 20, 14, 14), (48, 20, 3, 3), {"padding": 1}),
    ((1, 3, 1, 37), (33, 3, 1, 5), {"padding": (0, 2), "dilation": (1, 3)}),           # one row
    ((1, 3, 37, 1), (33, 3, 5, 1), {"padding": (2, 0)}),                              # one column
]


def _graph(x_shape, w_shape, algorithm, dtype="float32", seed=0, epilogue=False, **attrs):
    rng = np.random.default_rng(seed)
    g = gc.Graph("conv")
    x = g.input("x", x_shape, dtype)
    w = g.input("w", w_shape, dtype)
    b = g.input("b", (w_shape[0],), dtype)
    y = gc.conv2d(x, w, b, algorithm=algorithm, **attrs)
    feeds = {"x": rng.standard_normal(x_shape), "w": rng.standard_normal(w_shape), "b": rng.standard_normal(w_shape[0])}
    if epilogue:  # relu(conv + b) + residual, · scale[c] (a ResNet block's tail)
        res = g.input("res", y.shape, dtype)
        scale = g.input("scale", (1, w_shape[0], 1, 1), dtype)
        y = gc.relu(y + res) * scale
        feeds["res"] = rng.standard_normal(res.shape)
        feeds["scale"] = rng.standard_normal(scale.shape)
    return y, {k: v.astype(dtype) for k, v in feeds.items()}


@pytest.mark.parametrize("x_shape, w_shape, attrs", CONVS)
def test_implicit_matches_interpreter(x_shape, w_shape, attrs):
    y, feeds = _graph(x_shape, w_shape, "implicit", **attrs)
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [CONVS[2], CONVS[3], CONVS[7], CONVS[11], CONVS[13]])
def test_implicit_float64(x_shape, w_shape, attrs):
    y, feeds = _graph(x_shape, w_shape, "implicit", dtype="float64", **attrs)
    gc.testing.assert_backends_agree([y], feeds, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [CONVS[1], CONVS[2], CONVS[10], CONVS[11]])
def test_implicit_fused_epilogue(x_shape, w_shape, attrs):
    y, feeds = _graph(x_shape, w_shape, "auto", epilogue=True, seed=1, **attrs)
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


def test_implicit_gradients_run_im2col():
    """The gradients of a conv forced to "implicit" run on im2col and agree with the interpreter."""
    rng = np.random.default_rng(2)
    g = gc.Graph("train")
    x = g.input("x", (2, 5, 9, 11))
    w = g.param("w", rng.standard_normal((6, 5, 3, 3)).astype("float32"))
    y = gc.relu(gc.conv2d(x, w, padding=1, stride=2, algorithm="implicit"))
    loss = gc.mean(y * y)
    grads = gc.grad(loss, [x, w])
    feeds = {"x": rng.standard_normal((2, 5, 9, 11)).astype("float32")}
    gc.testing.assert_backends_agree([loss, *grads], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [CONVS[1], CONVS[2], CONVS[7], CONVS[9], CONVS[10], CONVS[14]])
def test_implicit_is_bitwise_im2col(x_shape, w_shape, attrs):
    """The packers feed the GEMM the same values in the same order as im2col's columns: the same bits, when both
    run the same orientation (the transposed product where both choose it, see transposed_forward)."""
    runs = {}
    for algorithm in ("implicit", "im2col"):
        y, feeds = _graph(x_shape, w_shape, algorithm, epilogue=True, seed=3, **attrs)
        node = _conv_of(y)
        geom = conv.geometry(x_shape, w_shape, node.shape, node.attrs, "float32")
        runs[algorithm] = gc.compile([y], backend="llvm")(**feeds)[0]
    same = conv_implicit.transposed_implicit(geom, "float32") == (geom.block_rows() == geom.ho and
                                                        conv.transposed_forward(geom, "float32"))
    if same:
        assert np.array_equal(runs["implicit"], runs["im2col"])
    else:
        scale = np.abs(runs["im2col"]).max()
        np.testing.assert_allclose(runs["implicit"], runs["im2col"], rtol=1e-4, atol=1e-4 * scale)


def _conv_of(y):
    """The conv2d node under an epilogue chain."""
    stack = [y]
    while stack:
        n = stack.pop()
        if n.op == "conv2d":
            return n
        stack.extend(n.inputs)
    raise AssertionError("no conv2d")


@pytest.mark.parametrize("x_shape, w_shape, attrs", [CONVS[1], CONVS[2], CONVS[7], CONVS[10], CONVS[11],
                                                     ((1, 16, 20, 20), (64, 16, 3, 3), {"padding": 1})])
def test_implicit_is_bitwise_equal_across_thread_counts(x_shape, w_shape, attrs):
    """Images on the threads (batch ≥ threads) or the GEMM split (batch 1: bands and slices of the product, each
    packing its own panels; the epilogue by channel chunks): the same bits on 1, 2 and 3 threads."""
    if not runtime():
        pytest.skip("libgomp is not installed: programs run on one thread")
    y, feeds = _graph(x_shape, w_shape, "implicit", epilogue=True, seed=4, **attrs)
    runs = [gc.compile([y], backend="llvm", threads=t)(**feeds)[0] for t in (1, 2, 3)]
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)


def test_resnet_layers_choose_indirect_and_implicit_keeps_its_forms():
    """auto: ResNet-18's dense convs but the stem run indirect (``codegen.conv_indirect``, test_conv_indirect.py);
    forced "implicit" they run 56×56 / 28×28 / 14×14 as W · cols (B packed from the image), 7×7 transposed (A
    packed from the image), stride 2 through column phases; a stride-1 conv of few taps (SqueezeNet's 16 → 64
    3×3) packs; 1×1 stays pointwise, depthwise direct, and a forced im2col keeps its columns."""
    def geom(x, w, **attrs):
        g = gc.Graph("g")
        y = gc.conv2d(g.input("x", x), g.input("w", w), **attrs)
        return conv.geometry(x, w, y.shape, y.attrs, "float32")

    cfg = default_config("float32", host_vector_bits())
    layers = {
        "stem": (geom((1, 3, 224, 224), (64, 3, 7, 7), padding=3, stride=2), False),
        "56": (geom((1, 64, 56, 56), (64, 64, 3, 3), padding=1), False),
        "28": (geom((1, 128, 28, 28), (128, 128, 3, 3), padding=1), False),
        "56s2": (geom((1, 64, 56, 56), (128, 64, 3, 3), padding=1, stride=2), False),
        "14": (geom((1, 256, 14, 14), (256, 256, 3, 3), padding=1), False),
        "28s2": (geom((1, 128, 28, 28), (256, 128, 3, 3), padding=1, stride=2), False),
        "7": (geom((1, 512, 7, 7), (512, 512, 3, 3), padding=1), True),
        "14s2": (geom((1, 256, 14, 14), (512, 256, 3, 3), padding=1, stride=2), True),
    }
    for name, (g, flipped) in layers.items():  # the stem's yᵀ (112² × 64) is over the indirect path's budget
        assert conv_choice.rule_of_thumb(g, "auto") == ("implicit" if name == "stem" else "indirect"), name
        assert conv_choice.rule_of_thumb(g, "implicit") == "implicit", name
        assert conv_implicit.transposed_implicit(g, "float32") == flipped, name
        assert conv_pack.split(g, cfg, cfg.mr if flipped else None) == (g.sw > 1), name
    assert conv_choice.rule_of_thumb(layers["56"][0], "im2col") == "im2col"
    assert conv_choice.rule_of_thumb(geom((1, 16, 55, 55), (64, 16, 3, 3), padding=1), "auto") == "implicit"
    pointwise = geom((1, 64, 56, 56), (256, 64, 1, 1))
    depthwise = geom((1, 32, 56, 56), (32, 1, 3, 3), padding=1, groups=32)
    assert conv_choice.rule_of_thumb(pointwise, "auto") == "pointwise"
    assert conv_choice.rule_of_thumb(depthwise, "auto") == "direct"
    assert conv_choice.rule_of_thumb(pointwise, "implicit") == "implicit"
