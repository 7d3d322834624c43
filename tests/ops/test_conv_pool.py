"""Direct semantic tests of conv2d and pooling (the registry-driven contract tests cover gradients and errors)."""

import numpy as np
import pytest

import graphc as gc
from ops.registry import apply


def _run(outputs, **feeds):
    return gc.compile(outputs, backend="numpy")(**feeds)


def _inputs(*shapes, dtype="float64"):
    g = gc.Graph("t")
    return [g.input(f"a{i}", s, dtype) for i, s in enumerate(shapes)]


def test_1x1_conv_is_a_matmul_over_channels(rng):
    x, w, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((6, 3, 1, 1)), rng.standard_normal(6)
    xi, wi, bi = _inputs(x.shape, w.shape, b.shape)
    got = _run(gc.conv2d(xi, wi, bi), a0=x, a1=w, a2=b)
    expected = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b[None, :, None, None]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_conv_matches_a_direct_sum_with_stride_padding_dilation(rng):
    x, w = rng.standard_normal((1, 2, 7, 6)), rng.standard_normal((3, 2, 2, 3))
    xi, wi = _inputs(x.shape, w.shape)
    got = _run(gc.conv2d(xi, wi, stride=(2, 1), padding=(1, 0, 2, 1), dilation=(2, 1)), a0=x, a1=w)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)))
    ho, wo = (7 + 3 - 3) // 2 + 1, (6 + 1 - 3) // 1 + 1
    expected = np.zeros((1, 3, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, 2 * i:2 * i + 3:2, j:j + 3]
            expected[:, :, i, j] = np.einsum("ncpq,ocpq->no", patch, w)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("kernel, dilation", [(1, 1), (2, 1), (3, 1), (4, 1), (3, 2), ((2, 5), 1)])
def test_same_padding_keeps_the_spatial_size(kernel, dilation):
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w = _inputs((1, 2, 7, 6), (3, 2) + k)
    y = gc.conv2d(x, w, padding="same", dilation=dilation)
    assert y.shape == (1, 3, 7, 6)
    assert gc.max_pool2d(x, kernel, stride=1, padding="same").shape == (1, 2, 7, 6)


@pytest.mark.parametrize("stride", [2, 3])
def test_same_padding_with_stride_gives_ceil_of_input_over_stride(stride):
    x, w = _inputs((1, 2, 7, 6), (3, 2, 3, 3))
    assert gc.conv2d(x, w, padding="same", stride=stride).shape[2:] == (-(-7 // stride), -(-6 // stride))


def test_same_upper_puts_the_extra_padding_at_the_end_and_same_lower_at_the_start():
    x, w = _inputs((1, 1, 4, 4), (1, 1, 2, 2))
    assert gc.conv2d(x, w, padding="same").attrs["padding"] == (0, 0, 1, 1)
    assert gc.conv2d(x, w, padding="same_lower").attrs["padding"] == (1, 1, 0, 0)
    assert gc.conv2d(x, w, padding="valid").shape == (1, 1, 3, 3)


def test_grouped_conv_equals_separate_convs(rng):
    x, w, b = rng.standard_normal((2, 4, 5, 5)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    xi, wi, bi = _inputs(x.shape, w.shape, b.shape)
    got = _run(gc.conv2d(xi, wi, bi, groups=2, padding=1), a0=x, a1=w, a2=b)
    parts = []
    for k in range(2):
        xk, wk, bk = _inputs((2, 2, 5, 5), (3, 2, 3, 3), (3,))
        parts.append(_run(gc.conv2d(xk, wk, bk, padding=1), a0=x[:, 2 * k:2 * k + 2], a1=w[3 * k:3 * k + 3],
                          a2=b[3 * k:3 * k + 3]))
    np.testing.assert_allclose(got, np.concatenate(parts, axis=1), rtol=1e-12)


@pytest.mark.parametrize("geometry", [{}, {"stride": 2, "padding": 1}, {"dilation": 2, "padding": (2, 1, 0, 1)},
                                      {"stride": (3, 2), "padding": "same"}, {"groups": 2, "stride": 2}])
def test_gradient_ops_are_the_adjoints_of_conv(rng, geometry):
    """<conv(x, w), g> = <x, conv2d_backward_input(g, w)> = <w, conv2d_backward_weight(x, g)>."""
    x, w = rng.standard_normal((2, 4, 7, 8)), rng.standard_normal((6, 4 // geometry.get("groups", 1), 3, 2))
    xi, wi = _inputs(x.shape, w.shape)
    y = gc.conv2d(xi, wi, **geometry)
    g = rng.standard_normal(y.shape)
    gi = xi.graph.input("g", y.shape, "float64")
    dx = apply("conv2d_backward_input", gi, wi, input_size=x.shape[2:], **y.attrs)
    dw = apply("conv2d_backward_weight", xi, gi, kernel_size=w.shape[2:], **y.attrs)
    yv, dxv, dwv = _run([y, dx, dw], a0=x, a1=w, g=g)
    assert np.isclose(np.sum(yv * g), np.sum(x * dxv), rtol=1e-12)
    assert np.isclose(np.sum(yv * g), np.sum(w * dwv), rtol=1e-12)


# ----------------------------------------------------------------------------------------------- errors


def test_kernel_larger_than_padded_input_names_both_shapes_and_the_line():
    x, w = _inputs((1, 3, 4, 4), (2, 3, 7, 7))
    with pytest.raises(gc.ShapeError) as info:
        gc.conv2d(x, w, padding=1)
    message = str(info.value)
    assert "(1, 3, 4, 4)" in message and "(2, 3, 7, 7)" in message
    assert "larger than the padded input 6x6" in message
    assert "test_conv_pool.py:" in message


def test_negative_stride_is_rejected():
    x, w = _inputs((1, 3, 5, 5), (2, 3, 3, 3))
    with pytest.raises(gc.ShapeError, match=r"stride must be positive, got \(-2, 1\)") as info:
        gc.conv2d(x, w, stride=(-2, 1))
    assert "test_conv_pool.py:" in str(info.value)
    with pytest.raises(gc.ShapeError, match="stride must be positive"):
        gc.max_pool2d(x, 2, stride=0)


def test_mismatched_channels_name_both_shapes():
    x, w = _inputs((1, 3, 5, 5), (2, 4, 3, 3))
    with pytest.raises(gc.ShapeError, match=r"x has 3 channels \(shape \(1, 3, 5, 5\)\) but w of shape \(2, 4, 3, 3\)"):
        gc.conv2d(x, w)


def test_bias_of_the_wrong_shape_and_wrong_ranks_are_rejected():
    x, w, b, v = _inputs((1, 3, 5, 5), (2, 3, 3, 3), (3,), (3, 5, 5))
    with pytest.raises(gc.ShapeError, match=r"bias of shape \(3,\) does not match w of shape \(2, 3, 3, 3\)"):
        gc.conv2d(x, w, b)
    with pytest.raises(gc.ShapeError, match=r"x must have rank 4 \(N, C, H, W\), got shape \(3, 5, 5\)"):
        gc.conv2d(v, w)
    with pytest.raises(gc.ShapeError, match="rank 4"):
        gc.avg_pool2d(v, 2)


# ----------------------------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("size, kwargs, expected", [
    (4, {"kernel_size": 3, "stride": 2}, 1),
    (4, {"kernel_size": 3, "stride": 2, "ceil_mode": True}, 2),
    (5, {"kernel_size": 2, "stride": 2, "padding": 1}, 3),
    (5, {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, 3),  # a 4th window would start in padding
    (6, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, 4),
    (7, {"kernel_size": 2}, 3),
])
def test_pool_output_sizes_follow_onnx_and_torch(size, kwargs, expected):
    (x,) = _inputs((1, 1, size, size))
    assert gc.max_pool2d(x, **kwargs).shape == (1, 1, expected, expected)
    assert gc.avg_pool2d(x, **kwargs).shape == (1, 1, expected, expected)


def test_max_pool_pads_with_minus_infinity():
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    (xi,) = _inputs(x.shape)
    got = _run(gc.max_pool2d(xi, 2, stride=2, padding=1), a0=x)
    np.testing.assert_array_equal(got[0, 0], [[-1.0, -2.0], [-4.0, -5.0]])


def test_avg_pool_divisor_with_and_without_padding_count():
    x = np.ones((1, 1, 2, 2))
    (xi,) = _inputs(x.shape)
    excluded, included = _run([gc.avg_pool2d(xi, 2, stride=1, padding=1),
                               gc.avg_pool2d(xi, 2, stride=1, padding=1, count_include_pad=True)], a0=x)
    np.testing.assert_allclose(excluded[0, 0], np.ones((3, 3)))
    np.testing.assert_allclose(included[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


def test_max_pool_gradient_goes_to_the_maximum_only():
    x = np.array([[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 9.0, 1.0]]]])
    (xi,) = _inputs(x.shape)
    (dx,) = _run(gc.grad(gc.sum(gc.max_pool2d(xi, 2)), [xi]), a0=x)
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])


def test_global_avg_pool_is_the_spatial_mean(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    (xi,) = _inputs(x.shape)
    y = gc.global_avg_pool2d(xi)
    assert y.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(_run(y, a0=x), x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)


def test_a_window_entirely_in_padding_is_rejected():
    (x,) = _inputs((1, 1, 4, 4))
    with pytest.raises(gc.ShapeError, match="lies entirely in the padding"):
        gc.max_pool2d(x, 2, stride=2, padding=2)


def test_float32_stays_float32(rng):
    x, w = _inputs((1, 2, 6, 6), (3, 2, 3, 3), dtype="float32")
    y = gc.avg_pool2d(gc.max_pool2d(gc.conv2d(x, w, padding=1), 2), 2, ceil_mode=True)
    grads = gc.grad(gc.sum(y), [x, w])
    out = _run([y, *grads], a0=rng.standard_normal((1, 2, 6, 6)).astype(np.float32),
               a1=rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    assert [a.dtype for a in out] == [np.float32] * 3
