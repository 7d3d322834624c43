"""LLVM lowerings of conv, pooling, batch norm, dropout, indexing and losses vs the NumPy interpreter, on cases
the registry's contract samples do not reach: the CNN benchmark's batch-64 layer shapes, odd sizes, stride 2
with asymmetric padding, float64, the row-blocked im2col path, degenerate windows, a small CNN trained end to
end (forward and every gradient), and dropout masks that must be bit-identical between the backends."""

import numpy as np
import pytest

import codegen.conv as conv
import codegen.conv_geometry as conv_geometry
import graphc as gc
from ops.random import keep_mask
from ops.registry import apply


def _agree(outputs, feeds, rtol=2e-5, atol=2e-6):
    """Both backends on ``feeds``: float results within float32 tolerance (atol scaled by magnitude), others equal."""
    gc.testing.assert_backends_agree(outputs, feeds, rtol=rtol, atol=atol, scale_atol=True)


def _conv_case(x_shape, w_shape, dtype="float32", bias=True, seed=0, **attrs):
    """conv2d forward and both gradient ops of one geometry, with random feeds."""
    rng = np.random.default_rng(seed)
    g = gc.Graph("conv")
    x = g.input("x", x_shape, dtype)
    w = g.input("w", w_shape, dtype)
    b = g.input("b", (w_shape[0],), dtype) if bias else None
    y = gc.conv2d(x, w, b, **attrs)
    gy = g.input("gy", y.shape, dtype)
    geom = {k: y.attrs[k] for k in ("stride", "padding", "dilation", "groups", "algorithm") if k in y.attrs}
    dx = apply("conv2d_backward_input", gy, w, input_size=x_shape[2:], **geom)
    dw = apply("conv2d_backward_weight", x, gy, kernel_size=w_shape[2:], **geom)
    feeds = {"x": rng.standard_normal(x_shape), "w": rng.standard_normal(w_shape), "gy": rng.standard_normal(y.shape)}
    if bias:
        feeds["b"] = rng.standard_normal(w_shape[0])
    feeds = {k: v.astype(dtype) for k, v in feeds.items()}
    return {"y": y, "dx": dx, "dw": dw}, feeds


@pytest.mark.parametrize("c, o, size", [(1, 32, 28), (32, 64, 14)], ids=["conv1", "conv2"])
def test_cnn_benchmark_layers(c, o, size):
    outputs, feeds = _conv_case((64, c, size, size), (o, c, 3, 3), padding=1)
    _agree(outputs, feeds)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((3, 3, 7, 5), (5, 3, 3, 2), {"stride": 2, "padding": (2, 1, 0, 3), "dilation": (1, 2)}),
    ((2, 6, 9, 7), (6, 2, 3, 3), {"stride": (2, 3), "padding": (1, 0, 2, 1), "groups": 3}),
    ((1, 1, 1, 1), (4, 1, 1, 1), {}),
    ((2, 3, 5, 5), (2, 3, 5, 5), {"padding": 4, "stride": 3}),
    ((1, 2, 11, 3), (3, 2, 4, 1), {"padding": "same", "stride": 2}),
    ((2, 4, 6, 6), (32, 2, 3, 3), {"padding": 1, "groups": 2}),  # weight gradient in the transposed orientation
])
def test_conv_odd_geometries(x_shape, w_shape, attrs):
    outputs, feeds = _conv_case(x_shape, w_shape, **attrs)
    _agree(outputs, feeds)


