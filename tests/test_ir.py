"""The IR core: TensorType, Node, Graph, creation sites, promotion of Python values, verify."""

import inspect

import numpy as np
import pytest

import graphc as gc
from graphc.ir import Attrs, TensorType

HERE = "test_ir.py"


def this_line() -> int:
    """The caller's line number."""
    return inspect.currentframe().f_back.f_lineno


# ------------------------------------------------------------------------------------------ TensorType


def test_tensor_type_normalizes_shape_and_reports_facts():
    t = TensorType([2, np.int64(3)], "float64")
    assert t.shape == (2, 3) and type(t.shape[1]) is int
    assert (t.ndim, t.size, t.nbytes, t.is_float) == (2, 6, 48, True)
    assert TensorType((), "int64").size == 1 and not TensorType((), "bool").is_float
    assert TensorType((2, 3)) == TensorType((2, 3), "float32")
    assert str(TensorType((2, 3), "int64")) == "int64[2, 3]"


@pytest.mark.parametrize("shape, message", [((2.5, 3), "not an int"), ((-1, 3), "negative"), ("34", "tuple of ints"),
                                            ((True, 2), "not an int"), (3, "tuple of ints")])
def test_tensor_type_rejects_bad_shapes(shape, message):
    with pytest.raises(gc.ShapeError, match=message):
        TensorType(shape)


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64", "foo"])
def test_tensor_type_rejects_unsupported_dtypes(dtype):
    with pytest.raises(gc.ShapeError, match="float32, float64, int64, bool"):
        TensorType((2,), dtype)


def test_graph_input_errors_name_input_and_site():
    g = gc.Graph("bad")
    with pytest.raises(gc.ShapeError) as info:
        line = this_line() + 1
        g.input("x", (2, -3))
    assert "'x'" in str(info.value) and f"{HERE}:{line}" in str(info.value)
    with pytest.raises(gc.ShapeError, match="unknown dtype 'floatish'"):
        g.input("y", (2,), "floatish")
    assert g.input("z", 4).shape == (4,)  # an int is a 1-d shape


# ------------------------------------------------------------------------------------------ nodes


