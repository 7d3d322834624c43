"""Issue 10's runtime Mod (graphc's mod op behind ONNX Mod), the opset-6 legacy attributes of Gemm and PRelu that
TorchScript-era files carry, and training's Gradient op (domain ai.onnx.preview.training) as gc.grad; each on both
backends against NumPy. Helpers are tests/onnx/test_model_ops.py's."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from test_model_ops import BACKENDS, f32, make_model, run  # noqa: E402

import graphc as gc  # noqa: E402

# ---------------------------------------------------------------------------------------------- runtime Mod

INT64_MIN = np.iinfo(np.int64).min


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_of_runtime_tensors(backend, fmod):
    """Mod of graph inputs is graphc's mod op: np.mod (fmod=0, the divisor's sign) or np.fmod (fmod=1, the
    dividend's sign), broadcasting; integer a mod 0 = 0 and INT64_MIN mod −1 = 0 (NumPy's values, no trap)."""
    a = np.array([[7, -7, 7, -7, 5, INT64_MIN, INT64_MIN, 0]], np.int64)
    b = np.array([[3], [-3], [0], [-1]], np.int64)
    x = np.array([5.5, -5.5, 5.5, -5.5, -0.0, 3.0, np.inf, 1.0], np.float64)
    y = np.array([2.0, 2.0, -2.0, -2.0, 2.0, 0.0, 2.0, np.inf])
    nodes = [helper.make_node("Mod", ["a", "b"], ["m"], fmod=fmod),
             helper.make_node("Mod", ["x", "y"], ["mf"], fmod=fmod)]
    model = make_model(nodes, {"a": a, "b": b, "x": x, "y": y}, ["m", "mf"])
    got = run(model, {"a": a, "b": b, "x": x, "y": y}, backend)
    with np.errstate(all="ignore"):
        want_i = np.fmod(a, b) if fmod else np.mod(a, b)
        want_f = np.fmod(x, y) if fmod else np.mod(x, y)
    assert got["m"].dtype == np.int64 and want_i[2:].tolist() == [[0] * 8, [0] * 8]
    np.testing.assert_array_equal(got["m"], want_i)
    np.testing.assert_array_equal(got["mf"], want_f)
    np.testing.assert_array_equal(np.signbit(got["mf"]), np.signbit(want_f))  # signed zeros as NumPy


def test_mod_gradient_through_an_imported_model():
    """d(x mod y)/dx = 1 and d/dy = −floor(x/y) (fmod: −trunc(x/y)) through the translated node."""
    x, y = np.array([5.5, -5.5, 5.5]), np.array([2.0, 2.0, -2.0])
    for fmod, quotient in ((0, np.floor(x / y)), (1, np.trunc(x / y))):
        model = make_model([helper.make_node("Mod", ["x", "y"], ["m"], fmod=fmod)], {"x": x, "y": y}, ["m"])
        imported = gc.onnx.import_model(model)
        dx, dy = gc.grad(gc.sum(imported.outputs["m"]), [imported.tensor("x"), imported.tensor("y")])
        got = gc.compile({"dx": dx, "dy": dy}, backend="numpy")(x=x, y=y)
        np.testing.assert_array_equal(got["dx"], np.ones(3))
        np.testing.assert_allclose(got["dy"], -quotient, rtol=1e-15)


def test_mod_fmod_attribute_must_be_0_or_1():
    a = np.ones(2, np.int64)
    model = make_model([helper.make_node("Mod", ["a", "b"], ["y"], name="n1", fmod=2)], {"a": a, "b": a}, ["y"])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="Mod node 'n1': attribute fmod=2"):
        gc.onnx.import_model(model)


# ---------------------------------------------------------------------------------------------- opset 6 legacy


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemm_legacy_broadcast(backend):
    """Opset 6 Gemm: C of shape (N,) broadcasts over the rows with broadcast=1 (TorchScript's nn.Linear)."""
    a, w, c = f32(4, 10), f32(8, 10), f32(8)
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], broadcast=1, transB=1, alpha=1.0, beta=1.0)
    got = run(make_model([node], {"a": a}, ["y"], inits={"w": w, "c": c}, opset=6), {"a": a}, backend)
    np.testing.assert_allclose(got["y"], a @ w.T + c, rtol=1e-5, atol=1e-6)


def test_gemm_legacy_without_broadcast_needs_a_full_c():
    a, w, c = f32(4, 10), f32(8, 10), f32(8)
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], name="g", transB=1)
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="Gemm node 'g': attribute broadcast=0 with C of shape"):
        gc.onnx.import_model(make_model([node], {"a": a}, ["y"], inits={"w": w, "c": c}, opset=6))
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], name="g", transB=1, broadcast=1)
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="Gemm node 'g': attribute broadcast is not supported"):
        gc.onnx.import_model(make_model([node], {"a": a}, ["y"], inits={"w": w, "c": c}, opset=7))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opset, channel_axis", [(6, 1), (9, -1)])
def test_prelu_legacy_slope_is_per_channel(backend, opset, channel_axis):
    """Opset < 7 PRelu (no broadcasting yet): a (C,) slope applies along axis 1, as PyTorch's PReLU(C) exported;
    from opset 7 it broadcasts by NumPy's rules (along the last axis)."""
    x, slope = f32(2, 3, 3), np.array([0.1, 0.2, 0.3], np.float32)
    model = make_model([helper.make_node("PRelu", ["x", "s"], ["y"])], {"x": x}, ["y"], inits={"s": slope},
                       opset=opset)
    shaped = slope.reshape((1, 3, 1) if channel_axis == 1 else (1, 1, 3))
    np.testing.assert_allclose(run(model, {"x": x}, backend)["y"], np.where(x > 0, x, x * shaped), rtol=1e-6)


# ---------------------------------------------------------------------------------------------- Gradient


def _gradient_model(y: str = "d", **attrs):
    """d = (a + b)·a, ds = Σd, and a Gradient node of ``y`` with respect to a and b."""
    nodes = [helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Mul", ["c", "a"], ["d"]),
             helper.make_node("ReduceSum", ["d"], ["ds"], keepdims=0),
             helper.make_node("Gradient", ["a", "b"], ["da", "db"], name="grad", domain="ai.onnx.preview.training",
                              xs=["a", "b"], y=y, **attrs)]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(k, TensorProto.DOUBLE, (2,))
                                           for k in ("a", "b")],
                              [helper.make_tensor_value_info(k, TensorProto.UNDEFINED, None) for k in ("da", "db")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12),
                                                   helper.make_opsetid("ai.onnx.preview.training", 1)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_op_is_gc_grad(backend):
    """Gradient(xs=[a, b], y=d) of d = Σ(a + b)·a (reduced to a scalar): dd/da = 2a + b, dd/db = a."""
    model = _gradient_model("ds")
    a, b = np.array([1.0, -2.0]), np.array([3.0, 0.5])
    got = run(model, {"a": a, "b": b}, backend)
    np.testing.assert_allclose(got["da"], 2 * a + b)
    np.testing.assert_allclose(got["db"], a)


def test_gradient_op_refusals_name_the_node():
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="Gradient node 'grad': attribute y='d' of shape"):
        gc.onnx.import_model(_gradient_model())
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="Gradient node 'grad': attribute zs="):
        gc.onnx.import_model(_gradient_model(zs=["b"]))
