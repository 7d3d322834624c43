"""Kernels with equal signatures share one LLVM function; anything that changes the code keeps them apart."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from codegen.module import build_module
from passes.pipeline import build_plan


def functions_of(outputs) -> tuple[int, int]:
    """(kernels in the plan, distinct kernel functions in the module)."""
    plan = build_plan(list(outputs), [])
    module = build_module(plan)
    return len(plan.kernels), len(set(module.kernel_functions.values()))


def test_repeated_fused_groups_share_one_function_and_compute_the_same():
    g = gc.Graph("chain")
    y = g.input("x", (256,))
    for _ in range(200):  # 200 tanh: 5 fused groups of 40 (the cost budget), identical
        y = gc.tanh(y)
    kernels, functions = functions_of([y])
    # the middle three overwrite their input in place (one signature); the first reads the bound feed and the
    # last writes the fresh output array, neither in place (the other)
    assert kernels == 5 and functions == 2
    feeds = {"x": np.linspace(-2, 2, 256).astype(np.float32)}
    np.testing.assert_allclose(gc.compile(y)(**feeds), gc.compile(y, backend="numpy")(**feeds), rtol=1e-5, atol=1e-6)


def test_different_constants_shapes_or_ops_keep_functions_apart():
    g = gc.Graph("apart")
    x = g.input("x", (8, 4))
    a = gc.exp(x * 2.0)
    b = gc.exp(x * 3.0)               # another embedded constant
    c = gc.exp(x[:4] * 2.0)           # another shape
    d = gc.tanh(x * 2.0)              # another op
    kernels, functions = functions_of([a, b, c, d])
    assert functions == kernels


def test_same_structure_twice_shares_even_across_a_matmul():
    g = gc.Graph("blocks")
    x = g.input("x", (16, 8))
    w1, w2 = g.param("w1", np.eye(8, dtype=np.float32)), g.param("w2", np.eye(8, dtype=np.float32) * 2)
    h = gc.relu(x @ w1)
    y = gc.relu(h @ w2)               # the same matmul + relu epilogue on equal shapes
    kernels, functions = functions_of([y])
    assert kernels == 2 and functions == 1
    feeds = {"x": np.arange(128, dtype=np.float32).reshape(16, 8) - 60}
    np.testing.assert_allclose(gc.compile(y)(**feeds), gc.compile(y, backend="numpy")(**feeds))


def test_kernels_that_report_errors_are_never_shared():
    """A label check stores a status code naming its node, so two equal loss kernels keep their own code."""
    g = gc.Graph("losses")
    z = g.input("z", (4, 3))
    la, lb = g.input("la", (4,), "int64"), g.input("lb", (4,), "int64")
    first, second = gc.softmax_cross_entropy(z, la), gc.softmax_cross_entropy(z * 1.0 + 0.0, lb)
    kernels, functions = functions_of([first, second])
    assert functions == kernels
    prog = gc.compile({"first": first, "second": second})
    with pytest.raises(gc.GraphcError, match=rf"{second.name}.*outside \[0, 3\)"):
        prog(z=np.zeros((4, 3), np.float32), la=np.array([0, 1, 2, 0]), lb=np.array([0, 5, 2, 0]))


def test_frozen_weights_do_not_keep_functions_apart():
    """A frozen network's weights are constants of different values; only a single-element constant is baked into
    code, so two equal conv blocks still share one function (frozen ResNet-50 compiled twice as slowly before)."""
    g = gc.Graph("frozen_blocks")
    x = g.input("x", (1, 4, 6, 6))
    rng = np.random.default_rng(0)
    w1, w2 = (g.const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32)) for _ in range(2))
    h = gc.relu(gc.conv2d(x, w1, padding=1))
    y = gc.relu(gc.conv2d(h, w2, padding=1))
    kernels, functions = functions_of([y])
    assert functions < kernels
    feeds = {"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32)}
    np.testing.assert_allclose(gc.compile(y)(**feeds), gc.compile(y, backend="numpy")(**feeds), rtol=1e-5, atol=1e-5)