def test_nodes_and_attrs_are_immutable():
    g = gc.Graph("imm")
    x = g.input("x", (2, 3))
    y = x.sum(axis=0)
    for attr in ("op", "name", "type", "inputs", "site", "backward"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(y, attr, None)
        with pytest.raises(AttributeError, match="immutable"):
            delattr(y, attr)
    with pytest.raises(AttributeError):
        y.attrs.foo = 1
    with pytest.raises(TypeError):
        y.attrs["axis"] = (1,)
    assert isinstance(y.attrs, Attrs) and y.attrs["axis"] == (0,)
    c = g.const(np.arange(3.0))
    with pytest.raises(ValueError):
        c.attrs["value"][0] = 5.0  # a constant's array is read-only


def test_symbolic_tensors_have_no_truth_value_and_are_not_iterable():
    g = gc.Graph("truth")
    x = g.input("x", (3,))
    with pytest.raises(gc.GraphcError, match="no truth value"):
        bool(x)
    with pytest.raises(gc.GraphcError, match="no truth value"):
        if x:  # ``if tensor:`` must fail loudly
            pass
    with pytest.raises(TypeError, match="cannot be iterated"):
        list(x)


def test_node_names_unique_and_duplicates_rejected():
    g = gc.Graph("names")
    x = g.input("x", (2,))
    with pytest.raises(gc.GraphcError, match="already has a node named 'x'"):
        g.input("x", (3,))
    with pytest.raises(gc.GraphcError, match="already has a node named 'x'"):
        g.param("x", np.zeros(2))
    assert "x" not in g.params and "x" not in g.state  # the failed param left no state behind
    g.input("add_1", (2,))  # a user name that looks like an automatic one
    nodes = [x + x for _ in range(5)]
    names = [n.name for n in g.nodes]
    assert len(names) == len(set(names)) and all(n.name != "add_1" for n in nodes)
    with pytest.raises(gc.GraphcError, match="non-empty string"):
        g.input("", (1,))


def test_creation_site_is_the_users_line_through_every_entry_point():
    g = gc.Graph("sites")
    x = g.input("x", (2, 3))
    w = g.param("w", np.ones((3, 2)))
    cases = []
    cases.append((x * 2.0, this_line()))
    cases.append((2.0 - x, this_line()))
    cases.append((x @ w, this_line()))
    cases.append((-x, this_line()))
    cases.append((x ** 2.0, this_line()))
    cases.append((x.T, this_line()))
    cases.append((x.sum(axis=1), this_line()))
    cases.append((x.mean(), this_line()))
    cases.append((x.reshape(3, 2), this_line()))
    cases.append((gc.tanh(x), this_line()))
    cases.append((g.const(1.0), this_line()))
    for node, line in cases:
        assert node.site.endswith(f"{HERE}:{line}"), (node, line)
    # operator overloads reach the user's line through ir.py and ops/ frames; the promoted constant too
    assert cases[0][0].inputs[1].op == "const" and cases[0][0].inputs[1].site == cases[0][0].site


def test_backward_nodes_get_the_site_of_the_grad_call():
    g = gc.Graph("bsite")
    x = g.input("x", (3,))
    y = (gc.sigmoid(x) * x).sum()
    before = len(g.nodes)
    (dx,) = gc.grad(y, [x]); line = this_line()  # noqa: E702
    created = g.nodes[before:]
    assert created and all(n.site.endswith(f"{HERE}:{line}") for n in created)
    assert dx.site.endswith(f"{HERE}:{line}")


# ------------------------------------------------------------------------------------------ graph leaves


def test_param_and_const_dtype_defaults():
    g = gc.Graph("leaves")
    assert g.param("pf", 1.5).dtype == "float32"
    assert g.param("pf64", np.ones(2, np.float64)).dtype == "float32"
    assert g.param("pi", 3).dtype == "int64"
    assert g.param("pi32", np.ones(2, np.int32)).dtype == "int64"
    assert g.param("pb", [True, False]).dtype == "bool"
    assert g.param("pd", [1, 2], dtype="float64").dtype == "float64"
    assert g.const(2.0).dtype == "float32" and g.const(2).dtype == "int64"
    assert g.input("i").type == TensorType((), "float32")
    with pytest.raises(gc.ShapeError, match="cannot make a tensor"):
        g.const("text")


def test_param_state_is_a_private_copy():
    g = gc.Graph("copy")
    value = np.arange(4.0, dtype=np.float32)
    p = g.param("p", value)
    value[0] = 100.0
    assert g.state["p"][0] == 0.0 and g.params["p"] is p
    with pytest.raises(gc.GraphcError, match="symbolic tensor"):
        g.param("q", p)


# ------------------------------------------------------------------------------------------ promotion


def test_python_scalars_and_arrays_take_the_tensors_dtype():
    g = gc.Graph("promote")
    x64 = g.input("x64", (3,), "float64")
    i = g.input("i", (3,), "int64")
    assert (x64 * 2).dtype == "float64" and (2.5 + x64).dtype == "float64"
    assert (x64 + np.ones(3, np.float32)).dtype == "float64"
    assert (i * 2).dtype == "int64" and (i * 2.0).dtype == "int64"  # 2.0 converts exactly
    x32 = g.input("x32", (3,))
    assert (x32 + np.ones(3)).dtype == "float32" and (x32 + np.arange(3)).dtype == "float32"


def test_numpy_array_on_the_left_builds_one_node():
    g = gc.Graph("left")
    x = g.input("x", (3,))
    for result in (np.ones(3) * x, np.float64(2.0) + x, np.arange(3.0) - x, np.ones((2, 3)) / x):
        assert isinstance(result, gc.Tensor) and result.dtype == "float32"
    assert (np.ones(3) * x).op == "mul" and (np.ones((2, 3)) / x).shape == (2, 3)


@pytest.mark.parametrize("value", [2.5, np.array([0.5, 1.0, 2.0])])
def test_lossy_promotion_is_rejected(value):
    g = gc.Graph("lossy")
    i = g.input("i", (3,), "int64")
    with pytest.raises(gc.ShapeError) as info:
        line = this_line() + 1
        i * value
    assert "lossy" in str(info.value) and f"{HERE}:{line}" in str(info.value)


def test_bool_condition_does_not_decide_the_branch_dtype():
    g = gc.Graph("where")
    c = g.input("c", (3,), "bool")
    assert gc.where(c, 1.0, 0.0).dtype == "float32"
    assert gc.where(c, 1, 0).dtype == "int64"
    assert gc.equal(c, False).dtype == "bool"


def test_integer_label_arrays_stay_class_indices():
    g = gc.Graph("labels")
    logits = g.input("logits", (3, 4))
    loss = gc.softmax_cross_entropy(logits, np.array([0, 3, 1]))
    assert loss.inputs[1].dtype == "int64"
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = -np.mean(np.log(p[[0, 1, 2], [0, 3, 1]]))
    np.testing.assert_allclose(gc.compile(loss)(logits=z), expected, rtol=1e-5)


def test_operands_from_two_graphs_are_rejected():
    a, b = gc.Graph("a"), gc.Graph("b")
    x, y = a.input("x", (2,)), b.input("y", (2,))
    with pytest.raises(gc.ShapeError) as info:
        line = this_line() + 1
        x + y
    assert "different graphs" in str(info.value) and "'a'" in str(info.value) and "'b'" in str(info.value)
    assert f"{HERE}:{line}" in str(info.value)


def test_bool_arithmetic_that_numpy_cannot_do_is_rejected_at_build_time():
    g = gc.Graph("bools")
    b = g.input("b", (2,), "bool")
    for build in (lambda: -b, lambda: b - b, lambda: gc.sign(b)):
        with pytest.raises(gc.ShapeError, match="bool"):
            build()


def test_transpose_axes_out_of_range_rejected():
    g = gc.Graph("tr")
    m = g.input("m", (2, 3))
    with pytest.raises(gc.ShapeError, match="out of range"):
        m.transpose(0, 5)
    assert m.transpose(-1, 0).shape == (3, 2)


# ------------------------------------------------------------------------------------------ verify


def test_verify_passes_on_built_graphs():
    g = gc.Graph("ok")
    x = g.input("x", (4, 3))
    w = g.param("w", np.ones((3, 2)))
    loss = gc.mean(gc.tanh(x @ w + 1.0) ** 2.0)
    gc.grad(loss, [w, x])
    assert gc.verify(g) is g


def test_verify_catches_a_wrong_type():
    g = gc.Graph("corrupt")
    x = g.input("x", (2, 3))
    g.add_node("sum", (x,), {"axis": (0,), "keepdims": False}, TensorType((2,), "float32"), name="bad_sum")
    with pytest.raises(gc.GraphcError) as info:
        gc.verify(g)
    message = str(info.value)
    assert "bad_sum" in message and "float32[2]" in message and "float32[3]" in message
    assert HERE in message  # the bad node's creation site


def test_verify_catches_unknown_ops_wrong_arity_and_missing_state():
    g = gc.Graph("corrupt2")
    x = g.input("x", (2,))
    g.add_node("no_such_op", (x,), {}, TensorType((2,)), name="mystery")
    g.add_node("add", (x,), {}, TensorType((2,)), name="half_add")
    p = g.param("p", np.zeros(2))
    del g.state[p.name]
    with pytest.raises(gc.GraphcError) as info:
        gc.verify(g)
    message = str(info.value)
    assert "mystery" in message and "unknown op" in message
    assert "half_add" in message and "1 operands" in message
    assert "graph.state['p']" in message


@pytest.mark.parametrize("value", [np.arange(15, dtype=np.float32).reshape(3, 5), np.float64(2.5), np.zeros((0, 4)),
                                   np.arange(7), np.array([True, False])])
def test_param_state_is_a_cache_line_aligned_copy(value):
    """Kernels write state in place with vector stores (a GEMM adding SGD's step onto a weight): every param's
    state array starts on a 64-byte boundary, holds the value, and is the graph's own copy."""
    g = gc.Graph("aligned")
    g.param("p", value)
    state = g.state["p"]
    assert (state.size == 0 or state.ctypes.data % 64 == 0) and state.flags.c_contiguous and state.flags.writeable
    np.testing.assert_array_equal(state, value)
    assert not np.shares_memory(state, value)
