"""``gc.onnx.import_model`` as a user feature: small hand-built ONNX models."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphc as gc  # noqa: E402


def _dense_relu_model(batch: int | str = 2) -> onnx.ModelProto:
    """y = relu(x @ W + b) as MatMul → Add → Relu, with W and b as initializers."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
             helper.make_node("Relu", ["z"], ["y"])]
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_import_runs_and_matches_numpy():
    model = _dense_relu_model()
    imported = gc.onnx.import_model(model)
    assert imported.inputs == ["x"] and list(imported.outputs) == ["y"]
    assert set(imported.graph.params) == {"W", "b"}  # float initializers become trainable params
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    got = imported.compile(backend="numpy")(x=x)["y"]
    w, b = (numpy_helper.to_array(t) for t in model.graph.initializer)
    np.testing.assert_allclose(got, np.maximum(x @ w + b, 0), rtol=1e-6, atol=1e-6)


def test_import_from_path_with_consts_and_gradients(tmp_path):
    path = tmp_path / "dense.onnx"
    onnx.save(_dense_relu_model(), str(path))
    imported = gc.onnx.import_model(str(path), initializers="consts")
    assert imported.graph.params == {}
    loss = gc.sum(imported.outputs["y"])
    x = imported.graph.inputs["x"]
    (dx,) = gc.grad(loss, [x])
    out = gc.compile({"dx": dx}, backend="numpy")(x=np.ones((2, 3), np.float32))
    assert out["dx"].shape == (2, 3)


def test_unsupported_op_names_the_op():
    node = helper.make_node("Unique", ["x"], ["y"], sorted=1)  # a data-dependent output shape: out of scope
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="ONNX op Unique is not supported"):
        gc.onnx.import_model(helper.make_model(graph))


def test_unsupported_attribute_and_dtype_are_named():
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1], bogus=3)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3]),
                                            helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3])])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="Conv node: attribute bogus is not supported"):
        gc.onnx.import_model(helper.make_model(graph))
    half = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2])])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="dtype float16 is not supported"):
        gc.onnx.import_model(helper.make_model(half))


def test_dynamic_dimension_needs_input_shapes():
    model = _dense_relu_model(batch="N")
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="dynamic dimension 'N'"):
        gc.onnx.import_model(model)
    imported = gc.onnx.import_model(model, input_shapes={"x": (5, 3)})
    assert imported.outputs["y"].shape == (5, 4)


def test_shape_input_must_be_static_or_given():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                                            helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])])
    model = helper.make_model(graph)
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="input shape must be known at import time"):
        gc.onnx.import_model(model)
    imported = gc.onnx.import_model(model, static_inputs={"shape": np.array([3, -1])})
    assert imported.inputs == ["x"]  # the shape was consumed at import time
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(imported.compile(backend="numpy")(x=x)["y"], x.reshape(3, 2))


def _single_node_model(node, inputs, inits, out_shape, opset):
    graph = helper.make_graph([node], "single", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                                 for n, s in inputs],
                              [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_clip_bounds_as_inputs_relu6():
    """MobileNet's ReLU6 as exported: Clip with min/max as initializer inputs (opset >= 11)."""
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    model = _single_node_model(node, [("x", [3, 4])], {"lo": np.array(0, "f4"), "hi": np.array(6, "f4")}, [3, 4], 17)
    x = np.linspace(-9, 9, 12, dtype="f4").reshape(3, 4)
    for backend in ("numpy", "llvm"):
        got = gc.onnx.import_model(model).compile(backend=backend)(x=x)["y"]
        np.testing.assert_array_equal(got, np.clip(x, 0, 6))


def test_reduce_mean_axes_input_with_noop_attribute():
    """The dynamo exporter's global pool: ReduceMean (opset 18) with an axes input and noop_with_empty_axes=0."""
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0, noop_with_empty_axes=0)
    model = _single_node_model(node, [("x", [2, 3, 4, 5])], {}, [2, 3], 18)
    model.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], "int64"), "axes"))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype("f4")
    got = gc.onnx.import_model(model).compile()(x=x)["y"]
    np.testing.assert_allclose(got, x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
