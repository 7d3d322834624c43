"""Symbolic reverse-mode autodiff (passes/autodiff.py through gc.grad)."""

import inspect

import numpy as np
import pytest

import graphc as gc
from graphc.ir import topo_ancestors
from ops.base import Op
from ops.registry import REGISTRY, apply, register


def this_line() -> int:
    return inspect.currentframe().f_back.f_lineno


def run(outputs, **feeds):
    return gc.compile(outputs, backend="numpy")(**feeds)


# ------------------------------------------------------------------------------------------ reuse


def test_reused_node_sums_its_gradients():
    g = gc.Graph("square")
    x = g.input("x", (4,), "float64")
    (dx,) = gc.grad((x * x).sum(), [x])
    xv = np.array([-2.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(run(dx, x=xv), 2 * xv)


def test_node_with_three_consumers():
    g = gc.Graph("three")
    x = g.input("x", (3,), "float64")
    h = gc.exp(x)  # three consumers (one of which uses it twice)
    y = (h * 2.0 + h * h + gc.tanh(h)).sum()
    assert sum(n.inputs.count(h) for n in g.nodes) == 4
    (dx,) = gc.grad(y, [x])
    xv = np.array([-1.0, 0.0, 0.7])
    e = np.exp(xv)
    expected = (2.0 + 2 * e + (1 - np.tanh(e) ** 2)) * e
    np.testing.assert_allclose(run(dx, x=xv), expected, rtol=1e-12)


# ------------------------------------------------------------------------------------------ broadcasting


@pytest.mark.parametrize("shape_a, shape_b", [((3, 1), (1, 4)), ((8, 4), (4,)), ((), (2, 3)), ((2, 1, 3), (4, 1))])
def test_broadcast_gradients_are_summed_back(shape_a, shape_b):
    g = gc.Graph("bcast")
    a = g.input("a", shape_a, "float64")
    b = g.input("b", shape_b, "float64")
    out = a + b
    weights = np.random.default_rng(0).standard_normal(out.shape)
    da, db = gc.grad((out * weights).sum(), [a, b])
    assert da.shape == shape_a and db.shape == shape_b
    rng = np.random.default_rng(1)
    feeds = {"a": rng.standard_normal(shape_a), "b": rng.standard_normal(shape_b)}
    got_a, got_b = run([da, db], **feeds)
    # d/da of sum(w * (a + b)) is w summed over the axes a was broadcast along
    lead_a = len(out.shape) - len(shape_a)
    expect_a = weights.sum(axis=tuple(range(lead_a))) if lead_a else weights
    expect_a = expect_a.sum(axis=tuple(i for i, d in enumerate(shape_a) if d == 1), keepdims=True).reshape(shape_a)
    lead_b = len(out.shape) - len(shape_b)
    expect_b = weights.sum(axis=tuple(range(lead_b))) if lead_b else weights
    expect_b = expect_b.sum(axis=tuple(i for i, d in enumerate(shape_b) if d == 1), keepdims=True).reshape(shape_b)
    np.testing.assert_allclose(got_a, expect_a, rtol=1e-12)
    np.testing.assert_allclose(got_b, expect_b, rtol=1e-12)


def test_bias_and_scalar_times_matrix():
    g = gc.Graph("dense")
    x = g.input("x", (8, 3), "float64")
    w = g.param("w", np.random.default_rng(2).standard_normal((3, 4)), dtype="float64")
    b = g.param("b", np.zeros(4), dtype="float64")
    s = g.input("s", (), "float64")
    loss = gc.mean(gc.tanh(s * (x @ w) + b) ** 2.0)
    dw, db, ds = gc.grad(loss, [w, b, s])
    assert (dw.shape, db.shape, ds.shape) == ((3, 4), (4,), ())
    feeds = {"x": np.random.default_rng(3).standard_normal((8, 3)), "s": 0.7}
    gc.testing.check_grads(loss, [w, b, s, x], feeds)


# ------------------------------------------------------------------------------------------ long chains


def test_chain_of_fifty_ops():
    g = gc.Graph("chain")
    x = g.input("x", (5,), "float64")
    y = x
    for k in range(50):  # y ← y·1.01 + 0.01 (affine, so the derivative is 1.01^50 exactly)
        y = y * 1.01 + 0.01 if k % 2 == 0 else (y + 0.01 / 1.01) * 1.01
    (dx,) = gc.grad(y.sum(), [x])
    xv = np.linspace(-1, 1, 5)
    value, grad = run([y, dx], x=xv)
    np.testing.assert_allclose(grad, np.full(5, 1.01 ** 50), rtol=1e-12)
    expected = xv.copy()
    for _ in range(50):
        expected = expected * 1.01 + 0.01
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_chain_of_fifty_nonlinear_ops_matches_finite_differences():
    g = gc.Graph("chain_nl")
    x = g.input("x", (3,), "float64")
    y = x
    for k in range(50):
        y = [gc.tanh, gc.sigmoid, lambda v: v * 1.5 + 0.1, lambda v: gc.exp(v * 0.1)][k % 4](y)
    gc.testing.check_grads(y.sum(), [x], {"x": np.array([-0.3, 0.2, 0.9])})


# ------------------------------------------------------------------------------------------ grad of grad


def test_third_derivative_of_cube():
    g = gc.Graph("cube")
    x = g.input("x", (4,), "float64")
    d1 = gc.grad((x * x * x).sum(), x)
    d2 = gc.grad(d1.sum(), x)
    d3 = gc.grad(d2.sum(), x)
    xv = np.array([-2.0, -0.5, 1.0, 3.0])
    got1, got2, got3 = run([d1, d2, d3], x=xv)
    np.testing.assert_allclose(got1, 3 * xv ** 2)
    np.testing.assert_allclose(got2, 6 * xv)
    np.testing.assert_allclose(got3, np.full(4, 6.0))


@pytest.mark.parametrize("name, f, second", [
    ("tanh", gc.tanh, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
    ("sigmoid", gc.sigmoid, lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s)),
    ("exp", gc.exp, np.exp),
    ("log", gc.log, lambda x: -1 / x ** 2),
    ("sqrt", gc.sqrt, lambda x: -0.25 * x ** -1.5),
    ("pow3", lambda v: v ** 3.0, lambda x: 6 * x),
    ("div", lambda v: 1.0 / v, lambda x: 2 / x ** 3),
])
def test_second_derivatives_of_elementwise_ops(name, f, second):
    g = gc.Graph(f"second_{name}")
    x = g.input("x", (5,), "float64")
    d1 = gc.grad(f(x).sum(), x)
    d2 = gc.grad(d1.sum(), x)
    xv = np.array([0.3, 0.7, 1.1, 1.9, 2.5])
    np.testing.assert_allclose(run(d2, x=xv), second(xv), rtol=1e-10)
    gc.testing.check_grads(d1.sum(), [x], {"x": xv})


def test_grad_of_grad_through_sum_mean_broadcast_matmul():
    g = gc.Graph("gog")
    a = g.input("a", (2, 3), "float64")
    b = g.input("b", (3, 4), "float64")
    c = g.input("c", (4,), "float64")
    loss = gc.mean(gc.tanh(a @ b + c) ** 2.0) + (a * a).sum(axis=1).mean()
    da, dc = gc.grad(loss, [a, c])
    penalty = (da * da).sum() + gc.broadcast_to(dc, (2, 4)).mean()
    rng = np.random.default_rng(4)
    feeds = {"a": rng.standard_normal((2, 3)), "b": rng.standard_normal((3, 4)), "c": rng.standard_normal(4)}
    gc.testing.check_grads(penalty, [a, b, c], feeds)
    gc.verify(g)


# ------------------------------------------------------------------------------------------ special targets


def test_gradient_with_respect_to_an_intermediate_node():
    g = gc.Graph("mid")
    x = g.input("x", (3,), "float64")
    h = x * 3.0
    y = (h * h).sum() + x.sum()
    dh, dx = gc.grad(y, [h, x])
    xv = np.array([1.0, -2.0, 0.5])
    got_h, got_x = run([dh, dx], x=xv)
    np.testing.assert_allclose(got_h, 2 * 3 * xv)
    np.testing.assert_allclose(got_x, 18 * xv + 1)


def test_gradient_of_unrelated_input_is_zero_of_its_shape_and_dtype():
    g = gc.Graph("unrelated")
    x = g.input("x", (3,), "float64")
    z = g.input("z", (2, 5), "float32")
    (dz,) = gc.grad((x * 2.0).sum(), [z])
    assert dz.shape == (2, 5) and dz.dtype == "float32" and dz.backward
    out = run(dz, x=np.zeros(3))
    assert out.dtype == np.float32 and out.shape == (2, 5) and not out.any()
    # only reachable through an integer value: no gradient either
    i = gc.cast(gc.cast(x, "int64"), "float64")
    (dx,) = gc.grad(i.sum(), [x])
    assert not run(dx, x=np.ones(3)).any()


def test_nonscalar_target_explains_how_to_reduce():
    g = gc.Graph("vec")
    x = g.input("x", (3,))
    with pytest.raises(gc.GradientError) as info:
        line = this_line() + 1
        gc.grad(x * 2.0, [x])
    message = str(info.value)
    assert "scalar" in message and "(3,)" in message and ".sum()" in message and ".mean()" in message
    assert f"test_autodiff.py:{line}" in message  # the site of the non-scalar y


def test_integer_input_rejected():
    g = gc.Graph("int")
    x = g.input("x", (3,))
    labels = g.input("labels", (3,), "int64")
    with pytest.raises(gc.GradientError, match="'labels' of dtype int64"):
        gc.grad((x * 2.0).sum(), [x, labels])


# ------------------------------------------------------------------------------------------ missing VJP


@pytest.fixture
def no_vjp_op():
    @register
    class NoVjpTestOp(Op):
        """y = x (a test op without a VJP)."""

        name = "test_no_vjp"
        kind = "elementwise"
        arity = 1

        def infer(self, attrs, x):
            return x

        def reference(self, attrs, x):
            return x.copy()

    yield "test_no_vjp"
    del REGISTRY["test_no_vjp"]


def test_one_error_lists_every_op_without_vjp(no_vjp_op):
    g = gc.Graph("novjp")
    x = g.input("x", (3,))
    a = apply(no_vjp_op, x); first = this_line()  # noqa: E702
    b = apply(no_vjp_op, a * 2.0); second = this_line()  # noqa: E702
    off_path = apply(no_vjp_op, g.input("other", (3,)))  # not on the path from x: not listed
    y = (a + b + off_path).sum()
    nodes_before = len(g.nodes)
    with pytest.raises(gc.GradientError) as info:
        gc.grad(y, [x])
    message = str(info.value)
    assert len([ln for ln in message.splitlines() if ln.strip().startswith(f"- {no_vjp_op}")]) == 2, message
    assert f"test_autodiff.py:{first}" in message and f"test_autodiff.py:{second}" in message
    assert a.name in message and b.name in message and off_path.name not in message
    assert len(g.nodes) == nodes_before  # nothing half-built was left behind
    (d_other,) = gc.grad((a * 2.0).sum(), [g.inputs["other"]])  # the op is fine where no gradient flows
    assert d_other.shape == (3,)


# ------------------------------------------------------------------------------------------ graph hygiene


def test_backward_nodes_are_marked_and_forward_nodes_are_not():
    g = gc.Graph("marks")
    x = g.input("x", (3,))
    w = g.param("w", np.ones(3))
    y = gc.sigmoid(x * w).sum()
    forward = list(g.nodes)
    dw, dx = gc.grad(y, [w, x])
    assert not any(n.backward for n in forward)
    new = [n for n in g.nodes if n not in forward]
    assert new and all(n.backward for n in new)
    assert dw.backward and dx.backward
    z = dw * 2.0  # using a gradient afterwards is forward work again
    assert not z.backward


def test_no_dead_backward_nodes_after_grad():
    g = gc.Graph("dead")
    x = g.input("x", (4, 3))
    w = g.param("w", np.ones((3, 2)))
    b = g.param("b", np.zeros(2))
    loss = gc.mean((gc.relu(x @ w + b) - 1.0) ** 2.0)
    start = len(g.nodes)
    (dw,) = gc.grad(loss, [w])  # gradients for x and b are not asked for
    created = g.nodes[start:]
    needed = {id(n) for n in topo_ancestors([dw])}
    assert created and all(id(n) in needed for n in created), [n for n in created if id(n) not in needed]
    assert [n.id for n in g.nodes] == list(range(len(g.nodes)))
    gc.verify(g)


def test_verify_passes_after_grad_and_grad_of_grad():
    g = gc.Graph("verify")
    x = g.input("x", (2, 3), "float64")
    y = gc.softmax(x, axis=1).max(axis=1).sum() + gc.log_softmax(x).mean()
    (dx,) = gc.grad(y, [x])
    gc.grad((dx * dx).sum(), [x])
    assert gc.verify(g) is g


def test_gradient_values_for_the_apple_example():
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple"), g.input("num"), g.input("tax")
    price = apple * num * tax
    grads = gc.grad(price, [apple, num, tax])
    out = run([price, *grads], apple=100.0, num=2.0, tax=1.1)
    np.testing.assert_allclose([float(v) for v in out], [220.0, 2.2, 110.0, 200.0], rtol=1e-6)


@pytest.fixture
def bad_shape_vjp_op():
    @register
    class BadShapeVjpTestOp(Op):
        """y = x, with a VJP of the wrong shape (a test op)."""

        name = "test_bad_shape_vjp"
        kind = "elementwise"
        arity = 1

        def infer(self, attrs, x):
            return x

        def reference(self, attrs, x):
            return x.copy()

        def vjp(self, node, g):
            return (g.sum(),)

    yield "test_bad_shape_vjp"
    del REGISTRY["test_bad_shape_vjp"]


def test_a_vjp_of_the_wrong_type_fails_cleanly(bad_shape_vjp_op):
    g = gc.Graph("badvjp")
    x = g.input("x", (3,))
    y = (apply(bad_shape_vjp_op, x) * 2.0).sum()
    before = list(g.nodes)
    with pytest.raises(gc.GradientError, match="internal error: the VJP of test_bad_shape_vjp returned float32"):
        gc.grad(y, [x])
    assert g.nodes == before  # the half-built backward graph was removed
    gc.verify(g)
