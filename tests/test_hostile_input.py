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
