"""Epilogue fusion (passes.fuse + codegen.epilogue): an elementwise chain applied by the batch_norm (training),
conv2d and matmul lowerers before the store — values vs the NumPy interpreter, forward, backward and a step."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def _compare(outputs: dict, feeds: dict, updates=None) -> None:
    want = gc.compile(outputs, backend="numpy", updates=updates)(**feeds)
    got = gc.compile(outputs, backend="llvm", updates=updates)(**feeds)
    for key in want:
        scale = max(1.0, float(np.max(np.abs(want[key]))))
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-5 * scale, err_msg=key)


def _epilogue_kernel(outputs: list, anchor: str):
    kernels = gc.compile(outputs, backend="numpy-plan").plan.kernels
    return next(k for k in kernels if any(n.op == anchor for n in k.nodes))


def _bn(g: gc.Graph, c: int, rng: np.random.Generator) -> list:
    arrays = (rng.random(c) + 0.5, rng.standard_normal(c), np.zeros(c), np.ones(c))
    return [g.param(name, a.astype(np.float32), trainable=name in ("gamma", "beta"))
            for name, a in zip(("gamma", "beta", "mean", "var"), arrays)]


@pytest.mark.parametrize("shape", [(12, 5), (4, 3, 5, 6)])
def test_training_batch_norm_relu_forward_and_backward(shape):
    rng = np.random.default_rng(0)
    g = gc.Graph("bn_relu")
    x = g.input("x", shape)
    params = _bn(g, shape[1], rng)
    y = gc.relu(gc.batch_norm(x, *params, training=True))
    k = _epilogue_kernel([y], "batch_norm")
    assert [n.op for n in k.nodes] == ["batch_norm", "relu"] and k.kind == "opaque"
    feeds = {"x": (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)}
    _compare({"y": y}, feeds)
    loss = gc.sum(y * rng.standard_normal(shape).astype(np.float32))
    grads = gc.grad(loss, [x, params[0], params[1]])
    _compare({"loss": loss, "dx": grads[0], "dg": grads[1], "db": grads[2]}, feeds)


def test_training_batch_norm_epilogue_with_a_per_channel_input():
    rng = np.random.default_rng(1)
    g = gc.Graph("bn_scale")
    x = g.input("x", (6, 4, 3, 3))
    s = g.param("s", rng.standard_normal(4).astype(np.float32))
    y = gc.tanh(gc.batch_norm(x, *_bn(g, 4, rng), training=True) * gc.reshape(s, (4, 1, 1)) + 0.25)
    k = _epilogue_kernel([y], "batch_norm")
    assert [n.op for n in k.nodes] == ["batch_norm", "reshape", "mul", "add", "tanh"]
    _compare({"y": y}, {"x": rng.standard_normal((6, 4, 3, 3)).astype(np.float32)})


@pytest.mark.parametrize("bias_mode", ["conv_bias", "reshaped_add", "none"])
def test_conv_bias_relu_epilogue(bias_mode):
    rng = np.random.default_rng(2)
    g = gc.Graph("conv_relu")
    x = g.input("x", (3, 2, 7, 6))
    w = g.param("w", rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    b = g.param("b", rng.standard_normal(4).astype(np.float32))
    if bias_mode == "conv_bias":
        y = gc.relu(gc.conv2d(x, w, b, padding=1))
    elif bias_mode == "reshaped_add":
        y = gc.relu(gc.conv2d(x, w, padding=1) + gc.reshape(b, (4, 1, 1)))
    else:
        y = gc.relu(gc.conv2d(x, w, stride=2))
    k = _epilogue_kernel([y], "conv2d")
    assert k.kind == "conv" and "relu" in [n.op for n in k.nodes]
    feeds = {"x": rng.standard_normal((3, 2, 7, 6)).astype(np.float32)}
    _compare({"y": y}, feeds)
    loss = gc.sum(y * y)
    _compare({"loss": loss, **{f"d{i}": d for i, d in enumerate(gc.grad(loss, [x, w, b] if bias_mode != "none"
                                                                         else [x, w]))}}, feeds)


def test_conv_output_also_read_elsewhere_is_stored_too():
    rng = np.random.default_rng(3)
    g = gc.Graph("conv_two")
    x = g.input("x", (2, 1, 6, 6))
    w = g.param("w", rng.standard_normal((3, 1, 3, 3)).astype(np.float32))
    c = gc.conv2d(x, w, padding=1)
    y = gc.relu(c)
    k = _epilogue_kernel([y, c], "conv2d")
    assert sorted(n.op for n in k.outputs) == ["conv2d", "relu"]  # both stored by the one kernel
    _compare({"y": y, "c": c, "s": gc.sum(c, axis=0)}, {"x": rng.standard_normal((2, 1, 6, 6)).astype(np.float32)})


def _mlp(rng: np.random.Generator):
    g = gc.Graph("mlp")
    x, labels = g.input("x", (16, 12)), g.input("y", (16,), "int64")
    w1 = g.param("w1", (rng.standard_normal((12, 20)) * 0.3).astype(np.float32))
    b1 = g.param("b1", rng.standard_normal(20).astype(np.float32))
    w2 = g.param("w2", (rng.standard_normal((20, 5)) * 0.3).astype(np.float32))
    b2 = g.param("b2", rng.standard_normal(5).astype(np.float32))
    logits = gc.relu(x @ w1 + b1) @ w2 + b2
    feeds = {"x": rng.standard_normal((16, 12)).astype(np.float32), "y": rng.integers(0, 5, 16)}
    return g, logits, gc.softmax_cross_entropy(logits, labels), [w1, b1, w2, b2], feeds


def test_matmul_bias_relu_epilogue_forward_backward_and_step():
    rng = np.random.default_rng(4)
    g, logits, loss, params, feeds = _mlp(rng)
    k = _epilogue_kernel([logits], "matmul")
    assert k.kind == "matmul" and [n.op for n in k.nodes][-2:] in (["add", "relu"], ["matmul", "add"])
    report = gc.compile([logits], backend="numpy-plan").plan.report["fusion"]
    assert any("matmul epilogue: add, relu" in line for line in report)
    _compare({"logits": logits}, feeds)
    grads = gc.grad(loss, params)
    _compare({"loss": loss, **{f"d{i}": d for i, d in enumerate(grads)}}, feeds)
    before = {k_: v.copy() for k_, v in g.state.items()}
    updates = gc.optim.SGD(0.1).minimize(loss)
    want = gc.compile({"loss": loss}, backend="numpy", updates=updates)
    got = gc.compile({"loss": loss}, backend="llvm", updates=updates)
    losses = []
    for program in (want, got):
        for k_, v in before.items():
            g.state[k_][...] = v
        losses.append([float(program(**feeds)["loss"]) for _ in range(3)])
        losses.append({k_: v.copy() for k_, v in g.state.items()})
    np.testing.assert_allclose(losses[2], losses[0], rtol=1e-5)
    for k_ in before:
        np.testing.assert_allclose(losses[3][k_], losses[1][k_], rtol=1e-4, atol=1e-5)


def test_matmul_epilogue_keeps_vector_fmas():
    rng = np.random.default_rng(5)
    _, logits, _, _, feeds = _mlp(rng)
    program = gc.compile({"logits": logits}, backend="llvm")
    asm = program.asm()
    assert "vfmadd" in asm and "ymm" in asm
