"""Every kernel family on 1, 2 and 3 threads: bitwise the same results for every thread count, and the same as the
NumPy interpreter within float tolerance.

Registry-driven (every op's contract samples, forward and backward, so a new op is covered automatically) with
the parallel grains shrunk to one element and one multiply-add, so that even the small samples are cut into many
chunks — odd partitions on 3 threads included; then real-size training steps (MLP, CNN with batch norm) at the
default grains, where the GEMM grid, the conv images / weight-gradient slabs and the elementwise chunks are the
ones users get."""

from __future__ import annotations

import numpy as np
import pytest

import codegen.gemm.blocking as gemm_blocking
import codegen.loops as loops
import graphc as gc
from ops import REGISTRY
from runtime.parallel import runtime
from tests.codegen.test_differential import _build

THREAD_COUNTS = (1, 2, 3)
OPS = sorted(REGISTRY)

pytestmark = pytest.mark.skipif(not runtime(), reason="libgomp is not installed: programs run on one thread")


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Every parallel loop chunked as finely as it can be (the chunking still depends on the sizes only)."""
    monkeypatch.setattr(loops, "GRAIN", 1)
    monkeypatch.setattr(gemm_blocking, "PARALLEL_MIN_MACS", 1)


def _run_all(outputs, feeds) -> dict[int, dict]:
    return {t: gc.compile(outputs, backend="llvm", threads=t, cache=False)(**feeds) for t in THREAD_COUNTS}


def _check(outputs, feeds, rtol: float = 2e-5, atol: float = 2e-6) -> None:
    results = _run_all(outputs, feeds)
    reference = gc.compile(outputs, backend="numpy")(**feeds)
    for key, want in reference.items():
        want = np.asarray(want)
        for threads in THREAD_COUNTS[1:]:
            np.testing.assert_array_equal(results[threads][key], results[1][key],
                                          err_msg=f"output {key!r}: {threads} threads differ from one")
        got = np.asarray(results[1][key])
        if want.dtype.kind == "f":
            scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=f"output {key!r}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"output {key!r}")


@pytest.mark.parametrize("name", OPS)
def test_every_op_forward_and_backward_on_1_2_3_threads(name, tiny_chunks):
    for k, sample in enumerate(REGISTRY[name].samples(np.random.default_rng(7))):
        _, inputs, out, feeds = _build(name, sample)
        outputs = {"out": out}
        positions = sample.grad_inputs
        if positions is None:
            positions = [i for i, x in enumerate(inputs) if x.type.is_float]
        if REGISTRY[name].has_vjp and out.type.is_float and positions:
            weights = np.random.default_rng(k).standard_normal(out.shape).astype(out.dtype)
            y = gc.sum(out * weights) if out.shape else out * 1.5
            grads = gc.grad(y, [inputs[i] for i in positions])
            outputs.update({"y": y, **{f"d{i}": d for i, d in zip(positions, grads)}})
        _check(outputs, feeds)


def _mlp(rng: np.random.Generator):
    g = gc.Graph("mlp_threads")
    x, y = g.input("x", (128, 784)), g.input("y", (128,), "int64")
    w1 = g.param("w1", (rng.standard_normal((784, 512)) * 0.05).astype(np.float32))
    w2 = g.param("w2", (rng.standard_normal((512, 10)) * 0.05).astype(np.float32))
    b1 = g.param("b1", np.zeros(512, np.float32))
    h = gc.relu(x @ w1 + b1)
    loss = gc.softmax_cross_entropy(h @ w2, y)
    params = [w1, b1, w2]
    feeds = {"x": rng.standard_normal((128, 784)).astype(np.float32), "y": rng.integers(0, 10, 128)}
    return g, loss, params, feeds


def _cnn(rng: np.random.Generator):
    g = gc.Graph("cnn_threads")
    x, y = g.input("x", (5, 3, 20, 20)), g.input("y", (5,), "int64")  # 5 images: odd against 2 and 3 threads

    params = []

    def param(name, shape, scale=0.2):
        params.append(g.param(name, (rng.standard_normal(shape) * scale).astype(np.float32)))
        return params[-1]

    h = gc.conv2d(x, param("c1", (16, 3, 3, 3)), param("cb1", (16,)), padding=1)
    h = gc.relu(gc.batch_norm(h, param("gamma", (16,)), param("beta", (16,)), g.param("mean", np.zeros(16, np.float32)),
                              g.param("var", np.ones(16, np.float32)), training=True))
    h = gc.max_pool2d(h, 2)
    h = gc.relu(gc.conv2d(h, param("c2", (32, 16, 3, 3)), padding=1))
    h = gc.avg_pool2d(h, 2)
    h = gc.reshape(h, (5, 32 * 5 * 5))
    loss = gc.softmax_cross_entropy(h @ param("d", (800, 10), 0.05), y)
    feeds = {"x": rng.standard_normal((5, 3, 20, 20)).astype(np.float32), "y": rng.integers(0, 10, 5)}
    return g, loss, params, feeds


@pytest.mark.parametrize("model", [_mlp, _cnn])
def test_training_step_gradients_on_1_2_3_threads(model, rng):
    """Real sizes, default grains: loss and every gradient bitwise equal across thread counts, and close to the
    interpreter."""
    g, loss, params, feeds = model(rng)
    grads = gc.grad(loss, params)
    _check({"loss": loss, **{f"d_{p.name}": d for p, d in zip(params, grads)}}, feeds, rtol=1e-4, atol=1e-5)


def test_training_is_deterministic_for_a_fixed_thread_count(rng):
    """Ten SGD steps twice on 2 threads from the same start: the same weights to the bit, and the same as on 1 and
    3 threads (chunks never depend on the thread count; who runs a chunk never changes its result)."""
    finals = {}
    for threads in (2, 2, 1, 3):
        g, loss, params, feeds = _mlp(np.random.default_rng(3))
        step = gc.compile({"loss": loss}, updates=gc.optim.SGD(0.1).minimize(loss), threads=threads, cache=False)
        for _ in range(10):
            step(**feeds)
        state = {name: value.copy() for name, value in g.state.items()}
        if threads in finals:
            for name in state:
                np.testing.assert_array_equal(state[name], finals[threads][name], err_msg=name)
        finals.setdefault(threads, state)
    for threads in (1, 3):
        for name in finals[2]:
            np.testing.assert_array_equal(finals[threads][name], finals[2][name], err_msg=f"{name}, {threads}")


@pytest.mark.parametrize("batch", [1, 2])
def test_conv_of_few_big_images_on_1_2_3_threads(batch, rng):
    """Fewer images than threads, each too big for one im2col block: the row blocks of the images run in parallel
    (forward), the GEMMs run in parallel (gradients); the same bits on every thread count."""
    g = gc.Graph("big_images")
    x = g.input("x", (batch, 16, 64, 64))
    w = g.param("w", (rng.standard_normal((8, 16, 3, 3)) * 0.1).astype(np.float32))
    b = g.param("b", rng.standard_normal(8).astype(np.float32))
    y = gc.relu(gc.conv2d(x, w, b, padding=1))
    loss = gc.sum(y * y)
    dx, dw = gc.grad(loss, [x, w])
    _check({"y": y, "dx": dx, "dw": dw}, {"x": rng.standard_normal((batch, 16, 64, 64)).astype(np.float32)},
           rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch, channels, out_channels, groups, size", [
    (1, 64, 32, 1, 40),   # big image: several row blocks straight from x into y
    (4, 16, 24, 2, 9),    # grouped
    (3, 1, 32, 1, 12),    # 1 -> 32 channels: the transposed weight gradient
])
def test_pointwise_conv_without_im2col_on_1_2_3_threads(batch, channels, out_channels, groups, size, rng):
    """1×1 stride-1 unpadded convolutions are GEMMs on x itself (forward, input gradient, weight gradient):
    the pointwise GEMMs are what the module contains, and the results match the interpreter bitwise across
    thread counts."""
    g = gc.Graph("pointwise")
    x = g.input("x", (batch, channels, size, size))
    w = g.param("w", (rng.standard_normal((out_channels, channels // groups, 1, 1)) * 0.2).astype(np.float32))
    b = g.param("b", rng.standard_normal(out_channels).astype(np.float32))
    y = gc.relu(gc.conv2d(x, w, b, groups=groups))
    loss = gc.sum(y * y)
    dx, dw = gc.grad(loss, [x, w])
    outputs = {"y": y, "dx": dx, "dw": dw}
    ir_text = gc.compile(outputs, threads=1, cache=False).module.ir_text
    # forward: W · x, or the transposed product xᵀ · Wᵀ for few positions (conv.transposed_forward) — x itself
    # either way, no im2col
    assert (".fwd1." in ir_text or ".fwdt." in ir_text) and ".fwd." not in ir_text
    assert ".bwdx1." in ir_text and (".bwdw1." in ir_text or ".bwdwt1." in ir_text)
    _check(outputs, {"x": rng.standard_normal((batch, channels, size, size)).astype(np.float32)},
           rtol=1e-4, atol=1e-5)
