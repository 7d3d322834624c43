"""Every convolution algorithm of the llvm backend, forced in turn (``algorithm="direct"`` / ``"im2col"`` /
``"implicit"`` and the per-layer ``"auto"`` choice), against the NumPy interpreter for the forward op and both
gradient ops: depthwise (with and without a channel multiplier), grouped, dense, 1×1, stride, asymmetric padding,
dilation, windows wider than the input, float64, fused epilogues, and bitwise agreement across thread counts."""

import numpy as np
import pytest

import codegen.conv as conv
import codegen.conv_depthwise as conv_depthwise
import codegen.conv_direct as conv_direct
import graphc as gc
from graphc.errors import ShapeError
from ops.registry import apply

ALGORITHMS = ("direct", "im2col", "implicit", "indirect", "auto")

GEOMETRIES = [  # (x shape, w shape, attrs)
    ((2, 8, 9, 11), (8, 1, 3, 3), {"padding": 1, "groups": 8}),                      # depthwise 3×3
    ((1, 6, 12, 10), (6, 1, 3, 3), {"padding": 1, "stride": 2, "groups": 6}),        # depthwise, stride 2
    ((2, 4, 7, 9), (8, 1, 5, 5), {"padding": 2, "groups": 4}),                       # multiplier 2, 5×5
    ((1, 3, 6, 7), (3, 1, 3, 3), {"padding": (2, 0, 1, 3), "dilation": (2, 1), "groups": 3}),
    ((2, 6, 9, 7), (6, 2, 3, 3), {"stride": (2, 3), "padding": (1, 0, 2, 1), "groups": 3}),
    ((1, 8, 8, 8), (16, 2, 3, 3), {"padding": 1, "groups": 4}),                      # ResNeXt-like groups
    ((2, 3, 7, 5), (5, 3, 3, 2), {"stride": 2, "padding": (2, 1, 0, 3), "dilation": (1, 2)}),  # dense
    ((1, 2, 4, 3), (3, 2, 5, 5), {"padding": 3}),                                    # window wider than x
    ((2, 4, 5, 6), (6, 4, 1, 1), {}),                                                # pointwise
    ((1, 4, 5, 6), (4, 1, 1, 1), {"groups": 4}),                                     # pointwise depthwise
    ((1, 2, 3, 40), (2, 1, 3, 3), {"padding": 1, "groups": 2}),                      # long rows, short columns
    # channel blocks (conv_depthwise): a full block of vector lanes and a remainder on the plane kernels
    ((2, 20, 7, 7), (20, 1, 3, 3), {"padding": 1, "groups": 20}),
    ((1, 32, 9, 13), (32, 1, 5, 5), {"padding": 2, "stride": 2, "groups": 32}),
    ((1, 18, 10, 10), (18, 1, 3, 3), {"padding": (2, 1, 0, 3), "dilation": 2, "groups": 18}),
    ((1, 40, 3, 2), (40, 1, 3, 3), {"padding": 1, "groups": 40}),                     # tiny planes, all border
    ((1, 16, 21, 5), (16, 1, 2, 3), {"stride": (2, 1), "groups": 16}),                # unequal strides
    # few positions, many output channels: the transposed product yᵀ = colsᵀ·Wᵀ (conv.transposed_forward)
    ((2, 16, 7, 7), (64, 16, 3, 3), {"padding": 1}),
    ((1, 32, 7, 7), (128, 32, 1, 1), {}),
]


