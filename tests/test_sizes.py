"""Sizes are exact and bounded: no element count wraps, no tensor or arena beyond the documented limit reaches native
code, and each refusal is a ShapeError/GraphcError naming the user's line."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ir import MAX_TENSOR_BYTES, TensorType

HERE = "test_sizes.py:"


@pytest.mark.parametrize("shape, dtype", [((2**62,), "bool"), ((3, 2**62), "float32"), ((2**40 + 1,), "bool"),
                                          ((2**20, 2**20, 2), "float32"), ((0, 2**41), "float32")])
def test_types_beyond_the_limit_are_refused(shape, dtype):
    with pytest.raises(gc.ShapeError, match="larger than graphc's limit"):
        TensorType(shape, dtype)


def test_sizes_are_exact_python_ints():
    t = TensorType((2**20, 2**18), "float32")  # 2^38 elements, 1 TiB exactly
    assert t.size == 2**38 and t.nbytes == MAX_TENSOR_BYTES and type(t.size) is int


def test_one_hot_with_an_enormous_depth_is_a_shape_error_at_the_users_line():
    g = gc.Graph("oh")
    k = g.input("k", (3,), "int64")
    with pytest.raises(gc.ShapeError, match=rf"one_hot\(int64\[3\]\).*limit[\s\S]*{HERE}"):
        gc.one_hot(k, 2**62)


@pytest.mark.parametrize("shape", [(7, 0x6DB6DB6DB6DB6DB7), (2**33, 2**31 + 1), (-1, 2**64 + 7)])
def test_reshape_to_a_wrapping_shape_is_refused(shape):
    g = gc.Graph("r")
    x = g.input("x", (7,))
    with pytest.raises(gc.ShapeError, match=HERE):
        x.reshape(*shape)


def test_input_beyond_the_limit_names_the_input_and_the_line():
    g = gc.Graph("i")
    with pytest.raises(gc.ShapeError, match=rf"input 'big'.*limit[\s\S]*{HERE}"):
        g.input("big", (2**30, 2**30))


def test_arena_beyond_the_limit_is_a_clear_error_before_any_allocation(monkeypatch):
    import runtime.program as program

    monkeypatch.setattr(program, "MAX_ARENA_BYTES", 1 << 12)  # the plan needs 32 KiB
    g = gc.Graph("a")
    x = g.input("x", (64, 64))
    y = gc.tanh(x @ x) @ x
    for backend in ("numpy-plan", "llvm"):
        with pytest.raises(gc.GraphcError, match=rf"arena of \d+ bytes is more than graphc's limit.*{HERE}"):
            gc.compile(y, backend=backend)


def test_out_of_memory_arena_is_a_graphc_error(monkeypatch):
    import runtime.program as program

    def no_memory(*args, **kwargs):
        raise MemoryError

    g = gc.Graph("m")
    x = g.input("x", (8, 8))
    y = gc.exp(x @ x)
    monkeypatch.setattr(program.np, "zeros", no_memory)
    with pytest.raises(gc.GraphcError, match="cannot allocate the program's arena.*out of memory"):
        gc.compile(y, backend="numpy-plan")


def test_huge_zero_size_dimensions_are_refused_but_empty_tensors_work():
    g = gc.Graph("z")
    x = g.input("x", (0, 5))
    y = (x * 2.0).sum(axis=0)
    np.testing.assert_array_equal(gc.compile(y)(x=np.zeros((0, 5), np.float32)), np.zeros(5, np.float32))
    with pytest.raises(gc.ShapeError, match="limit"):
        g.input("w", (0, 2**50))