def test_conv_float64():
    outputs, feeds = _conv_case((2, 3, 6, 5), (4, 3, 3, 3), dtype="float64", stride=2, padding=1)
    _agree(outputs, feeds, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("budget, rows", [(3000, 3), (600, 1)])
def test_conv_row_blocks(monkeypatch, budget, rows):
    """A tiny scratch budget forces im2col in blocks of output rows (full blocks, with and without a remainder)."""
    monkeypatch.setattr(conv_geometry, "SCRATCH_BYTES", budget)
    monkeypatch.setenv("GRAPHC_CACHE", "0")  # the cache key cannot see a patched budget: compile fresh
    outputs, feeds = _conv_case((2, 4, 9, 8), (6, 2, 3, 3), stride=(1, 2), padding=(1, 2, 0, 1), groups=2,
                                algorithm="im2col")
    g = conv.geometry((2, 4, 9, 8), (6, 2, 3, 3), outputs["y"].shape, outputs["y"].attrs, "float32")
    assert g.block_rows() == rows
    _agree(outputs, feeds)


def _pool_graph(x_shape, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    g = gc.Graph("pool")
    x = g.input("x", x_shape)
    mx = gc.max_pool2d(x, **attrs)
    av = gc.avg_pool2d(x, **attrs)
    av_pad = gc.avg_pool2d(x, count_include_pad=True, **attrs)
    w1, w2 = rng.standard_normal(mx.shape).astype("f4"), rng.standard_normal(av.shape).astype("f4")
    loss = gc.sum(mx * w1) + gc.sum(av * w2) + gc.sum(av_pad * w2)
    (dx,) = gc.grad(loss, [x])
    size = int(np.prod(x_shape))
    values = rng.permutation(size).reshape(x_shape) * 4.0 / size - 2.0  # distinct: no ties
    return {"max": mx, "avg": av, "avg_pad": av_pad, "dx": dx}, {"x": values.astype("f4")}


@pytest.mark.parametrize("x_shape, attrs", [
    ((64, 32, 28, 28), {"kernel_size": 2}),
    ((2, 3, 7, 9), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 2, 8, 7), {"kernel_size": (3, 2), "stride": 2, "padding": (1, 0, 1, 1), "ceil_mode": True}),
    ((1, 1, 9, 9), {"kernel_size": 3, "stride": 3, "dilation": 2, "padding": 2, "ceil_mode": True}),
    ((3, 2, 1, 1), {"kernel_size": 1}),
    # wide rows: the interior goes through the row-wise (vectorized) loops, the borders through the generic ones
    ((2, 3, 30, 41), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 2, 20, 50), {"kernel_size": (2, 3), "stride": (2, 1), "dilation": (1, 2), "padding": (0, 2, 1, 2),
                      "ceil_mode": True}),
    ((1, 1, 19, 37), {"kernel_size": 3, "stride": 3, "dilation": 2, "padding": 2, "ceil_mode": True}),
    ((2, 2, 9, 40), {"kernel_size": 2}),
])
def test_pooling_geometries(x_shape, attrs):
    outputs, feeds = _pool_graph(x_shape, **attrs)
    _agree(outputs, feeds)


@pytest.mark.parametrize("attrs", [{"kernel_size": 3, "stride": 2, "padding": 1}, {"kernel_size": 2},
                                   {"kernel_size": (3, 2), "stride": (1, 2), "dilation": 2, "padding": (2, 1)}])
def test_pool_interior_is_exactly_the_unpadded_windows(attrs):
    from codegen.pool import Window
    from ops.registry import apply

    g = gc.Graph("interior")
    x = g.input("x", (1, 1, 17, 23))
    y = apply("max_pool2d", x, **attrs)
    win = Window(y.attrs, x.shape, y.shape)
    i_lo, i_hi, j_lo, j_hi = win.interior()
    for i in range(win.ho):
        for j in range(win.wo):
            inside = all(0 <= i * win.sh + p * win.dh - win.top < win.h and 0 <= j * win.sw + q * win.dw - win.left
                         < win.w for p in range(win.kh) for q in range(win.kw))
            assert inside == (i_lo <= i < i_hi and j_lo <= j < j_hi), (i, j)


