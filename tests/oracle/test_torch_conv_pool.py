"""PyTorch as the oracle for conv2d and pooling: float64 outputs, gradients and second-order gradients computed by
graphc (symbolic gradients on the NumPy interpreter) against torch.autograd."""

import numpy as np
import pytest

import graphc as gc

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-10, 1e-12


def _graphc(build, arrays, upstream, order=1):
    """Output of ``build`` and the gradients of L = sum(out * u) with respect to every array (u = ``upstream``,
    fixed); order 2: u is an input too, and the gradients are those of sum_i sum(dL/da_i * r_i), fixed random r_i,
    with respect to every array and u (this exercises the VJPs of the gradient ops)."""
    g = gc.Graph("oracle")
    inputs = [g.input(f"a{i}", a.shape, "float64") for i, a in enumerate(arrays)]
    out = build(*inputs)
    if order == 1:
        grads = gc.grad(gc.sum(out * upstream), inputs)
    else:
        u = g.input("u", out.shape, "float64")
        rng = np.random.default_rng(99)
        z = None
        for dx in gc.grad(gc.sum(out * u), inputs):
            term = gc.sum(dx * rng.standard_normal(dx.shape))
            z = term if z is None else z + term
        grads = gc.grad(z, [*inputs, u])
    feeds = {f"a{i}": a for i, a in enumerate(arrays)}
    if order == 2:
        feeds["u"] = upstream
    results = gc.compile([out, *grads], backend="numpy")(**feeds)
    return results[0], results[1:]


def _torch(build, arrays, upstream, order=1):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    u = torch.tensor(upstream, requires_grad=order == 2)
    out = build(*ts)
    grads = torch.autograd.grad((out * u).sum(), ts, create_graph=order == 2, allow_unused=True)
    if order == 2:
        rng = np.random.default_rng(99)
        z = sum((dx * torch.tensor(rng.standard_normal(tuple(t.shape)))).sum() for dx, t in zip(grads, ts)
                if dx is not None)
        ts = [*ts, u]
        grads = torch.autograd.grad(z, ts, allow_unused=True)
    grads = [np.zeros(t.shape) if d is None else d.detach().numpy() for d, t in zip(grads, ts)]
    return out.detach().numpy(), grads


def _compare(gc_build, torch_build, arrays, seed=0, order=1):
    probe_out = _graphc(gc_build, arrays, 1.0)[0]
    upstream = np.random.default_rng(seed).standard_normal(probe_out.shape)
    out_g, grads_g = _graphc(gc_build, arrays, upstream, order)
    out_t, grads_t = _torch(torch_build, arrays, upstream, order)
    assert out_g.shape == out_t.shape
    assert len(grads_g) == len(grads_t) == len(arrays) + (order == 2)
    np.testing.assert_allclose(out_g, out_t, rtol=RTOL, atol=ATOL)
    for i, (a, b) in enumerate(zip(grads_g, grads_t)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"gradient {i} (order {order})")


def _rand(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


# ---------------------------------------------------------------------------------------------- conv2d

CONV_CASES = [
    # x shape, w shape, graphc kwargs, torch kwargs, bias
    ((2, 3, 7, 7), (4, 3, 3, 3), {}, {}, True),
    ((2, 3, 7, 7), (4, 3, 3, 3), {"padding": 1}, {"padding": 1}, False),
    ((1, 2, 8, 9), (3, 2, 3, 2), {"stride": 2, "padding": (1, 2)}, {"stride": 2, "padding": (1, 2)}, True),
    ((1, 2, 9, 9), (3, 2, 3, 3), {"dilation": 2, "padding": 2}, {"dilation": 2, "padding": 2}, True),
    ((2, 2, 9, 8), (2, 2, 2, 3), {"stride": (2, 3), "dilation": (2, 1)}, {"stride": (2, 3), "dilation": (2, 1)},
     False),
    ((1, 3, 6, 7), (2, 3, 3, 4), {"padding": "same"}, {"padding": "same"}, True),
    ((1, 3, 6, 7), (2, 3, 3, 3), {"padding": "valid", "stride": 2}, {"padding": "valid", "stride": 2}, True),
    ((1, 4, 6, 6), (6, 2, 3, 3), {"groups": 2, "padding": 1}, {"groups": 2, "padding": 1}, True),
    ((1, 1, 1, 1), (2, 1, 1, 1), {}, {}, True),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-bias{c[4]}")
def test_conv2d_matches_torch(case, order):
    xs, ws, gkw, tkw, bias = case
    arrays = _rand(1, xs, ws, (ws[0],)) if bias else _rand(1, xs, ws)
    _compare(lambda *a: gc.conv2d(*a, **gkw), lambda *a: F.conv2d(*a, **tkw), arrays, order=order)


def _same_upper(n, k, s, d):
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("stride, dilation", [(2, 1), (3, 1), (2, 2)])
def test_conv2d_same_padding_with_stride_matches_explicit_torch_pads(stride, dilation):
    """"same" with stride > 1 (which torch refuses) equals torch on input padded the ONNX SAME_UPPER way."""
    x, w, b = _rand(2, (1, 2, 7, 8), (3, 2, 3, 2), (3,))
    (t, bottom), (left, right) = _same_upper(7, 3, stride, dilation), _same_upper(8, 2, stride, dilation)

    def torch_conv(x, w, b):
        return F.conv2d(F.pad(x, (left, right, t, bottom)), w, b, stride=stride, dilation=dilation)

    _compare(lambda x, w, b: gc.conv2d(x, w, b, stride=stride, padding="same", dilation=dilation), torch_conv,
             [x, w, b])
    assert _graphc(lambda x, w, b: gc.conv2d(x, w, b, stride=stride, padding="same"), [x, w, b], 1.0)[0].shape[2:] \
        == (-(-7 // stride), -(-8 // stride))


def test_conv2d_asymmetric_pads_match_torch():
    x, w, b = _rand(3, (2, 2, 5, 6), (3, 2, 3, 3), (3,))
    _compare(lambda x, w, b: gc.conv2d(x, w, b, padding=(0, 2, 1, 0), stride=(1, 2)),  # top, left, bottom, right
             lambda x, w, b: F.conv2d(F.pad(x, (2, 0, 0, 1)), w, b, stride=(1, 2)), [x, w, b])


# ---------------------------------------------------------------------------------------------- pooling

MAX_CASES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0)},
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 3, "stride": 1, "dilation": 2, "padding": 1},
    {"kernel_size": 3, "stride": 1},  # overlapping windows: gradients accumulate
]


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("kwargs", MAX_CASES, ids=str)
def test_max_pool2d_matches_torch(kwargs, order):
    (x,) = _rand(4, (2, 3, 7, 8))
    _compare(lambda x: gc.max_pool2d(x, **kwargs), lambda x: F.max_pool2d(x, **kwargs), [x], order=order)


