"""Plain SGD's step fused into the weight-gradient GEMM (``passes.plan.gradient_step``): the update joins the matmul's
kernel, is written into the weight's state in place, and the compiled steps agree with the NumPy interpreter — with
the learning rate a constant (embedded) or state (read at run time), over one or several GEMM depth blocks, on one
and two threads, and when the weight cannot be updated in place (it is also an output: copied first)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from passes.plan import gradient_step

DIMS = (40, 24, 5)


def _mlp(backend: str, batch: int, make_updates, outputs=None, threads: int = 1):
    rng = np.random.default_rng(0)
    g = gc.Graph("sgd_gemm")
    x, y = g.input("x", (batch, DIMS[0])), g.input("y", (batch,), "int64")
    w1 = g.param("w1", rng.standard_normal(DIMS[:2]).astype(np.float32) * 0.3)
    b1 = g.param("b1", np.zeros(DIMS[1], np.float32))
    w2 = g.param("w2", rng.standard_normal(DIMS[1:]).astype(np.float32) * 0.3)
    loss = gc.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2, y)
    outs = {"loss": loss, **(outputs(g) if outputs else {})}
    return g, gc.compile(outs, updates=make_updates(g, loss), backend=backend, threads=threads)


def _optimizer(g, loss):
    return gc.optim.SGD(0.05).minimize(loss)


def _constant_lr(g, loss):  # p − g·0.05 with the rate a graph constant (embedded in the GEMM)
    params = [g.params[k] for k in ("w1", "b1", "w2")]
    return {p: p - dp * 0.05 for p, dp in zip(params, gc.grad(loss, params))}


def _train(backend, batch, make_updates, outputs=None, threads=1, steps=3):
    g, prog = _mlp(backend, batch, make_updates, outputs, threads)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((batch, DIMS[0])).astype(np.float32), "y": rng.integers(0, DIMS[-1], batch)}
    results = [prog(**feeds) for _ in range(steps)]
    return g, prog, results


def _fused_weights(prog) -> set[str]:
    """Names of the params whose SGD step runs inside a matmul kernel."""
    found = set()
    for k in prog.plan.kernels:
        if k.anchor is not None and k.anchor.op == "matmul":
            step = gradient_step(k.anchor, [n for n in k.nodes if n.op in ("mul", "sub")])
            if step is not None and step.value in k.outputs:
                found.add(step.param.name)
    return found


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [16, 300])  # the weight gradients' depth: one GEMM depth block, or two
@pytest.mark.parametrize("make_updates", [_optimizer, _constant_lr], ids=["lr-state", "lr-constant"])
def test_sgd_step_runs_in_the_gradient_gemm_and_agrees(make_updates, batch, threads):
    g, prog, got = _train("llvm", batch, make_updates, threads=threads)
    ref_g, _, want = _train("numpy", batch, make_updates)
    assert _fused_weights(prog) == {"w1", "w2"}
    assert {"w1", "w2"} <= {p.name for p in prog.plan.state_inplace}
    # no kernel of its own subtracts a step from a weight any more
    assert not any(k.anchor is None and any(n.op == "sub" and n.shape in (DIMS[:2], DIMS[1:]) for n in k.nodes)
                   for k in prog.plan.kernels)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    for name in ("w1", "b1", "w2"):
        np.testing.assert_allclose(g.state[name], ref_g.state[name], rtol=1e-5, atol=1e-6)


def test_a_weight_that_is_also_an_output_is_copied_then_stepped():
    outputs = lambda g: {"w1_before": g.params["w1"] * 1.0}  # noqa: E731
    g, prog, got = _train("llvm", 16, _constant_lr, outputs)
    ref_g, _, want = _train("numpy", 16, _constant_lr, outputs)
    assert "w1" in _fused_weights(prog) and "w1" not in {p.name for p in prog.plan.state_inplace}
    for a, b in zip(got, want):
        np.testing.assert_allclose(a["w1_before"], b["w1_before"], rtol=1e-6)
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    np.testing.assert_allclose(g.state["w1"], ref_g.state["w1"], rtol=1e-5, atol=1e-6)


def test_momentum_is_not_mistaken_for_a_plain_step():
    momentum = lambda g, loss: gc.optim.SGD(0.05, momentum=0.9).minimize(loss)  # noqa: E731
    g, prog, _ = _train("llvm", 16, momentum)
    ref_g, _, _ = _train("numpy", 16, momentum)
    assert _fused_weights(prog) == set()
    np.testing.assert_allclose(g.state["w1"], ref_g.state["w1"], rtol=1e-5, atol=1e-6)


def test_the_recognizer_wants_exactly_a_scaled_gradient_subtracted_from_a_leaf():
    g = gc.Graph("shapes")
    x, d = g.input("x", (8, 4)), g.input("d", (8, 3))
    w, lr = g.param("w", np.zeros((4, 3), np.float32)), g.param("lr", np.float32(0.1))
    grad = gc.transpose(x) @ d
    step = grad * lr
    assert gradient_step(grad, [step, w - step]).param is w
    assert gradient_step(grad, [step, step - w]) is None  # the weight must be the minuend
    assert gradient_step(grad, [grad * grad, w - grad * grad]) is None  # the scale must be one element
    assert gradient_step(grad, [step, w + step]) is None
    assert gradient_step(grad, [step]) is None