def test_max_pool_ties_and_nan_on_wide_rows():
    """Many ties (small integers) and NaNs in rows long enough for the row-wise argmax: the first maximum wins
    and NaN propagates exactly as in the reference, forward and gradient."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (2, 2, 12, 40)).astype(np.float32)
    x[0, 0, 5, 7] = x[1, 1, 0, 0] = np.nan
    g = gc.Graph("ties")
    xi = g.input("x", x.shape)
    y = gc.max_pool2d(xi, 3, stride=2, padding=1)
    w = rng.standard_normal(y.shape).astype(np.float32)
    (dx,) = gc.grad(gc.sum(y * w), [xi])
    got = gc.compile({"y": y, "dx": dx}, backend="llvm")(x=x)
    want = gc.compile({"y": y, "dx": dx}, backend="numpy")(x=x)
    np.testing.assert_array_equal(got["y"], want["y"])
    np.testing.assert_allclose(got["dx"], want["dx"], rtol=1e-6, atol=1e-6)


def test_max_pool_special_values():
    """-inf everywhere (the first maximum is a padding position: its gradient is dropped), NaN propagation and
    ties (the first maximum wins) — bit-identical to the reference."""
    x = np.full((1, 1, 4, 4), -np.inf, np.float32)
    x[0, 0, 3, 3] = np.nan
    x[0, 0, 0, 2:4] = 1.0
    g = gc.Graph("special")
    xi = g.input("x", x.shape)
    h = g.input("h", x.shape)
    attrs = {"kernel_size": 2, "stride": 1, "padding": 1}
    y = gc.max_pool2d(xi, **attrs)
    gy = g.input("gy", y.shape)
    back = apply("max_pool2d_backward", xi, gy, **y.attrs)
    gather = apply("max_pool2d_gather", xi, h, **y.attrs)
    rng = np.random.default_rng(1)
    feeds = {"x": x, "h": rng.standard_normal(x.shape).astype("f4"), "gy": rng.standard_normal(y.shape).astype("f4")}
    want = gc.compile([y, back, gather], backend="numpy")(**feeds)
    got = gc.compile([y, back, gather], backend="llvm")(**feeds)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(b, a)


def test_global_avg_pool_and_batch_norm_batch64():
    rng = np.random.default_rng(2)
    g = gc.Graph("bn")
    x = g.input("x", (64, 8, 7, 7))
    gamma, beta = g.param("gamma", rng.uniform(0.5, 2, 8).astype("f4")), g.param("beta", rng.standard_normal(8)
                                                                                   .astype("f4"))
    mean, var = g.param("mean", np.zeros(8, "f4"), trainable=False), g.param("var", np.ones(8, "f4"),
                                                                             trainable=False)
    y = gc.batch_norm(x, gamma, beta, mean, var, training=True)
    # inference reads other running statistics: each program run updates ``mean``/``var`` in place
    mean2 = g.param("mean2", rng.standard_normal(8).astype("f4"), trainable=False)
    var2 = g.param("var2", rng.uniform(0.5, 2, 8).astype("f4"), trainable=False)
    z = gc.batch_norm(x, gamma, beta, mean2, var2, training=False)
    pooled = gc.global_avg_pool2d(gc.relu(y))
    loss = gc.sum(pooled * pooled) + gc.sum(z * 0.5)
    grads = gc.grad(loss, [x, gamma, beta])
    feeds = {"x": (rng.standard_normal((64, 8, 7, 7)) * 3 + 1).astype("f4")}
    _agree({"y": y, "z": z, "pooled": pooled, **{f"d{i}": d for i, d in enumerate(grads)}}, feeds)


def test_small_cnn_forward_and_gradients():
    rng = np.random.default_rng(3)
    g = gc.Graph("cnn")
    x = g.input("x", (4, 1, 12, 12))
    labels = g.input("labels", (4,), "int64")
    w1 = g.param("w1", (rng.standard_normal((6, 1, 3, 3)) * 0.3).astype("f4"))
    b1 = g.param("b1", np.zeros(6, "f4"))
    w2 = g.param("w2", (rng.standard_normal((8, 6, 3, 3)) * 0.2).astype("f4"))
    wd = g.param("wd", (rng.standard_normal((8 * 3 * 3, 5)) * 0.1).astype("f4"))
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, w1, b1, padding=1)), kernel_size=2)
    h = gc.avg_pool2d(gc.relu(gc.conv2d(h, w2, stride=1, padding=1)), kernel_size=3, stride=2, padding=1)
    h = gc.pad(h, ((0, 0), (0, 0), (0, 0), (0, 0)))
    logits = gc.matmul(gc.flatten(h), wd)
    loss = gc.softmax_cross_entropy(logits, labels)
    grads = gc.grad(loss, [x, w1, b1, w2, wd])
    feeds = {"x": rng.standard_normal((4, 1, 12, 12)).astype("f4"), "labels": rng.integers(0, 5, 4)}
    _agree({"loss": loss, **{f"d{i}": d for i, d in enumerate(grads)}}, feeds)


@pytest.mark.parametrize("seed, step, rate", [(0, 0, 0.5), (11, 3, 0.1), (2**64 - 1, 2**62, 0.9), (7, -5, 0.3)])
def test_dropout_masks_identical(seed, step, rate):
    g = gc.Graph("drop")
    x = g.input("x", (3, 37, 5))
    counter = g.input("step", (), "int64")
    y = apply("dropout", x, counter, rate=rate, seed=seed)
    feeds = {"x": np.ones((3, 37, 5), "f4"), "step": np.int64(step)}
    want = gc.compile([y], backend="numpy")(**feeds)[0]
    got = gc.compile([y], backend="llvm")(**feeds)[0]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got != 0, keep_mask(seed, step, (3, 37, 5), rate))


def test_indexing_and_losses_other_dtypes():
    rng = np.random.default_rng(4)
    g = gc.Graph("ix")
    a = g.input("a", (3, 4), "int64")
    b = g.input("b", (3, 2), "int64")
    p = g.input("p", (5, 3), "float64")
    t = g.input("t", (5, 3), "float64")
    outputs = {
        "cat": gc.concat([a, b, a], axis=1),
        "pad": gc.pad(a, ((1, 2), (0, 3)), value=-1.5),
        "slice": a[::-2, 3:0:-1],
        "bce": gc.binary_cross_entropy(p, t),
        "sbce": apply("sigmoid_binary_cross_entropy", p * 30.0, t, reduction="none"),
        "mae": apply("mae", p, t, reduction="sum"),
    }
    feeds = {"a": rng.integers(-9, 9, (3, 4)), "b": rng.integers(-9, 9, (3, 2)), "p": rng.uniform(0, 1, (5, 3)),
             "t": rng.uniform(0, 1, (5, 3))}
    feeds["p"][0, :2] = (0.0, 1.0)  # clamped logs
    _agree(outputs, feeds, rtol=1e-12, atol=1e-12)


def _pool_case(name, x_shape, attrs, dtype, seed, specials, nan=True):
    """A max pool of small integers (ties) with ``specials`` -inf values (and as many NaNs): (y, x, window)."""
    from codegen.pool import Window

    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 3, x_shape).astype(dtype)
    if nan:
        x.flat[rng.choice(x.size, specials, replace=False)] = np.nan
    x.flat[rng.choice(x.size, specials, replace=False)] = -np.inf
    g = gc.Graph(name)
    y = gc.max_pool2d(g.input("x", x_shape, dtype), **attrs)
    return y, x, Window(y.attrs, x_shape, y.shape)


def _bitwise_reference_on_every_thread_count(y, x):
    want = gc.compile(y, backend="numpy")(x=x)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(gc.compile(y, backend="llvm", threads=threads)(x=x), want)


@pytest.mark.parametrize("x_shape, attrs", [
    ((2, 5, 28, 28), {"kernel_size": 3, "stride": 1, "padding": 1, "ceil_mode": True}),   # GoogLeNet's branch pool
    ((1, 3, 13, 11), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),                 # strided, short rows
    ((1, 2, 9, 10), {"kernel_size": (2, 3), "stride": 1, "dilation": (2, 1), "padding": (1, 0, 2, 1)}),
    ((2, 2, 7, 7), {"kernel_size": 5, "stride": 1, "padding": 2}),                        # windows wider than rows
    ((1, 2, 3, 2), {"kernel_size": 3, "stride": 1, "padding": 1}),                        # every window at a border
])
def test_flat_max_pool(x_shape, attrs, monkeypatch):
    """Max pooling over a -inf-padded copy of each plane (codegen.pool_flat; the stride-1 shapes forced past the
    row kernel, codegen.pool_rows): bit-identical to the reference with NaNs, -inf and ties, bitwise the same on
    1, 2 and 3 threads."""
    from codegen import pool_rows
    from codegen.pool_flat import applies

    monkeypatch.setattr(pool_rows, "applies", lambda *args: False)

    y, x, window = _pool_case("flat_pool", x_shape, attrs, "float32", seed=7, specials=3)
    assert applies(window, 4)
    _bitwise_reference_on_every_thread_count(y, x)


@pytest.mark.parametrize("x_shape, attrs, dtype", [
    ((2, 32, 14, 14), {"kernel_size": 3, "stride": 1, "padding": 1, "ceil_mode": True}, "float32"),
    ((1, 16, 9, 9), {"kernel_size": 2, "stride": 2, "ceil_mode": True}, "float32"),
    ((1, 32, 7, 6), {"kernel_size": (3, 2), "stride": 1, "dilation": (1, 2), "padding": (1, 0, 2, 1)}, "float32"),
    ((1, 16, 2, 3), {"kernel_size": 3, "stride": 1, "padding": 1}, "float32"),               # every window at a border
    ((2, 16, 11, 10), {"kernel_size": 3, "stride": 2, "padding": 1}, "float64"),
    ((1, 16, 28, 28), {"kernel_size": 3, "stride": 1, "padding": 1}, "float32"),  # GoogLeNet's 28×28 and 7×7
    ((1, 16, 7, 7), {"kernel_size": 3, "stride": 1, "padding": 1}, "float32"),
])
@pytest.mark.parametrize("nan", [True, False])
def test_channel_block_max_pool(x_shape, attrs, dtype, nan, monkeypatch):
    """Max pooling on blocks of one vector of channels (codegen.pool_blocks; the stride-1 shapes forced past the
    row kernel, codegen.pool_rows): bit-identical to the reference with -inf and ties, with NaNs (blocks holding
    one take llvm.maximum) and without (the plain maximum), bitwise the same on 1, 2 and 3 threads."""
    from codegen import pool_blocks, pool_rows

    monkeypatch.setattr(pool_rows, "applies", lambda *args: False)
    y, x, window = _pool_case("block_pool", x_shape, attrs, dtype, seed=9, specials=4, nan=nan)
    assert pool_blocks.applies(pool_blocks.geometry(window, x_shape, x.itemsize))
    _bitwise_reference_on_every_thread_count(y, x)


@pytest.mark.parametrize("x_shape, attrs, dtype", [
    ((2, 5, 14, 14), {"kernel_size": 3, "stride": 1, "padding": 1, "ceil_mode": True}, "float32"),  # GoogLeNet's
    ((1, 4, 28, 28), {"kernel_size": 3, "stride": 1, "padding": 1}, "float32"),   # two vectors a row (AVX-512)
    ((1, 6, 7, 7), {"kernel_size": 3, "stride": 1, "padding": 1}, "float64"),
    ((1, 3, 13, 11), {"kernel_size": 5, "stride": 1, "padding": (2, 1, 0, 3)}, "float32"),  # asymmetric padding
    ((1, 2, 9, 16), {"kernel_size": (2, 4), "stride": 1}, "float32"),                     # no padding, a full row
    ((1, 2, 3, 2), {"kernel_size": 3, "stride": 1, "padding": 1}, "float32"),            # every window at a border
])
@pytest.mark.parametrize("nan", [True, False])
def test_row_max_pool(x_shape, attrs, dtype, nan):
    """Max pooling of stride 1 on rows held in registers (codegen.pool_rows): bit-identical to the reference with
    -inf and ties, with NaNs (planes holding one take llvm.maximum) and without (the plain maximum), bitwise the
    same on 1, 2 and 3 threads."""
    from codegen import pool_rows

    y, x, window = _pool_case("row_pool", x_shape, attrs, dtype, seed=13, specials=4, nan=nan)
    assert pool_rows.applies(window, x.itemsize)
    assert "llvm.vector.reduce.or" in gc.compile(y, backend="llvm", threads=1).llvm_ir()  # this kernel
    _bitwise_reference_on_every_thread_count(y, x)


def test_row_max_pool_applies_to_short_rows_of_stride_one():
    from codegen import pool_rows
    from codegen.gemm.config import host_vector_bits
    from codegen.pool import Window

    def window(x_shape, **attrs):
        g = gc.Graph("w")
        y = gc.max_pool2d(g.input("x", x_shape), **attrs)
        return Window(y.attrs, x_shape, y.shape)

    vec = host_vector_bits() // 32
    assert pool_rows.applies(window((1, 8, 14, 14), kernel_size=3, stride=1, padding=1), 4)
    assert pool_rows.applies(window((1, 8, 7, 2 * vec), kernel_size=3, stride=1, padding=1), 4)
    assert not pool_rows.applies(window((1, 8, 7, 2 * vec + 1), kernel_size=3, stride=1, padding=1), 4)
    assert not pool_rows.applies(window((1, 8, 14, 14), kernel_size=3, stride=2, padding=1), 4)
    assert not pool_rows.applies(window((1, 8, 14, 14), kernel_size=3, stride=1, dilation=2), 4)
    assert not pool_rows.applies(window((1, 8, pool_rows.MAX_ROWS + 1, 8), kernel_size=3, stride=1), 4)


@pytest.mark.parametrize("x_shape, attrs, dtype", [
    ((1, 3, 50, 112), {"kernel_size": 3, "stride": 2, "padding": 1}, "float32"),                 # ResNet's stem pool
    ((2, 2, 20, 56), {"kernel_size": 3, "stride": 2, "ceil_mode": True}, "float32"),              # GoogLeNet's
    ((1, 2, 9, 49), {"kernel_size": (2, 3), "stride": (1, 2), "dilation": (2, 1), "padding": (1, 0, 2, 1)},
     "float32"),
    ((1, 2, 6, 48), {"kernel_size": 5, "stride": 3, "padding": 2, "ceil_mode": True}, "float32"),
    ((1, 1, 3, 64), {"kernel_size": (3, 4), "stride": 1, "padding": (1, 1, 1, 2)}, "float32"),  # every row at a border
    ((2, 3, 7, 50), {"kernel_size": 3, "stride": 1, "padding": 1}, "float64"),
])
@pytest.mark.parametrize("nan", [True, False])
def test_separable_max_pool(x_shape, attrs, dtype, nan):
    """Max pooling as a vertical then a horizontal pass (codegen.pool_separable): bit-identical to the reference
    with -inf and ties, with NaNs (planes holding one take llvm.maximum) and without (the plain maximum), bitwise
    the same on 1, 2 and 3 threads."""
    from codegen.pool_separable import applies

    y, x, window = _pool_case("separable_pool", x_shape, attrs, dtype, seed=11, specials=5, nan=nan)
    assert applies(window)
    program = gc.compile(y, backend="llvm", threads=1)
    assert "edge.body" in program.llvm_ir() and "col.body" in program.llvm_ir()  # this kernel, not another
    _bitwise_reference_on_every_thread_count(y, x)
