"""Every registered op's contract samples compiled with the LLVM backend vs the NumPy interpreter (float32),
forward and backward (gradient of sum(out * w) w.r.t. the floating inputs). Parametrized over the registry, so
new ops are covered automatically; an op without a lowerer fails here with a LoweringError naming it."""

import numpy as np
import pytest

import graphc as gc
from ops import REGISTRY
from ops.registry import apply

OPS = sorted(REGISTRY)


def _build(name, sample):
    g = gc.Graph(f"diff_{name}")
    inputs = []
    for i, array in enumerate(sample.inputs):
        array = np.asarray(array)
        dtype = "float32" if array.dtype.kind == "f" else array.dtype
        inputs.append(g.input(f"x{i}", array.shape, dtype))
    out = apply(name, *inputs, **sample.attrs)
    feeds = {f"x{i}": np.asarray(a).astype(x.dtype) for i, (a, x) in enumerate(zip(sample.inputs, inputs))}
    return g, inputs, out, feeds


def _compare(outputs, feeds):
    gc.testing.assert_backends_agree(outputs, feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("name", OPS)
def test_forward_matches_interpreter(name):
    for sample in REGISTRY[name].samples(np.random.default_rng(7)):
        _, _, out, feeds = _build(name, sample)
        _compare({"out": out}, feeds)


@pytest.mark.parametrize("name", [n for n in OPS if REGISTRY[n].has_vjp])
def test_backward_matches_interpreter(name):
    for k, sample in enumerate(REGISTRY[name].samples(np.random.default_rng(7))):
        _, inputs, out, feeds = _build(name, sample)
        positions = sample.grad_inputs
        if positions is None:
            positions = [i for i, x in enumerate(inputs) if x.type.is_float]
        if not out.type.is_float or not positions:
            continue
        weights = np.random.default_rng(k).standard_normal(out.shape).astype(out.dtype)
        y = gc.sum(out * weights) if out.shape else out * 1.5
        grads = gc.grad(y, [inputs[i] for i in positions])
        _compare({"y": y, **{f"d{i}": d for i, d in zip(positions, grads)}}, feeds)
