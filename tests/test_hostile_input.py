"""Hostile input: values that do not fit, random graphs with huge, empty and overflowing shapes, and malformed
arguments must raise a GraphcError subclass naming the user's line — never a crash, a wrapped number or a raw
Python/NumPy exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc

HERE = "test_hostile_input.py:"


def test_uint64_feeds_beyond_int64_are_refused_and_small_ones_convert():
    g = gc.Graph("u")
    x = g.input("x", (2,), "int64")
    prog = gc.compile(x + 1)
    with pytest.raises(gc.FeedError, match="9223372036854775808 does not fit in int64"):
        prog(x=np.array([2**63, 1], np.uint64))
    np.testing.assert_array_equal(prog(x=np.array([5, 1], np.uint64)), [6, 2])


@pytest.mark.parametrize("make", [lambda g, x: g.const(np.array([2**64 - 1], np.uint64)),
                                  lambda g, x: x + np.uint64(2**63 + 5),
                                  lambda g, x: g.param("p", np.array([2**63], np.uint64))])
def test_uint64_constants_beyond_int64_are_refused_at_the_users_line(make):
    g = gc.Graph("u")
    x = g.input("x", (2,), "int64")
    with pytest.raises(gc.ShapeError, match=rf"does not fit in int64[\s\S]*{HERE}"):
        make(g, x)


DIMS = st.one_of(st.integers(0, 4), st.sampled_from([2**31, 2**40, 2**41, 2**62, 2**63 - 1, 2**64 + 3]))
SHAPES = st.lists(DIMS, min_size=0, max_size=4).map(tuple)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(shape=SHAPES, target=SHAPES, dtype=st.sampled_from(["float32", "float64", "int64", "bool"]),
       op=st.sampled_from(["input", "reshape", "broadcast_to", "one_hot", "sum", "transpose", "concat", "pad"]))
def test_random_shapes_build_or_fail_with_a_graphc_error_at_the_users_line(shape, target, dtype, op):
    g = gc.Graph("fuzz")
    try:
        x = g.input("x", shape, dtype)
        if op == "reshape":
            x.reshape(target)
        elif op == "broadcast_to":
            gc.broadcast_to(x, target)
        elif op == "one_hot":
            gc.one_hot(gc.cast(x, "int64"), target[0] if target else 3)
        elif op == "sum":
            gc.sum(x, axis=tuple(range(len(target))) or None)
        elif op == "transpose":
            gc.transpose(x)
        elif op == "concat":
            gc.concat([x, x], axis=0)
        elif op == "pad":
            gc.pad(x, [(d, d) for d in target[: len(shape)]] or 1)
    except gc.GraphcError as err:
        assert HERE in str(err), str(err)
        return
    # what was accepted is within the limits and compiles without native surprises
    for n in g.nodes:
        assert n.type.nbytes <= gc.ir.MAX_TENSOR_BYTES


def _user_mistakes(g: gc.Graph, x: gc.Tensor) -> dict:
    labels = g.input("labels", (2,), "int64")
    return {
        "axis as a float": lambda: gc.sum(x, axis=1.5),
        "axis as a string": lambda: gc.mean(x, axis="a"),
        "enormous pooling stride": lambda: gc.max_pool2d(x, 2, stride=2**70),
        "enormous pooling padding": lambda: gc.max_pool2d(x, 2, padding=2**62),
        "float in a permutation": lambda: gc.transpose(x, (0, 1.5, 2, 3)),
        "float depth": lambda: gc.one_hot(labels, 2.5),
        "float concat axis": lambda: gc.concat([x, x], axis=0.5),
        "float index": lambda: x[1.5],
        "tensor index": lambda: x[x],
        "string bound": lambda: gc.clip(x, "a"),
        "string slope": lambda: gc.leaky_relu(x, "a"),
        "string rate": lambda: gc.dropout(x, "a", True),
        "float softmax axis": lambda: gc.softmax(x, axis=1.5),
        "compile a number": lambda: gc.compile(3),
        "unknown backend": lambda: gc.compile(x, backend="gpu"),
        "gradient of a vector": lambda: gc.grad(x, [x]),
        "negative learning rate": lambda: gc.optim.SGD(-1.0),
        "render nothing": lambda: gc.render([]),
        "dump into a file": lambda: gc.compile(x * 2.0, backend="numpy", dump_dir=__file__),
        "state replaced by a list": lambda: (g.state.__setitem__("w", [1.0]), gc.compile(g.params["w"] * 1.0)()),
    }


@pytest.mark.parametrize("mistake", sorted(_user_mistakes(gc.Graph("names"), None)))
def test_user_mistakes_are_graphc_errors_naming_the_users_line(mistake):
    g = gc.Graph("mistakes")
    x = g.input("x", (1, 2, 5, 5))
    g.param("w", np.ones(3, np.float32))
    with pytest.raises(gc.GraphcError) as info:
        _user_mistakes(g, x)[mistake]()
    assert HERE in str(info.value), str(info.value)


def test_empty_batches_and_axes_behave_the_same_on_every_backend():
    """A batch of 0 images through conv, pooling and batch norm (and their gradients), softmax over an empty axis:
    every backend returns the same (empty or zero) results — none raises where another returns."""
    g = gc.Graph("empty")
    x = g.input("x", (0, 2, 5, 5))
    s = g.input("s", (4, 0))
    w = g.param("w", np.ones((3, 2, 3, 3), np.float32))
    stats = [g.param(name, np.ones(2, np.float32)) for name in ("gamma", "beta", "mean", "var")]
    loss = (gc.conv2d(x, w, padding=1).sum() + gc.max_pool2d(x, 2).sum() + gc.avg_pool2d(x, 2).sum()
            + gc.batch_norm(x, *stats, training=False).sum())
    outputs = {"loss": loss, "dw": gc.grad(loss, w), "softmax": gc.softmax(s, axis=1),
               "log_softmax": gc.log_softmax(s, axis=1), "sum": s.sum(axis=1)}
    feeds = {"x": np.zeros((0, 2, 5, 5), np.float32), "s": np.zeros((4, 0), np.float32)}
    results = {backend: gc.compile(outputs, backend=backend)(**feeds) for backend in ("numpy", "numpy-plan", "llvm")}
    for backend, got in results.items():
        for key, want in results["numpy"].items():
            assert got[key].shape == want.shape and got[key].dtype == want.dtype, (backend, key)
            np.testing.assert_array_equal(got[key], want, err_msg=f"{backend} {key}")
    assert results["numpy"]["dw"].shape == (3, 2, 3, 3) and not results["numpy"]["dw"].any()