def test_max_pool2d_ties_route_to_first_maximum_like_torch():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[0, 0, 2, 1] = 1.0  # a three-way tie in the overlapping windows
    _compare(lambda x: gc.max_pool2d(x, 2, stride=1), lambda x: F.max_pool2d(x, 2, stride=1), [x])


AVG_CASES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 1)},
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True},
]


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("kwargs", AVG_CASES, ids=str)
def test_avg_pool2d_matches_torch(kwargs, count_include_pad, order):
    (x,) = _rand(5, (2, 3, 7, 8))
    _compare(lambda x: gc.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs),
             lambda x: F.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs), [x], order=order)


@pytest.mark.parametrize("order", [1, 2])
def test_global_avg_pool2d_matches_torch(order):
    (x,) = _rand(6, (2, 3, 5, 4))
    _compare(gc.global_avg_pool2d, lambda x: F.adaptive_avg_pool2d(x, 1), [x], order=order)


# ---------------------------------------------------------------------------------------------- a small CNN


def test_small_cnn_loss_and_gradients_match_torch():
    """conv → relu → max-pool → conv (same, bias) → relu → avg-pool → global pool → dense → softmax-CE."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 2, 10, 10))
    labels = rng.integers(0, 3, 4)
    params = [rng.standard_normal(s) * 0.5 for s in [(4, 2, 3, 3), (4,), (5, 4, 3, 3), (5,), (5, 3), (3,)]]

    def gc_model(x, w1, b1, w2, b2, wd, bd):
        h = gc.max_pool2d(gc.relu(gc.conv2d(x, w1, b1, padding=1)), 2)
        h = gc.avg_pool2d(gc.relu(gc.conv2d(h, w2, b2, padding="same", stride=2)), 2, stride=1, padding=1,
                          ceil_mode=True)
        return gc.reshape(gc.global_avg_pool2d(h), (4, 5)) @ wd + bd

    def torch_model(x, w1, b1, w2, b2, wd, bd):
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=1)), 2)
        h = F.avg_pool2d(F.relu(F.conv2d(F.pad(h, (1, 1, 1, 1)), w2, b2, stride=2)), 2, stride=1, padding=1,
                         ceil_mode=True, count_include_pad=False)
        return F.adaptive_avg_pool2d(h, 1).reshape(4, 5) @ wd + bd

    g = gc.Graph("cnn")
    xin, yin = g.input("x", x.shape, "float64"), g.input("labels", (4,), "int64")
    ps = [g.param(f"p{i}", p, dtype="float64") for i, p in enumerate(params)]
    loss = gc.softmax_cross_entropy(gc_model(xin, *ps), yin)
    got = gc.compile([loss, *gc.grad(loss, ps)], backend="numpy")(x=x, labels=labels)

    ts = [torch.tensor(p, requires_grad=True) for p in params]
    t_loss = F.cross_entropy(torch_model(torch.tensor(x), *ts), torch.tensor(labels))
    t_grads = torch.autograd.grad(t_loss, ts)
    np.testing.assert_allclose(got[0], t_loss.item(), rtol=RTOL, atol=ATOL)
    for i, (a, b) in enumerate(zip(got[1:], t_grads)):
        np.testing.assert_allclose(a, b.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"parameter {i}")