def _case(x_shape, w_shape, algorithm, dtype="float32", bias=True, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    g = gc.Graph("conv")
    x = g.input("x", x_shape, dtype)
    w = g.input("w", w_shape, dtype)
    b = g.input("b", (w_shape[0],), dtype) if bias else None
    y = gc.conv2d(x, w, b, algorithm=algorithm, **attrs)
    gy = g.input("gy", y.shape, dtype)
    geom = {k: y.attrs[k] for k in ("stride", "padding", "dilation", "groups")}
    dx = apply("conv2d_backward_input", gy, w, input_size=x_shape[2:], algorithm=algorithm, **geom)
    dw = apply("conv2d_backward_weight", x, gy, kernel_size=w_shape[2:], algorithm=algorithm, **geom)
    feeds = {"x": rng.standard_normal(x_shape), "w": rng.standard_normal(w_shape), "gy": rng.standard_normal(y.shape)}
    if bias:
        feeds["b"] = rng.standard_normal(w_shape[0])
    return {"y": y, "dx": dx, "dw": dw}, {k: v.astype(dtype) for k, v in feeds.items()}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("x_shape, w_shape, attrs", GEOMETRIES)
def test_forced_algorithm_matches_interpreter(x_shape, w_shape, attrs, algorithm):
    outputs, feeds = _case(x_shape, w_shape, algorithm, **attrs)
    gc.testing.assert_backends_agree(outputs, feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


POINTWISE = [(x, w, a) for x, w, a in GEOMETRIES if w[2:] == (1, 1) and a.get("stride", 1) == 1
             and not a.get("padding")]


@pytest.mark.parametrize("x_shape, w_shape, attrs", POINTWISE + [((1, 6, 3, 17), (12, 3, 1, 1), {"groups": 2})])
def test_forced_pointwise_matches_interpreter(x_shape, w_shape, attrs):
    outputs, feeds = _case(x_shape, w_shape, "pointwise", **attrs)
    assert outputs["y"].attrs["algorithm"] == "pointwise"
    gc.testing.assert_backends_agree(outputs, feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("w_shape, attrs", [((4, 2, 3, 3), {}), ((4, 2, 1, 1), {"stride": 2}),
                                            ((4, 2, 1, 1), {"padding": 1})])
def test_forced_pointwise_refuses_other_geometries(w_shape, attrs):
    g = gc.Graph("not_pointwise")
    with pytest.raises(gc.GraphcError, match="algorithm='pointwise' computes 1x1 convolutions"):
        gc.conv2d(g.input("x", (1, 2, 6, 6)), g.input("w", w_shape), algorithm="pointwise", **attrs)


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((2, 5, 8, 7), (10, 1, 3, 3), {"padding": 1, "stride": (1, 2), "groups": 5}),
    ((1, 12, 6, 6), (12, 1, 3, 3), {"padding": 1, "groups": 12}),  # a block of 8 float64 lanes and 4 more
])
def test_float64_depthwise(algorithm, x_shape, w_shape, attrs):
    outputs, feeds = _case(x_shape, w_shape, algorithm, dtype="float64", **attrs)
    gc.testing.assert_backends_agree(outputs, feeds, rtol=1e-12, atol=1e-12)


def test_algorithms_agree_with_each_other():
    """The forced algorithms compute the same function: direct vs im2col outputs within float32 rounding."""
    results = {}
    for algorithm in ("direct", "im2col"):
        outputs, feeds = _case((2, 6, 10, 9), (12, 2, 3, 3), algorithm, padding=1, groups=3, seed=3)
        prog = gc.compile(list(outputs.values()), backend="llvm")
        results[algorithm] = prog(**feeds)
    for a, b in zip(results["direct"], results["im2col"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_fused_epilogue(algorithm):
    """relu(conv(x) · scale[c] + shift[c]) fused into the conv kernel, on each algorithm."""
    rng = np.random.default_rng(1)
    g = gc.Graph("epi")
    x = g.input("x", (2, 6, 7, 7))
    w = g.input("w", (6, 1, 3, 3))
    scale = g.input("scale", (1, 6, 1, 1))
    shift = g.input("shift", (1, 6, 1, 1))
    y = gc.relu(gc.conv2d(x, w, padding=1, groups=6, algorithm=algorithm) * scale + shift)
    feeds = {"x": rng.standard_normal((2, 6, 7, 7)), "w": rng.standard_normal((6, 1, 3, 3)),
             "scale": rng.standard_normal((1, 6, 1, 1)), "shift": rng.standard_normal((1, 6, 1, 1))}
    feeds = {k: v.astype("float32") for k, v in feeds.items()}
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


def test_depthwise_training_gradients():
    """A depthwise conv inside a graph differentiated symbolically: every gradient on the direct kernels."""
    rng = np.random.default_rng(2)
    g = gc.Graph("dw")
    x = g.input("x", (3, 4, 8, 8))
    w = g.param("w", rng.standard_normal((4, 1, 3, 3)).astype("float32"))
    b = g.param("b", rng.standard_normal(4).astype("float32"))
    y = gc.relu(gc.conv2d(x, w, b, padding=1, stride=2, groups=4))
    loss = gc.mean(y * y)
    grads = gc.grad(loss, [x, w, b])
    feeds = {"x": rng.standard_normal((3, 4, 8, 8)).astype("float32")}
    gc.testing.assert_backends_agree([loss, *grads], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [GEOMETRIES[0], GEOMETRIES[2], GEOMETRIES[5], GEOMETRIES[11],
                                                     GEOMETRIES[12]])
def test_direct_is_bitwise_equal_across_thread_counts(x_shape, w_shape, attrs):
    outputs, feeds = _case(x_shape, w_shape, "direct", **attrs)
    runs = [gc.compile(list(outputs.values()), backend="llvm", threads=t)(**feeds) for t in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


def test_transposed_forward_is_chosen_for_few_positions():
    """ResNet's 7×7 stage at batch 1 (49 positions, 512 channels) runs as the transposed product; 56×56 does not."""
    def geom(x, w, **attrs):
        g = gc.Graph("g")
        y = gc.conv2d(g.input("x", x), g.input("w", w), **attrs)
        return conv.geometry(x, w, y.shape, y.attrs, "float32")

    assert conv.transposed_forward(geom((1, 512, 7, 7), (512, 512, 3, 3), padding=1), "float32")
    assert conv.transposed_forward(geom((2, 16, 7, 7), (64, 16, 3, 3), padding=1), "float32")
    assert not conv.transposed_forward(geom((1, 64, 56, 56), (64, 64, 3, 3), padding=1), "float32")
    assert not conv.transposed_forward(geom((1, 8, 7, 7), (8, 4, 3, 3), padding=1, groups=2), "float32")


def test_auto_choice_per_layer():
    """auto: depthwise and thin groups direct, 1×1 pointwise, dense im2col; forced choices are kept."""
    def geom(x, w, **attrs):
        g = gc.Graph("g")
        y = gc.conv2d(g.input("x", x), g.input("w", w), **attrs)
        return conv.geometry(x, w, y.shape, y.attrs, "float32")

    depthwise = geom((1, 32, 56, 56), (32, 1, 3, 3), padding=1, groups=32)
    dense = geom((1, 64, 56, 56), (64, 64, 3, 3), padding=1)
    pointwise = geom((1, 64, 56, 56), (256, 64, 1, 1))
    assert conv_direct.choose_algorithm(depthwise, "auto") == "direct"
    assert conv_direct.choose_algorithm(dense, "auto") == "im2col"
    assert conv_direct.choose_algorithm(pointwise, "auto") == "pointwise"
    assert conv_direct.choose_algorithm(dense, "direct") == "direct"
    assert conv_direct.choose_algorithm(pointwise, "im2col") == "im2col"


def test_unknown_algorithm_is_a_clear_error():
    g = gc.Graph("bad")
    x, w = g.input("x", (1, 2, 5, 5)), g.input("w", (2, 2, 3, 3))
    with pytest.raises(ShapeError, match="algorithm must be one of 'auto', 'direct', 'im2col', 'implicit', "
                                         "'indirect', 'pointwise', got 'winograd'"):
        gc.conv2d(x, w, algorithm="winograd")


def test_auto_leaves_the_attributes_unchanged():
    """"auto" is not stored, so graphs built without the argument print and hash as before."""
    g = gc.Graph("attrs")
    y = gc.conv2d(g.input("x", (1, 2, 5, 5)), g.input("w", (2, 2, 3, 3)))
    assert "algorithm" not in y.attrs
    forced = gc.conv2d(g.input("x2", (1, 2, 5, 5)), g.input("w2", (2, 2, 3, 3)), algorithm="direct")
    assert forced.attrs["algorithm"] == "direct"
    dx, dw = gc.grad(gc.sum(forced), [forced.inputs[0], forced.inputs[1]])
    assert {n.attrs.get("algorithm") for n in dx.graph.nodes if n.op.startswith("conv2d_backward")} == {"direct"}


# register-tiled channel blocks (conv_depthwise.tile_shape): whole rows, parts of long rows, row and column
# remainders, flat and row-wise packing, planes narrower than the window, pads larger than the plane
TILED = [  # (x shape, w shape, attrs)
    ((1, 16, 7, 7), (16, 1, 7, 7), {"padding": 3, "groups": 16}),                    # ConvNeXt's last stage
    ((2, 20, 9, 11), (20, 1, 7, 7), {"padding": 3, "groups": 20}),                   # 16 + 4 on the plane kernels
    ((1, 33, 14, 14), (33, 1, 7, 7), {"padding": 3, "groups": 33}),                  # 2 blocks + 1
    ((1, 16, 5, 40), (16, 1, 7, 7), {"padding": 3, "groups": 16}),                   # long rows: 14 + 14 + 12
    ((1, 16, 19, 17), (16, 1, 5, 5), {"padding": 2, "groups": 16}),                  # 17 = 9 + 8
    ((1, 24, 3, 2), (24, 1, 7, 7), {"padding": 3, "groups": 24}),                    # plane narrower than w
    ((1, 16, 2, 3), (16, 1, 7, 7), {"padding": (4, 5, 3, 4), "groups": 16}),         # pads larger than x
    ((1, 16, 12, 10), (16, 1, 7, 7), {"padding": 3, "stride": 2, "groups": 16}),
    ((1, 16, 8, 10), (16, 1, 3, 3), {"stride": 2, "groups": 16}),                    # x wider than the windows
    ((1, 16, 13, 9), (16, 1, 3, 3), {"padding": (3, 1, 2, 2), "dilation": (3, 2), "groups": 16}),
    ((1, 16, 11, 1), (16, 1, 3, 1), {"padding": (1, 0), "groups": 16}),              # one column: 11 rows a tile
    ((1, 16, 30, 30), (16, 1, 11, 11), {"padding": 5, "groups": 16}),                # taps cap the tile: 1×8
    ((1, 16, 9, 9), (16, 1, 15, 15), {"padding": 7, "groups": 16}),                  # MIN_TILE: 1×3
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape, w_shape, attrs", TILED)
def test_tiled_depthwise_matches_interpreter(x_shape, w_shape, attrs, bias):
    outputs, feeds = _case(x_shape, w_shape, "auto", bias=bias, seed=4, **attrs)
    gc.testing.assert_backends_agree({"y": outputs["y"]}, feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [TILED[1], TILED[3], TILED[7]])
def test_tiled_depthwise_gradients(x_shape, w_shape, attrs):
    """7×7 depthwise gradients now run on the direct kernels too ("auto"); against the interpreter."""
    outputs, feeds = _case(x_shape, w_shape, "auto", seed=5, **attrs)
    gc.testing.assert_backends_agree(outputs, feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 12, 9, 9), (12, 1, 7, 7), {"padding": 3, "groups": 12}),   # 8 float64 lanes + 4, 7×7
    ((1, 8, 5, 21), (8, 1, 5, 5), {"padding": 2, "groups": 8}),     # long rows: 7 + 7 + 7
])
def test_float64_tiled_depthwise(x_shape, w_shape, attrs):
    outputs, feeds = _case(x_shape, w_shape, "auto", dtype="float64", **attrs)
    gc.testing.assert_backends_agree({"y": outputs["y"]}, feeds, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, k", [((2, 20, 9, 9), 7), ((1, 16, 6, 35), 5), ((1, 32, 7, 7), 3)])
def test_tiled_fused_epilogue(shape, k):
    """relu(conv(x) + b) · scale[c] + shift[c] fused into the tiled kernel (applied after the tiles' stores)."""
    rng = np.random.default_rng(6)
    c = shape[1]
    g = gc.Graph("epi")
    x = g.input("x", shape)
    w = g.input("w", (c, 1, k, k))
    b = g.input("b", (c,))
    scale = g.input("scale", (1, c, 1, 1))
    shift = g.input("shift", (1, c, 1, 1))
    y = gc.relu(gc.conv2d(x, w, b, padding=k // 2, groups=c)) * scale + shift
    feeds = {"x": rng.standard_normal(shape), "w": rng.standard_normal((c, 1, k, k)), "b": rng.standard_normal(c),
             "scale": rng.standard_normal((1, c, 1, 1)), "shift": rng.standard_normal((1, c, 1, 1))}
    feeds = {name: v.astype("float32") for name, v in feeds.items()}
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [TILED[1], TILED[2], TILED[3], TILED[7]])
def test_tiled_is_bitwise_equal_across_thread_counts(x_shape, w_shape, attrs):
    g = gc.Graph("threads")
    x = g.input("x", x_shape)
    w = g.input("w", w_shape)
    b = g.input("b", (w_shape[0],))
    y = gc.conv2d(x, w, b, **attrs)
    rng = np.random.default_rng(7)
    feeds = {"x": rng.standard_normal(x_shape).astype("float32"), "w": rng.standard_normal(w_shape).astype("float32"),
             "b": rng.standard_normal(w_shape[0]).astype("float32")}
    runs = [gc.compile([y], backend="llvm", threads=t)(**feeds)[0] for t in (1, 2, 3)]
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)


def test_tile_shapes():
    """Tiles of at most V pixels and TILE_TAPS taps (or MIN_TILE pixels); short rows whole, long rows in equal
    parts."""
    def geom(h, w, k, dtype="float32"):
        g = gc.Graph("g")
        y = gc.conv2d(g.input("x", (1, 16, h, w), dtype), g.input("w", (16, 1, k, k), dtype), padding=k // 2,
                      groups=16)
        return conv.geometry((1, 16, h, w), (16, 1, k, k), y.shape, y.attrs, dtype)

    v = conv_depthwise.lanes(geom(7, 7, 7))
    for h, w, k in [(7, 7, 7), (14, 14, 7), (28, 28, 7), (56, 56, 7), (9, 1, 3), (30, 30, 11), (5, 40, 5),
                    (9, 9, 31)]:
        for dtype in ("float32", "float64"):
            g = geom(h, w, k, dtype)
            rows, cols = conv_depthwise.tile_shape(g)
            lanes = conv_depthwise.lanes(g)
            assert rows * cols <= lanes
            assert rows * cols * k * k <= max(conv_depthwise.TILE_TAPS, conv_depthwise.MIN_TILE * k * k)
            assert cols == w or rows == 1
    if v == 16:
        assert conv_depthwise.tile_shape(geom(7, 7, 7)) == (2, 7)
        assert conv_depthwise.tile_shape(geom(56, 56, 7)) == (1, 14)


def test_depthwise_7x7_is_direct():
    """Depthwise convs run direct for any kernel size (Cg = 1: im2col would be a GEMM with one weight row)."""
    g = gc.Graph("g")
    y = gc.conv2d(g.input("x", (1, 96, 56, 56)), g.input("w", (96, 1, 7, 7)), padding=3, groups=96)
    geom = conv.geometry((1, 96, 56, 56), (96, 1, 7, 7), y.shape, y.attrs, "float32")
    assert conv_direct.choose_algorithm(geom, "auto") == "direct"
    assert conv_depthwise.blocked_applies(geom)


def test_tiled_frames_are_refilled():
    """Depthwise convs and a max pool in one program share scratch: each kernel's zero (or -inf) frame must be
    written by that kernel, not left from the previous one's packed pixels."""
    rng = np.random.default_rng(8)
    g = gc.Graph("chain")
    x = g.input("x", (1, 16, 9, 11))
    w1, w2 = g.input("w1", (16, 1, 3, 3)), g.input("w2", (16, 1, 7, 7))
    h = gc.conv2d(x, w1, padding=1, groups=16)
    h = gc.conv2d(gc.max_pool2d(h, 3, stride=1, padding=1), w2, padding=3, groups=16)
    y = gc.conv2d(h, w1, padding=2, dilation=2, groups=16)
    feeds = {"x": rng.standard_normal((1, 16, 9, 11)), "w1": rng.standard_normal((16, 1, 3, 3)),
             "w2": rng.standard_normal((16, 1, 7, 7))}
    feeds = {name: v.astype("float32") for name, v in feeds.items()}
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)
