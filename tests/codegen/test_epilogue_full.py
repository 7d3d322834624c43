"""Epilogues that read a tensor of the anchor's own shape (ResNet's residual add, read at the output's flat
offset): fused into every anchor kind and conv algorithm, and equal to the interpreter."""

import numpy as np
import pytest

import graphc as gc


def _ops(prog) -> list[list[str]]:
    return [list(info["ops"]) for info in prog.kernels_info()]


def _agree(y, feeds, rtol=1e-5):
    prog = gc.compile(y, backend="llvm")
    got = prog(**feeds)
    want = gc.compile(y, backend="numpy")(**feeds)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-5)
    return prog


@pytest.mark.parametrize("algorithm, shape, kernel, groups, stride", [
    ("im2col", (2, 8, 9, 7), 3, 1, 1),        # im2col + GEMM
    ("auto", (1, 16, 7, 7), 3, 1, 1),         # few positions: the transposed forward
    ("auto", (2, 12, 10, 10), 1, 1, 1),       # pointwise: a GEMM on x
    ("auto", (1, 32, 12, 11), 3, 32, 1),      # depthwise: channel blocks
    ("direct", (2, 6, 9, 8), 3, 3, 1),        # grouped, direct padded planes
    ("im2col", (2, 8, 9, 7), 3, 1, 2),        # strided
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_residual_epilogue(algorithm, shape, kernel, groups, stride, dtype, rng):
    n, c, h, w = shape
    g = gc.Graph("residual")
    x = g.input("x", shape, dtype)
    weight = g.param("w", rng.standard_normal((c, c // groups, kernel, kernel)) * 0.3, dtype=dtype)
    bias = g.param("b", rng.standard_normal(c), dtype=dtype)
    pad = kernel // 2
    y = gc.conv2d(x, weight, bias, stride=stride, padding=pad, groups=groups, algorithm=algorithm)
    skip = g.input("skip", y.shape, dtype)
    out = gc.relu(y + skip) * 2.0
    feeds = {"x": rng.standard_normal(shape).astype(dtype), "skip": rng.standard_normal(y.shape).astype(dtype)}
    prog = _agree(out, feeds, rtol=1e-5 if dtype == "float32" else 1e-12)
    assert len(_ops(prog)) == 1, _ops(prog)


def test_matmul_and_batch_norm_residual_epilogues(rng):
    g = gc.Graph("mm_bn")
    x = g.input("x", (6, 5))
    w = g.param("w", rng.standard_normal((5, 7)))
    r = g.input("r", (6, 7))
    y = gc.tanh(gc.matmul(x, w) + r)
    feeds = {"x": rng.standard_normal((6, 5)).astype(np.float32), "r": rng.standard_normal((6, 7)).astype(np.float32)}
    assert len(_ops(_agree(y, feeds))) == 1


def test_residual_block_trains_like_the_interpreter(rng):
    """Forward and backward through conv → +skip → relu: gradients of both backends agree (float64)."""
    g = gc.Graph("block")
    x = g.input("x", (2, 4, 6, 6), "float64")
    w = g.param("w", rng.standard_normal((4, 4, 3, 3)) * 0.3, dtype="float64")
    loss = gc.sum(gc.relu(gc.conv2d(x, w, padding=1) + x) ** 2)
    grad = gc.grad(loss, [w])[0]
    feeds = {"x": rng.standard_normal((2, 4, 6, 6))}
    np.testing.assert_allclose(gc.compile(grad, backend="llvm")(**feeds),
                               gc.compile(grad, backend="numpy")(**feeds), rtol=1e-11)


def test_an_updated_param_is_not_read_by_an_epilogue(rng):
    """Momentum SGD's v·μ - lr·dw reads the velocity it updates: it stays its own elementwise kernel (which may then
    write the state in place); the fusion report says why. (Plain SGD's step is the one exception: the GEMM adds it
    onto the weight, tests/passes/test_gradient_step.py.)"""
    g = gc.Graph("sgd")
    x = g.input("x", (8, 5))
    w = g.param("w", rng.standard_normal((5, 3)))
    loss = gc.sum(gc.matmul(x, w) ** 2)
    prog = gc.compile({"loss": loss}, updates=gc.optim.SGD(0.1, momentum=0.9).minimize(loss), backend="llvm")
    assert "that this program updates" in "\n".join(prog.plan.report["fusion"])
    before = g.state["w"].copy()
    feeds = {"x": rng.standard_normal((8, 5)).astype(np.float32)}
    prog(**feeds)
    want = before - 0.1 * (2 * feeds["x"].T @ (feeds["x"] @ before))
    np.testing.assert_allclose(g.state["w"], want, rtol=1e-4, atol=1e-5)
