"""The issue's acceptance check: shape errors name both shapes and the user's file:line."""

import inspect

import numpy as np
import pytest

import graphc as gc

HERE = "test_errors.py"


def this_line() -> int:
    return inspect.currentframe().f_back.f_lineno


def test_matmul_shape_mismatch_names_both_shapes_and_this_line():
    g = gc.Graph("mm")
    a = g.input("a", (3, 4))
    b = g.input("b", (5, 6))
    with pytest.raises(gc.ShapeError) as info:
        line = this_line() + 1
        gc.matmul(a, b)
    message = str(info.value)
    assert "(3, 4)" in message and "(5, 6)" in message and "matmul" in message
    assert f"{HERE}:{line}" in message


def test_matmul_operator_shape_mismatch_names_this_line():
    g = gc.Graph("mm_op")
    a = g.input("a", (3, 4))
    w = g.param("w", np.zeros((5, 6)))
    with pytest.raises(gc.ShapeError) as info:
        line = this_line() + 1
        a @ w
    message = str(info.value)
    assert "(3, 4)" in message and "(5, 6)" in message and f"{HERE}:{line}" in message
    assert isinstance(info.value, ValueError)  # ShapeError is a ValueError too


@pytest.mark.parametrize("build", [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: gc.maximum(a, b),
                                   lambda a, b: b - a])
def test_broadcast_mismatch_names_both_shapes(build):
    g = gc.Graph("bc")
    a = g.input("a", (2, 3))
    b = g.input("b", (4,))
    with pytest.raises(gc.ShapeError) as info:
        build(a, b)
    message = str(info.value)
    assert "(2, 3)" in message and "(4,)" in message and "do not broadcast" in message
    assert HERE in message  # the lambda's line in this file


def test_errors_inside_user_helpers_point_at_the_helper_line():
    def dense(x, w):
        return x @ w  # the line a user would look at

    g = gc.Graph("helper")
    with pytest.raises(gc.ShapeError) as info:
        dense(g.input("x", (2, 3)), g.input("w", (4, 5)))
    helper_line = inspect.getsourcelines(dense)[1] + 1
    assert f"{HERE}:{helper_line}" in str(info.value)


def test_reshape_and_reduce_errors_name_shapes_and_line():
    g = gc.Graph("misc")
    x = g.input("x", (3, 4))
    with pytest.raises(gc.ShapeError) as info:
        line = this_line() + 1
        x.reshape(5, 2)
    assert "(3, 4)" in str(info.value) and "(5, 2)" in str(info.value) and f"{HERE}:{line}" in str(info.value)
    with pytest.raises(gc.ShapeError) as info:
        line = this_line() + 1
        x.sum(axis=2)
    assert "out of range" in str(info.value) and f"{HERE}:{line}" in str(info.value)
