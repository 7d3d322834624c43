"""Registry-driven op contract: every registered op, no per-op test code.

For each op: it has samples, a docstring, a valid kind; its error cases raise ShapeError naming the shapes and
this file's line; its reference returns the inferred type (float32 and float64); an elementwise op's scalar
formula agrees with its reference; its VJP agrees with float64 central finite differences.
"""

import numpy as np
import pytest

import graphc as gc
from ops import REGISTRY
from ops.base import KINDS
from ops.registry import apply
from ops.scalar import NumpyScalarBuilder

OPS = sorted(REGISTRY)


def _samples(name):
    return REGISTRY[name].samples(np.random.default_rng(7))


def _build(name, sample, float_dtype="float64"):
    g = gc.Graph(f"contract_{name}")
    inputs = []
    for i, array in enumerate(sample.inputs):
        array = np.asarray(array)
        dtype = float_dtype if array.dtype.kind == "f" else array.dtype
        inputs.append(g.input(f"x{i}", array.shape, dtype))
    out = apply(name, *inputs, **sample.attrs)
    feeds = {f"x{i}": np.asarray(a).astype(x.dtype) for i, (a, x) in enumerate(zip(sample.inputs, inputs))}
    return g, inputs, out, feeds


@pytest.mark.parametrize("name", OPS)
def test_op_declares_its_facets(name):
    op = REGISTRY[name]
    assert op.kind in KINDS
    assert type(op).__doc__ and len(type(op).__doc__.strip()) > 10, f"{name} needs a docstring with the math"
    assert _samples(name), f"{name} has no samples for the contract tests"
    if op.kind in ("elementwise", "broadcast"):
        assert op.has_scalar, f"elementwise op {name} needs a scalar formula"


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("float_dtype", ["float32", "float64"])
def test_reference_returns_inferred_type(name, float_dtype):
    for sample in _samples(name):
        _, _, out, feeds = _build(name, sample, float_dtype)
        result = gc.compile(out, backend="numpy")(**feeds)  # the interpreter checks shape and dtype
        assert result.shape == out.shape and result.dtype == np.dtype(out.dtype)


@pytest.mark.parametrize("name", OPS)
def test_error_cases_name_shapes_and_site(name):
    for case in REGISTRY[name].error_cases():
        g = gc.Graph("errors")
        inputs = [g.input(f"x{i}", shape, dtype) for i, (shape, dtype) in enumerate(case.types)]
        with pytest.raises(gc.ShapeError) as info:
            apply(name, *inputs, **case.attrs)
        message = str(info.value)
        assert case.message in message, message
        assert "test_contract.py:" in message, f"error does not name the user's line: {message}"
        assert name in message


@pytest.mark.parametrize("name", [n for n in OPS if REGISTRY[n].kind in ("elementwise", "broadcast")])
def test_scalar_formula_matches_reference(name):
    op = REGISTRY[name]
    for sample in _samples(name):
        _, inputs, out, feeds = _build(name, sample)
        expected = gc.compile(out, backend="numpy")(**feeds)
        arrays = [np.broadcast_to(feeds[x.name], out.shape) for x in inputs]
        got = np.broadcast_to(op.scalar(NumpyScalarBuilder(), out.attrs, *arrays), out.shape)
        np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=1e-12, atol=1e-12)


def _float_valued(name):
    """Some sample maps a floating-point input to a floating-point output (so a gradient can flow)."""
    for sample in _samples(name):
        _, inputs, out, _ = _build(name, sample)
        if out.type.is_float and any(x.type.is_float for x in inputs):
            return True
    return False


DIFFERENTIABLE = [n for n in OPS if REGISTRY[n].has_vjp and _float_valued(n)]


@pytest.mark.parametrize("name", [n for n in OPS if not _float_valued(n)])
def test_non_float_ops_send_no_gradient(name):
    for sample in _samples(name):
        _, _, out, _ = _build(name, sample)
        assert all(g is None for g in REGISTRY[name].vjp(out, out)), f"{name} cannot carry a gradient"


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_vjp_matches_finite_differences(name):
    checked = 0
    for k, sample in enumerate(_samples(name)):
        _, inputs, out, feeds = _build(name, sample)
        if not out.type.is_float:
            continue
        positions = sample.grad_inputs
        if positions is None:
            positions = [i for i, x in enumerate(inputs) if x.type.is_float]
        if not positions:
            continue
        weights = np.random.default_rng(k).standard_normal(out.shape)
        y = gc.sum(out * weights) if out.shape else out * 1.5
        gc.testing.check_grads(y, [inputs[i] for i in positions], feeds, rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked, f"no sample of {name} exercised its VJP"


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_vjp_builds_backward_nodes_of_input_shape(name):
    for sample in _samples(name):
        g, inputs, out, _ = _build(name, sample)
        if not out.type.is_float:
            continue
        floats = [x for x in inputs if x.type.is_float]
        y = gc.sum(out) if out.shape else out
        for x, dx in zip(floats, gc.grad(y, floats)):
            assert dx.shape == x.shape and dx.dtype == x.dtype
        gc.verify(g)
