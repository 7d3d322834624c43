"""Property tests (hypothesis): broadcasting binary ops, reductions and shape round trips on random shapes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc

FAST = settings(max_examples=30, deadline=None)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast together: drop leading axes of a common shape and set some axes to 1."""
    full = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))
    shapes = []
    for _ in range(2):
        lead = draw(st.integers(0, len(full)))
        shapes.append(tuple(1 if draw(st.booleans()) else d for d in full[lead:]))
    return shapes[0], shapes[1]


@st.composite
def reduce_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    mode = draw(st.sampled_from(["none", "int", "tuple"]))
    if mode == "none":
        axis = None
    elif mode == "int":
        axis = draw(st.integers(-len(shape), len(shape) - 1))
    else:
        axis = tuple(draw(st.sets(st.integers(0, len(shape) - 1), max_size=len(shape))))
    return shape, axis, draw(st.booleans())


OPS = {"add": (gc.add, np.add), "sub": (gc.sub, np.subtract), "mul": (gc.mul, np.multiply),
       "div": (gc.div, np.divide), "maximum": (gc.maximum, np.maximum)}


@FAST
@given(shapes=broadcast_pair(), op=st.sampled_from(sorted(OPS)), seed=st.integers(0, 2 ** 16))
def test_broadcasting_binary_ops_values_and_gradients(shapes, op, seed):
    builder, reference = OPS[op]
    rng = np.random.default_rng(seed)
    g = gc.Graph("prop_binary")
    a = g.input("a", shapes[0], "float64")
    b = g.input("b", shapes[1], "float64")
    feeds = {"a": rng.standard_normal(shapes[0]), "b": rng.standard_normal(shapes[1])}
    if op == "div":
        feeds["b"] = np.sign(feeds["b"]) * (np.abs(feeds["b"]) + 0.5)
    out = builder(a, b)
    expected = reference(feeds["a"], feeds["b"])
    assert out.shape == expected.shape
    np.testing.assert_allclose(gc.compile(out)(**feeds), expected, rtol=1e-12)
    weights = rng.standard_normal(out.shape)
    gc.testing.check_grads((out * weights).sum(), [a, b], feeds)


@FAST
@given(case=reduce_case(), op=st.sampled_from(["sum", "mean", "max"]), seed=st.integers(0, 2 ** 16))
def test_reductions_match_numpy_and_finite_differences(case, op, seed):
    shape, axis, keepdims = case
    rng = np.random.default_rng(seed)
    g = gc.Graph("prop_reduce")
    x = g.input("x", shape, "float64")
    xv = rng.permutation(np.arange(int(np.prod(shape)), dtype=np.float64)).reshape(shape) * 0.1  # no ties
    out = getattr(gc, op)(x, axis=axis, keepdims=keepdims)
    expected = getattr(np, op)(xv, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(gc.compile(out)(x=xv), expected, rtol=1e-12)
    weights = rng.standard_normal(out.shape)
    gc.testing.check_grads((out * weights).sum(), [x], {"x": xv})


@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data())
def test_reshape_and_transpose_round_trips(shape, data):
    shape = tuple(shape)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    g = gc.Graph("prop_shape")
    x = g.input("x", shape, "float64")
    moved = x.transpose(perm)
    back = moved.transpose(tuple(int(i) for i in np.argsort(perm)))
    flat = x.reshape(-1)
    again = flat.reshape(shape)
    assert moved.shape == tuple(shape[i] for i in perm) and back.shape == shape and again.shape == shape
    xv = np.random.default_rng(len(shape)).standard_normal(shape)
    got_moved, got_back, got_again = gc.compile([moved, back, again])(x=xv)
    np.testing.assert_array_equal(got_moved, np.transpose(xv, perm))
    np.testing.assert_array_equal(got_back, xv)
    np.testing.assert_array_equal(got_again, xv)
    weights = np.random.default_rng(1).standard_normal(moved.shape)
    (dx,) = gc.grad((moved * weights).sum(), [x])
    np.testing.assert_array_equal(gc.compile(dx)(x=xv), np.transpose(weights, np.argsort(perm)))
