"""Fusion rules beyond plain elementwise chains: inference batch norm as elementwise math (passes.decompose),
unit-axis reshapes read in place, and epilogues (batch_norm / conv2d / matmul + elementwise chain)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from passes.pipeline import build_plan


def _bn_params(g: gc.Graph, c: int, rng: np.random.Generator) -> list:
    arrays = (rng.random(c) + 0.5, rng.standard_normal(c), rng.standard_normal(c) * 0.3, rng.random(c) + 0.5)
    return [g.param(name, a.astype(np.float32)) for name, a in zip(("gamma", "beta", "mean", "var"), arrays)]


def _check(outputs: dict, feeds: dict, backends=("numpy-plan", "llvm"), updates=None) -> None:
    want = gc.compile(outputs, backend="numpy", updates=updates)(**feeds)
    for backend in backends:
        got = gc.compile(outputs, backend=backend, updates=updates)(**feeds)
        for key in want:
            scale = max(1.0, float(np.max(np.abs(want[key]))))
            np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-6 * scale, err_msg=f"{backend} {key}")


@pytest.mark.parametrize("shape", [(16, 5), (2, 3, 4, 5)])
def test_inference_batch_norm_relu_is_one_pass_and_matches_interpreter(shape):
    rng = np.random.default_rng(0)
    g = gc.Graph("bn")
    x = g.input("x", shape)
    params = _bn_params(g, shape[1], rng)
    y = gc.relu(gc.batch_norm(x, *params, training=False))
    feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
    _check({"y": y}, feeds)
    plan = build_plan([y], [])
    # before: batch_norm, relu (two passes over x's shape); after: the (C,) scale, then one fused pass
    assert [[n.op for n in k.nodes if n.op != "reshape"] for k in plan.kernels] == [
        ["add", "sqrt", "div"], ["sub", "mul", "add", "relu"]]
    assert plan.kernels[1].kind == "broadcast"
    assert any(line.startswith("inference batch_norm") for line in plan.report["decompose"])
    if len(shape) > 2:
        assert any("unit-axis reshapes read in place" in line for line in plan.report["fusion"])


def test_inference_batch_norm_reads_the_current_params_on_every_call():
    rng = np.random.default_rng(1)
    g = gc.Graph("bn_state")
    x = g.input("x", (8, 4, 3, 3))
    params = _bn_params(g, 4, rng)
    y = gc.relu(gc.batch_norm(x, *params, training=False))
    feeds = {"x": rng.standard_normal((8, 4, 3, 3)).astype(np.float32)}
    programs = [gc.compile({"y": y}, backend=b) for b in ("numpy", "llvm")]
    first = [p(**feeds)["y"] for p in programs]
    for name in ("gamma", "beta", "mean", "var"):
        g.state[name][...] = (rng.random(4) + 0.5).astype(np.float32)
    second = [p(**feeds)["y"] for p in programs]
    assert not np.allclose(first[0], second[0])
    np.testing.assert_allclose(second[1], second[0], rtol=2e-5, atol=1e-6)


def test_dense_bias_inference_batch_norm_relu_fuse_into_one_elementwise_kernel():
    rng = np.random.default_rng(2)
    g = gc.Graph("dense_bn")
    x = g.input("x", (32, 12))
    w = g.param("w", rng.standard_normal((12, 6)).astype(np.float32))
    b = g.param("b", rng.standard_normal(6).astype(np.float32))
    y = gc.relu(gc.batch_norm(x @ w + b, *_bn_params(g, 6, rng), training=False))
    _check({"y": y}, {"x": rng.standard_normal((32, 12)).astype(np.float32)})
    ops = [[n.op for n in k.nodes] for k in build_plan([y], []).kernels]
    assert ["add", "sub", "mul", "add", "relu"] in [o[-5:] for o in ops]
    assert not any("batch_norm" in o for o in ops)


def test_inference_batch_norm_backward_matches_interpreter():
    rng = np.random.default_rng(3)
    g = gc.Graph("bn_grad")
    x = g.input("x", (6, 3, 2, 2))
    params = _bn_params(g, 3, rng)
    loss = gc.sum(gc.relu(gc.batch_norm(x, *params, training=False)) * 1.5)
    grads = gc.grad(loss, [x, *params])
    _check({"loss": loss, **{f"d{i}": d for i, d in enumerate(grads)}},
           {"x": rng.standard_normal((6, 3, 2, 2)).astype(np.float32)})
