"""The NumPy interpreter behind the Program interface: feeds, outputs, state updates, check_grads."""

import inspect

import numpy as np
import pytest

import graphc as gc
from ops import fn
from ops.base import Op
from ops.registry import REGISTRY, apply, register

HERE = "test_interpreter.py"


def this_line() -> int:
    return inspect.currentframe().f_back.f_lineno


@pytest.fixture
def model():
    g = gc.Graph("model")
    x = g.input("x", (2, 3)); x_line = this_line()  # noqa: E702
    labels = g.input("labels", (2,), "int64"); labels_line = this_line()  # noqa: E702
    w = g.param("w", np.arange(6.0).reshape(2, 3))
    out = {"y": x * w, "twice": labels * 2}
    return g, x, labels, w, gc.compile(out, backend="numpy"), x_line, labels_line


def good_feeds():
    return {"x": np.ones((2, 3), np.float32), "labels": np.array([1, 2])}


# ------------------------------------------------------------------------------------------ feeds


def test_valid_feeds_run(model):
    g, *_, prog, _, _ = model
    out = prog(**good_feeds())
    np.testing.assert_array_equal(out["y"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(out["twice"], [2, 4])
    assert out["y"].dtype == np.float32 and out["twice"].dtype == np.int64


def test_unknown_feed_lists_expected_inputs(model):
    *_, prog, x_line, labels_line = model
    with pytest.raises(gc.FeedError) as info:
        prog(**good_feeds(), lables=[1, 2])
    message = str(info.value)
    assert "'lables'" in message and "'x'" in message and "'labels'" in message
    assert "float32[2, 3]" in message and "int64[2]" in message


def test_missing_feed_names_it_and_its_declaration(model):
    *_, prog, x_line, labels_line = model
    with pytest.raises(gc.FeedError) as info:
        prog(x=np.ones((2, 3)))
    message = str(info.value)
    assert "missing" in message and "'labels'" in message and f"{HERE}:{labels_line}" in message
    assert "'x'" not in message


def test_wrong_shape_names_input_expected_got_and_site(model):
    *_, prog, x_line, _ = model
    with pytest.raises(gc.FeedError) as info:
        prog(x=np.ones((3, 2)), labels=[1, 2])
    message = str(info.value)
    assert "'x'" in message and "(2, 3)" in message and "(3, 2)" in message and f"{HERE}:{x_line}" in message


def test_dtype_rules(model):
    *_, prog, _, labels_line = model
    with pytest.raises(gc.FeedError) as info:
        prog(x=np.ones((2, 3)), labels=np.array([1.0, 2.0]))
    message = str(info.value)
    assert "'labels'" in message and "int64" in message and "float64" in message and f"{HERE}:{labels_line}" in message
    out = prog(x=np.ones((2, 3), np.float64), labels=np.array([1, 2], np.int32))  # widening/narrowing floats is fine
    assert out["y"].dtype == np.float32
    out = prog(x=[[1, 2, 3], [4, 5, 6]], labels=[0, 1])  # Python lists
    np.testing.assert_array_equal(out["y"], np.array([[1, 2, 3], [4, 5, 6]]) * np.arange(6.0).reshape(2, 3))
    for bad in ("abc", np.ones((2, 3)) + 1j, [[1, 2, 3], [4, 5]]):
        with pytest.raises(gc.FeedError, match="'x'"):
            prog(x=bad, labels=[0, 1])


def test_symbolic_tensor_as_feed_rejected(model):
    _, x, *_ = model
    prog = model[4]
    with pytest.raises(gc.FeedError, match="symbolic"):
        prog(x=x, labels=[0, 1])


# ------------------------------------------------------------------------------------------ outputs


def test_output_forms():
    g = gc.Graph("forms")
    x = g.input("x", (2,))
    a, b = x * 2.0, x + 1.0
    feeds = {"x": np.array([1.0, 2.0])}
    as_dict = gc.compile({"a": a, "b": b})(**feeds)
    assert isinstance(as_dict, dict) and list(as_dict) == ["a", "b"]
    as_list = gc.compile([b, a])(**feeds)
    assert isinstance(as_list, list) and len(as_list) == 2
    np.testing.assert_array_equal(as_list[0], [2.0, 3.0])
    single = gc.compile(a)(**feeds)
    assert isinstance(single, np.ndarray)
    np.testing.assert_array_equal(single, [2.0, 4.0])


def test_outputs_are_fresh_arrays():
    g = gc.Graph("fresh")
    w = g.param("w", np.arange(3.0))
    view = w.reshape(3, 1)
    out = gc.compile({"w": w, "view": view, "scaled": w * 1.0})()
    for value in out.values():
        value[...] = -7.0
    np.testing.assert_array_equal(g.state["w"], np.arange(3.0))
    c = g.const(np.ones(2))
    got = gc.compile(c)()
    got[0] = 5.0  # a constant's (read-only) array is not handed out either
    assert c.attrs["value"][0] == 1.0


# ------------------------------------------------------------------------------------------ updates


def test_updates_write_in_place():
    g = gc.Graph("inplace")
    w = g.param("w", np.zeros(3))
    array = g.state["w"]
    step = gc.compile(w.sum(), updates={w: w + 1.0})
    step()
    step()
    assert g.state["w"] is array
    np.testing.assert_array_equal(array, [2.0, 2.0, 2.0])


def test_updates_are_simultaneous():
    g = gc.Graph("swap")
    a = g.param("a", 1.0)
    b = g.param("b", 2.0)
    swap = gc.compile([a, b], updates={a: b, b: a})
    before = swap()
    assert [float(v) for v in before] == [1.0, 2.0]
    assert (float(g.state["a"]), float(g.state["b"])) == (2.0, 1.0)
    # views of state are also read before any write
    m = g.param("m", np.array([[1.0, 2.0], [3.0, 4.0]]))
    gc.compile(m, updates={m: m.T})()
    np.testing.assert_array_equal(g.state["m"], [[1.0, 3.0], [2.0, 4.0]])
    # values that read each other's old value
    p, q = g.param("p", 1.0), g.param("q", 10.0)
    gc.compile(p, updates=[(p, p + q), (q, p * q)])()
    assert (float(g.state["p"]), float(g.state["q"])) == (11.0, 10.0)


def test_output_of_an_updated_param_is_its_old_value():
    g = gc.Graph("old")
    w = g.param("w", np.zeros(2))
    prog = gc.compile({"w": w, "w_plus": w + 0.0}, updates={w: w + 1.0})
    first = prog()
    np.testing.assert_array_equal(first["w"], [0.0, 0.0])
    np.testing.assert_array_equal(first["w_plus"], [0.0, 0.0])
    np.testing.assert_array_equal(g.state["w"], [1.0, 1.0])


def test_update_errors():
    g = gc.Graph("upd")
    w = g.param("w", np.zeros(3))
    x = g.input("x", (3,))
    with pytest.raises(gc.GraphcError) as info:
        line = this_line() + 1
        gc.compile(w, updates={w: gc.cast(w, "float64")})
    message = str(info.value)
    assert "'w'" in message and "float32[3]" in message and "float64[3]" in message and f"{HERE}:{line}" in message
    with pytest.raises(gc.GraphcError, match="not a param"):
        gc.compile(w, updates={x: x + 1.0})
    with pytest.raises(gc.GraphcError, match="updated twice"):
        gc.compile(w, updates=[(w, w + 1.0), (w, w * 2.0)])
    with pytest.raises(gc.GraphcError, match="must be a tensor"):
        gc.compile(w, updates={w: 3.0})


def test_two_programs_from_one_graph_share_weights():
    g = gc.Graph("share")
    x = g.input("x", (2,))
    w = g.param("w", np.ones(2))
    train = gc.compile(gc.sum(x * w), updates={w: w * 2.0})
    infer = gc.compile(x * w)
    np.testing.assert_array_equal(infer(x=[1.0, 1.0]), [1.0, 1.0])
    train(x=[0.0, 0.0])
    train(x=[0.0, 0.0])
    np.testing.assert_array_equal(infer(x=[1.0, 1.0]), [4.0, 4.0])


def test_replaced_state_of_wrong_shape_or_dtype_is_a_clear_error():
    g = gc.Graph("replaced")
    w = g.param("w", np.ones((2, 3)))
    prog = gc.compile(w * 2.0)
    g.state["w"] = np.ones((3, 2), np.float32)
    expected = r"graph.state\['w'\] must be a float32\[2, 3\] array, found float32\[3, 2\]"
    with pytest.raises(gc.GraphcError, match=expected):
        prog()
    g.state["w"] = np.ones((2, 3), np.float64)
    with pytest.raises(gc.GraphcError, match="found float64"):
        prog()
    g.state["w"] = np.full((2, 3), 3.0, np.float32)  # a right-typed replacement is used
    np.testing.assert_array_equal(prog(), np.full((2, 3), 6.0))


# ------------------------------------------------------------------------------------------ check_grads


@pytest.fixture
def wrong_vjp_op():
    @register
    class WrongVjpTestOp(Op):
        """y = x³ elementwise, with a deliberately wrong VJP (3x instead of 3x²)."""

        name = "test_wrong_vjp"
        kind = "elementwise"
        arity = 1

        def infer(self, attrs, x):
            return x

        def reference(self, attrs, x):
            return x ** 3

        def vjp(self, node, g):
            return (fn.mul(g, fn.mul(node.inputs[0], 3.0)),)

    yield "test_wrong_vjp"
    del REGISTRY["test_wrong_vjp"]


def test_check_grads_catches_a_wrong_vjp_and_names_the_worst_element(wrong_vjp_op):
    g = gc.Graph("wrong")
    x = g.input("x", (2, 3), "float64")
    y = apply(wrong_vjp_op, x).sum()
    xv = np.array([[1.0, 0.5, 0.2], [2.0, 3.0, 1.0]])  # error |3x² - 3x| is worst at x = 3, index (1, 1)
    with pytest.raises(AssertionError) as info:
        gc.testing.check_grads(y, [x], {"x": xv})
    message = str(info.value)
    assert f"d{y.name}/dx at index (1, 1)" in message
    assert "analytic 9," in message and "finite difference 27" in message


def test_check_grads_passes_on_a_float32_graph():
    g = gc.Graph("f32")
    x = g.input("x", (3, 4))
    w = g.param("w", np.random.default_rng(0).standard_normal((4, 2)))
    loss = gc.mean(gc.sigmoid(x @ w) ** 2.0)
    assert loss.dtype == "float32"
    gc.testing.check_grads(loss, [x, w], {"x": np.random.default_rng(1).standard_normal((3, 4))},
                           rtol=1e-7, atol=1e-9)  # tight: only possible in float64
    assert g.state["w"].dtype == np.float32  # the user's state is untouched


def test_check_grads_rejects_unknown_feeds_and_non_leaves():
    g = gc.Graph("cg")
    x = g.input("x", (2,), "float64")
    y = (x * x).sum()
    with pytest.raises(gc.FeedError, match="'z'"):
        gc.testing.check_grads(y, [x], {"x": np.ones(2), "z": 1.0})
    with pytest.raises(gc.GraphcError, match="inputs or params"):
        gc.testing.check_grads(y, [x * 2.0], {"x": np.ones(2)})


def test_check_grads_fails_on_nan_finite_differences():
    g = gc.Graph("nan")
    x = g.input("x", (2,), "float64")
    y = gc.sqrt(x).sum()
    with pytest.raises(AssertionError, match="gradient check failed"):
        gc.testing.check_grads(y, [x], {"x": np.array([1.0, 0.0])})  # sqrt is not differentiable at 0
